"""The repair-job lifecycle: who may move a job where, rounds, and time on site."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import Actor, Status
from sync_protocol.lifecycle import (
    FINISHED,
    OPEN_FOR_FIELD,
    SETTABLE_BY,
    STAGE,
    allowed_next,
    next_round,
    time_on_site_ms,
)

MINUTE = 60_000


def at(clock: str) -> int:
    hours, minutes = clock.split(":")
    return (int(hours) * 60 + int(minutes)) * MINUTE


# --- time on site ---------------------------------------------------------------------------------------


def test_time_on_site_runs_from_arrival_to_completion_less_time_on_hold():
    marks = [
        (Status.EN_ROUTE, at("09:40")),
        (Status.ON_SITE, at("10:00")),
        (Status.ON_HOLD, at("10:30")),
        (Status.ON_SITE, at("10:45")),
        (Status.COMPLETED, at("11:00")),
    ]
    assert time_on_site_ms(marks) == 45 * MINUTE


def test_time_on_site_does_not_depend_on_the_order_marks_are_listed_in():
    marks = [
        (Status.COMPLETED, at("11:00")),
        (Status.ON_SITE, at("10:45")),
        (Status.ON_SITE, at("10:00")),
        (Status.ON_HOLD, at("10:30")),
    ]
    assert time_on_site_ms(marks) == 45 * MINUTE


def test_time_on_site_subtracts_every_hold():
    marks = [
        (Status.ON_SITE, at("10:00")),
        (Status.ON_HOLD, at("10:10")),
        (Status.ON_SITE, at("10:20")),
        (Status.ON_HOLD, at("10:40")),
        (Status.ON_SITE, at("10:50")),
        (Status.CANNOT_COMPLETE, at("11:00")),
    ]
    assert time_on_site_ms(marks) == 40 * MINUTE


@pytest.mark.parametrize(
    "marks",
    [
        [],
        [(Status.EN_ROUTE, at("09:40"))],
        [(Status.EN_ROUTE, at("09:40")), (Status.CANNOT_COMPLETE, at("10:10"))],
        [(Status.ON_HOLD, at("09:50")), (Status.EN_ROUTE, at("09:40"))],
    ],
)
def test_time_on_site_is_none_until_the_crew_has_arrived(marks):
    assert time_on_site_ms(marks) is None


def test_a_hold_left_open_stops_the_clock_at_the_hold():
    marks = [(Status.ON_SITE, at("10:00")), (Status.ON_HOLD, at("10:30"))]
    assert time_on_site_ms(marks) == 30 * MINUTE


def test_a_repeated_hold_mark_does_not_count_as_time_on_site():
    marks = [(Status.ON_SITE, at("10:00")), (Status.ON_HOLD, at("10:30")), (Status.ON_HOLD, at("10:40"))]
    assert time_on_site_ms(marks) == 30 * MINUTE
    resumed = [*marks, (Status.ON_SITE, at("10:45")), (Status.COMPLETED, at("11:00"))]
    assert time_on_site_ms(resumed) == 45 * MINUTE


def test_completion_while_on_hold_ends_the_hold():
    marks = [(Status.ON_SITE, at("10:00")), (Status.ON_HOLD, at("10:30")), (Status.COMPLETED, at("10:50"))]
    assert time_on_site_ms(marks) == 30 * MINUTE


def test_an_open_job_counts_to_the_last_recorded_mark():
    marks = [(Status.EN_ROUTE, at("09:40")), (Status.ON_SITE, at("10:00"))]
    assert time_on_site_ms(marks) == 0
    marks = [(Status.ON_SITE, at("10:00")), (Status.ON_HOLD, at("10:20")), (Status.ON_SITE, at("10:30"))]
    assert time_on_site_ms(marks) == 20 * MINUTE


field_marks = st.lists(
    st.tuples(
        st.sampled_from([Status.EN_ROUTE, Status.ON_SITE, Status.ON_HOLD, Status.COMPLETED, Status.CANNOT_COMPLETE]),
        st.integers(0, 6).map(lambda minute: minute * MINUTE),
    ),
    max_size=8,
)


@given(field_marks.flatmap(lambda marks: st.tuples(st.just(marks), st.permutations(marks))))
def test_time_on_site_is_the_same_for_any_order_of_the_same_marks(marks_and_order):
    marks, reordered = marks_and_order
    assert time_on_site_ms(marks) == time_on_site_ms(reordered)


@given(field_marks)
def test_time_on_site_lies_between_zero_and_the_span_from_arrival_to_the_last_mark(marks):
    result = time_on_site_ms(marks)
    arrivals = [moment for status, moment in marks if status is Status.ON_SITE]
    if not arrivals:
        assert result is None
        return
    assert result is not None
    assert 0 <= result <= max(moment for _, moment in marks) - min(arrivals)


# --- who may move a job where -----------------------------------------------------------------------------


def test_the_field_can_never_cancel():
    for status in Status:
        assert Status.CANCELLED not in allowed_next(Actor.FIELD, status)


def test_the_field_moves_a_job_only_to_statuses_it_may_set():
    for actor in Actor:
        for status in Status:
            assert allowed_next(actor, status) <= SETTABLE_BY[actor]
    assert {Status.CLOSED, Status.CANCELLED, Status.ASSIGNED, Status.NEW}.isdisjoint(SETTABLE_BY[Actor.FIELD])


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (Status.NEW, set()),
        (Status.ASSIGNED, {Status.EN_ROUTE, Status.ON_SITE}),
        (Status.EN_ROUTE, {Status.ON_SITE, Status.CANNOT_COMPLETE}),
        (Status.ON_SITE, {Status.ON_HOLD, Status.COMPLETED, Status.CANNOT_COMPLETE}),
        (Status.ON_HOLD, {Status.ON_SITE, Status.CANNOT_COMPLETE}),
        (Status.COMPLETED, set()),
        (Status.CANNOT_COMPLETE, set()),
        (Status.CLOSED, set()),
        (Status.CANCELLED, set()),
    ],
)
def test_field_transitions_table(current, expected):
    assert allowed_next(Actor.FIELD, current) == expected


def test_a_finished_job_is_closed_to_the_field():
    for status in FINISHED:
        assert allowed_next(Actor.FIELD, status) == frozenset()
        assert status not in OPEN_FOR_FIELD


def test_the_office_can_cancel_any_job_that_is_not_finished():
    for status in set(Status) - FINISHED:
        assert Status.CANCELLED in allowed_next(Actor.OFFICE, status)


def test_the_office_can_return_a_finished_job_to_the_field():
    for status in (Status.COMPLETED, Status.CANNOT_COMPLETE):
        assert Status.ASSIGNED in allowed_next(Actor.OFFICE, status)


def test_a_closed_job_goes_nowhere():
    for actor in Actor:
        assert allowed_next(actor, Status.CLOSED) == frozenset()


def test_every_offered_transition_moves_forward_in_round_and_stage():
    """So the merge (the furthest (round, stage, stamp) wins) agrees with what the UIs let people do."""
    for actor in Actor:
        for current in Status:
            for target in allowed_next(actor, current):
                before = (1, STAGE[current])
                after = (next_round(current, target, 1), STAGE[target])
                assert after >= before, (actor, current, target)
                if after == before:  # same stage: the later stamp wins between them
                    assert target is current or {current, target} == {Status.ON_SITE, Status.ON_HOLD}


def test_cancelled_outranks_every_status_the_field_can_set():
    for status in SETTABLE_BY[Actor.FIELD]:
        assert STAGE[Status.CANCELLED] > STAGE[status]


# --- rounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("finished", [Status.COMPLETED, Status.CANNOT_COMPLETE, Status.CANCELLED])
def test_returning_a_finished_job_to_the_field_opens_a_new_round(finished):
    assert next_round(finished, Status.ASSIGNED, 1) == 2
    assert next_round(finished, Status.ASSIGNED, 4) == 5


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (Status.NEW, Status.ASSIGNED),
        (Status.ASSIGNED, Status.ASSIGNED),  # reassignment to another crew
        (Status.COMPLETED, Status.CLOSED),
        (Status.ON_SITE, Status.CANCELLED),
        (Status.ASSIGNED, Status.EN_ROUTE),
        (Status.ON_HOLD, Status.ON_SITE),
        (Status.COMPLETED, Status.COMPLETED),
    ],
)
def test_other_transitions_stay_in_the_same_round(current, target):
    assert next_round(current, target, 3) == 3
