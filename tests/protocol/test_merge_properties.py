"""The merge is a join: replicas that saw the same changes, in any order and any number of times,
hold the same job state; permission is checked before merging; no concurrent value is lost silently."""

from collections import defaultdict
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import (
    HLC,
    Actor,
    ConflictKind,
    FieldEdit,
    JobState,
    Outcome,
    Status,
    StatusChange,
    canonical_json,
    merge_fact,
    merge_field_edit,
    merge_status,
)
from sync_protocol.codes import RESOLUTION_CODES
from sync_protocol.lifecycle import SETTABLE_BY, STAGE
from sync_protocol.merge import join_jobs
from sync_protocol.ownership import FIELD_EDITABLE_JOB_FIELDS, SERVER_OWNED_JOB_FIELDS

JOB = "job-1"
T0 = 1_700_000_000_000
FIELD_FORBIDDEN = (Status.CLOSED, Status.CANCELLED, Status.ASSIGNED, Status.NEW)

# --- strategies: small value spaces, so that collisions (equal stamps, equal values) really happen ---------

# A few nodes and a narrow time window: equal wall times, equal counters, even equal stamps occur.
hlcs = st.builds(
    HLC,
    wall_ms=st.integers(T0, T0 + 3),
    counter=st.integers(0, 1),
    node=st.sampled_from(["dev-1", "dev-2", "server"]),
)

EDITABLE_VALUES = {
    "resolution_code": st.one_of(st.none(), st.sampled_from(sorted(RESOLUTION_CODES)[:3])),
    "cause": st.sampled_from([None, "", "tree on line", "storm"]),
    "resolution_note": st.sampled_from([None, "fixed", "made safe, back tomorrow"]),
    "follow_up_needed": st.one_of(st.none(), st.booleans()),
    "contact_name": st.sampled_from([None, "Ann", "Bob"]),
}
SERVER_OWNED_VALUES = {
    "priority": st.integers(1, 4),
    "summary": st.sampled_from(["No power", "Sparking pole"]),
    "assigned_to": st.sampled_from([None, "user-7", "user-9"]),
}
ALL_VALUES = {**EDITABLE_VALUES, **SERVER_OWNED_VALUES}
assert set(EDITABLE_VALUES) == FIELD_EDITABLE_JOB_FIELDS
assert set(SERVER_OWNED_VALUES) <= SERVER_OWNED_JOB_FIELDS

field_actor_statuses = st.sampled_from(sorted(SETTABLE_BY[Actor.FIELD]))
field_forbidden_statuses = st.sampled_from(FIELD_FORBIDDEN)
any_status = st.sampled_from(list(Status))
rounds = st.integers(1, 3)

editable_values = st.fixed_dictionaries({}, optional=EDITABLE_VALUES).filter(bool)
any_values = st.fixed_dictionaries({}, optional=ALL_VALUES).filter(bool)

# Change ids are given once a whole set is drawn (see `with_ids`); strategies are built once, here.
device_edits = st.builds(
    FieldEdit,
    st.just(""),
    st.just(JOB),
    hlcs,
    st.just(Actor.FIELD),
    # mostly fields the crew may edit; sometimes a server-owned one too (to check rejection)
    st.one_of(editable_values, editable_values, editable_values, any_values),
)
office_edits = st.builds(FieldEdit, st.just(""), st.just(JOB), hlcs, st.just(Actor.OFFICE), any_values)
device_statuses = st.builds(
    StatusChange,
    st.just(""),
    st.just(JOB),
    hlcs,
    st.just(Actor.FIELD),
    # mostly what the field may set, sometimes what it may not (to check rejection)
    st.one_of(field_actor_statuses, field_actor_statuses, field_forbidden_statuses),
    rounds,
)
office_statuses = st.builds(StatusChange, st.just(""), st.just(JOB), hlcs, st.just(Actor.OFFICE), any_status, rounds)
changes = st.one_of(device_edits, office_edits, device_statuses, office_statuses)


def with_ids(drawn, prefix="c"):
    return [replace(change, change_id=f"{prefix}{index}") for index, change in enumerate(drawn)]


def and_an_order(drawn):
    return st.tuples(st.just(drawn), st.permutations(drawn))


change_sets = st.lists(changes, min_size=1, max_size=6).map(with_ids)
change_sets_and_orders = change_sets.flatmap(and_an_order)


# --- helpers ------------------------------------------------------------------------------------------


def apply(state, change):
    if isinstance(change, FieldEdit):
        return merge_field_edit(state, change)
    return merge_status(state, change)


def fold(changes, state=None):
    state = JobState(JOB) if state is None else state
    results = []
    for change in changes:
        result = apply(state, change)
        results.append(result)
        state = result.state
    return state, results


def snapshot(state):
    """Everything a replica shows of a job, including what JobState's own == does not compare."""
    return (
        state.job_id,
        state.status,
        state.round,
        sorted((name, canonical_json(stamped.value), stamped.hlc) for name, stamped in state.fields.items()),
        sorted((m.round, m.stage, m.hlc, m.status.value, m.actor.value, m.event_id) for m in state.marks),
    )


def assert_same_state(a, b):
    assert snapshot(a) == snapshot(b)
    assert a == b


def accepted(change):
    result = apply(JobState(JOB), change)
    return result.outcome is not Outcome.REJECTED


# --- convergence --------------------------------------------------------------------------------------


@given(change_sets_and_orders)
def test_merge_is_commutative_and_associative(changes_and_order):
    """Folding the same set of changes in any order yields the same job state."""
    changes, reordered = changes_and_order
    assert_same_state(fold(changes)[0], fold(reordered)[0])


@given(change_sets_and_orders)
def test_merge_is_idempotent(changes_and_order):
    changes, reordered = changes_and_order
    once = fold(changes)[0]
    each_twice = fold([change for change in reordered for _ in range(2)])[0]
    redelivered = fold(reordered, state=once)[0]  # the whole batch retried after it was applied
    assert_same_state(once, each_twice)
    assert_same_state(once, redelivered)


@given(
    change_sets,
    st.lists(st.sampled_from(["a", "b", "both"]), min_size=6, max_size=6),
    st.randoms(use_true_random=False),
)
def test_join_of_partial_folds_equals_fold_of_the_union(changes, placement, rnd):
    part_a = [c for c, where in zip(changes, placement, strict=False) if where in ("a", "both")]
    part_b = [c for c, where in zip(changes, placement, strict=False) if where in ("b", "both")]
    rnd.shuffle(part_a)
    rnd.shuffle(part_b)
    state_a, state_b = fold(part_a)[0], fold(part_b)[0]
    union = fold(changes)[0]
    assert_same_state(join_jobs(state_a, state_b), union)
    assert_same_state(join_jobs(state_b, state_a), union)
    assert_same_state(join_jobs(state_a, state_a), state_a)


def test_join_refuses_states_of_different_jobs():
    with pytest.raises(ValueError):
        join_jobs(JobState("job-1"), JobState("job-2"))


@given(change_sets_and_orders)
def test_status_is_the_furthest_mark_by_round_stage_and_hlc(changes_and_order):
    changes, reordered = changes_and_order
    state = fold(reordered)[0]
    marks = [(c.round, STAGE[c.status], c.hlc) for c in changes if isinstance(c, StatusChange) and accepted(c)]
    if not marks:
        assert state.status is None
        assert state.round == 1
        return
    furthest = max(marks)
    assert (state.current.round, state.current.stage, state.current.hlc) == furthest
    assert state.status in {
        c.status
        for c in changes
        if isinstance(c, StatusChange) and accepted(c) and (c.round, STAGE[c.status], c.hlc) == furthest
    }
    assert state.round == furthest[0]


@given(change_sets_and_orders)
def test_editable_field_is_the_value_with_the_largest_stamp(changes_and_order):
    changes, reordered = changes_and_order
    state = fold(reordered)[0]
    candidates = defaultdict(list)
    for change in changes:
        if isinstance(change, FieldEdit) and accepted(change):
            for name, value in change.values.items():
                candidates[name].append((change.hlc, canonical_json(value), value))
    assert set(state.fields) == set(candidates)
    for name, stamped_values in candidates.items():
        hlc, _, value = max(stamped_values, key=lambda item: item[:2])
        assert (state.fields[name].hlc, state.value(name)) == (hlc, value)


def test_on_site_and_on_hold_share_a_stage_and_the_later_stamp_wins():
    on_hold = StatusChange("e1", JOB, HLC(T0 + 5, 0, "dev-1"), Actor.FIELD, Status.ON_HOLD, 1)
    on_site = StatusChange("e2", JOB, HLC(T0 + 9, 0, "dev-1"), Actor.FIELD, Status.ON_SITE, 1)
    assert fold([on_hold, on_site])[0].status is Status.ON_SITE
    assert fold([on_site, on_hold])[0].status is Status.ON_SITE


def test_a_new_round_outranks_a_finished_earlier_round():
    done = StatusChange("e1", JOB, HLC(T0 + 9, 0, "dev-1"), Actor.FIELD, Status.COMPLETED, 1)
    returned = StatusChange("e2", JOB, HLC(T0 + 1, 0, "server"), Actor.OFFICE, Status.ASSIGNED, 2)
    for order in ([done, returned], [returned, done]):
        state = fold(order)[0]
        assert (state.status, state.round) == (Status.ASSIGNED, 2)


# --- permission ---------------------------------------------------------------------------------------


forbidden_device_statuses = st.builds(
    StatusChange,
    st.just("forbidden"),
    st.just(JOB),
    hlcs,
    st.just(Actor.FIELD),
    field_forbidden_statuses,
    rounds,
)


@given(change_sets, forbidden_device_statuses)
def test_field_actor_can_never_set_closed_cancelled_assigned_or_new(changes, change):
    state = fold(changes)[0]
    result = merge_status(state, change)
    assert result.outcome is Outcome.REJECTED
    assert result.error is not None and result.error.code == "transition_not_allowed"
    assert "data.status" in result.error.fields
    assert result.conflicts == ()
    assert_same_state(result.state, state)


device_edits_of_server_owned_fields = st.builds(
    FieldEdit,
    st.just("device-edit"),
    st.just(JOB),
    hlcs,
    st.just(Actor.FIELD),
    st.tuples(
        st.fixed_dictionaries({}, optional=SERVER_OWNED_VALUES).filter(bool),
        st.fixed_dictionaries({}, optional=EDITABLE_VALUES),
    ).map(lambda parts: {**parts[1], **parts[0]}),
)


@given(change_sets, device_edits_of_server_owned_fields)
def test_device_edit_of_a_server_owned_field_is_rejected_and_changes_nothing(changes, edit):
    state = fold(changes)[0]
    owned = set(edit.values) & SERVER_OWNED_JOB_FIELDS
    assert owned
    result = merge_field_edit(state, edit)
    assert result.outcome is Outcome.REJECTED
    assert result.error is not None and result.error.code == "server_owned_field"
    assert set(result.error.fields) == {f"data.{name}" for name in owned}
    assert_same_state(result.state, state)


def test_office_may_edit_a_server_owned_field():
    edit = FieldEdit("o1", JOB, HLC(T0, 0, "server"), Actor.OFFICE, {"priority": 1})
    result = merge_field_edit(JobState(JOB), edit)
    assert result.outcome is Outcome.APPLIED
    assert result.state.value("priority") == 1


@pytest.mark.parametrize("actor", list(Actor))
def test_edit_naming_an_unknown_job_field_is_rejected(actor):
    edit = FieldEdit("x1", JOB, HLC(T0, 0, "dev-1"), actor, {"cause": "storm", "colour": "red"})
    result = merge_field_edit(JobState(JOB), edit)
    assert result.outcome is Outcome.REJECTED
    assert result.error.code == "validation_error"
    assert set(result.error.fields) == {"data.colour"}
    assert result.state == JobState(JOB)


def test_status_change_with_round_below_one_is_rejected():
    change = StatusChange("e0", JOB, HLC(T0, 0, "dev-1"), Actor.FIELD, Status.ON_SITE, 0)
    result = merge_status(JobState(JOB), change)
    assert result.outcome is Outcome.REJECTED
    assert result.state == JobState(JOB)


# --- no silent overwrite ------------------------------------------------------------------------------


@st.composite
def concurrent_edits_of_one_field(draw):
    size = draw(st.integers(2, 7))
    edits = [
        FieldEdit(
            f"c{index}",
            JOB,
            draw(hlcs),
            draw(st.sampled_from(list(Actor))),
            {"cause": draw(EDITABLE_VALUES["cause"])},
            base={"cause": None},
        )
        for index in range(size)
    ]
    return edits, draw(st.permutations(edits))


@given(concurrent_edits_of_one_field())
def test_no_silent_overwrite_every_losing_value_is_reported_as_a_conflict(edits_and_order):
    edits, order = edits_and_order
    state, results = fold(order)
    winner = state.value("cause")
    assert (state.fields["cause"].hlc, canonical_json(winner)) == max(
        (edit.hlc, canonical_json(edit.values["cause"])) for edit in edits
    )
    conflicts = [conflict for result in results for conflict in result.conflicts]
    reported_losers = {canonical_json(conflict.loser) for conflict in conflicts}
    for value in {canonical_json(edit.values["cause"]) for edit in edits} - {canonical_json(winner)}:
        assert value in reported_losers
    for conflict in conflicts:
        assert conflict.kind is ConflictKind.CONCURRENT_EDIT
        assert (conflict.entity_id, conflict.field) == (JOB, "cause")
        assert conflict.loser != conflict.winner
        assert (conflict.winner_hlc, canonical_json(conflict.winner)) > (
            conflict.loser_hlc,
            canonical_json(conflict.loser),
        )
    for result in results:
        assert (result.outcome is Outcome.CONFLICT) == bool(result.conflicts)


def test_an_edit_made_on_top_of_the_stored_value_is_not_a_conflict():
    first = FieldEdit("c1", JOB, HLC(T0, 0, "dev-1"), Actor.FIELD, {"cause": "tree"})
    state = merge_field_edit(JobState(JOB), first).state
    second = FieldEdit("c2", JOB, HLC(T0 + 1, 0, "server"), Actor.OFFICE, {"cause": "storm"}, base={"cause": first.hlc})
    result = merge_field_edit(state, second)
    assert (result.outcome, result.conflicts) == (Outcome.APPLIED, ())
    assert result.state.value("cause") == "storm"


def test_a_stale_edit_with_the_winning_value_is_merged_without_conflict():
    newer = FieldEdit("c1", JOB, HLC(T0 + 5, 0, "server"), Actor.OFFICE, {"cause": "storm"})
    older = FieldEdit("c2", JOB, HLC(T0, 0, "dev-1"), Actor.FIELD, {"cause": "storm"})
    state = merge_field_edit(JobState(JOB), newer).state
    result = merge_field_edit(state, older)
    assert (result.outcome, result.conflicts) == (Outcome.MERGED, ())
    assert result.state == state


def test_a_concurrent_losing_edit_is_returned_with_both_values():
    newer = FieldEdit("c1", JOB, HLC(T0 + 5, 0, "server"), Actor.OFFICE, {"cause": "storm"})
    older = FieldEdit("c2", JOB, HLC(T0, 0, "dev-1"), Actor.FIELD, {"cause": "tree"})
    result = merge_field_edit(merge_field_edit(JobState(JOB), newer).state, older)
    assert result.outcome is Outcome.CONFLICT
    (conflict,) = result.conflicts
    assert (conflict.winner, conflict.loser, conflict.change_id) == ("storm", "tree", "c2")
    assert conflict.to_wire()["winner_hlc"] == str(newer.hlc)


# --- work after cancel ------------------------------------------------------------------------------


office_cancels = st.builds(
    StatusChange,
    st.just(""),
    st.just(JOB),
    hlcs,
    st.just(Actor.OFFICE),
    st.just(Status.CANCELLED),
    st.just(1),
)
field_work = st.builds(
    StatusChange, st.just(""), st.just(JOB), hlcs, st.just(Actor.FIELD), field_actor_statuses, rounds
)


@st.composite
def cancelled_round_and_field_work(draw):
    """One or two cancellations of one round, field work in that and other rounds, other office events."""
    cancelled_round = draw(rounds)
    cancels = [replace(c, round=cancelled_round) for c in draw(st.lists(office_cancels, min_size=1, max_size=2))]
    drawn = (
        with_ids(cancels, "cancel")
        + with_ids(draw(st.lists(field_work, min_size=1, max_size=6)), "work")
        + with_ids(draw(st.lists(office_statuses, max_size=2)), "office")
    )
    return drawn, draw(st.permutations(drawn))


def flagged_work(results):
    return {
        conflict.change_id
        for result in results
        for conflict in result.conflicts
        if conflict.kind is ConflictKind.WORK_AFTER_CANCEL
    }


@given(cancelled_round_and_field_work())
def test_work_after_cancel_flags_the_same_field_events_in_any_order(changes_and_order):
    changes, reordered = changes_and_order
    flagged = flagged_work(fold(changes)[1])
    assert flagged_work(fold(reordered)[1]) == flagged
    cancelled_rounds = {c.round for c in changes if c.status is Status.CANCELLED}
    assert flagged == {c.change_id for c in changes if c.actor is Actor.FIELD and c.round in cancelled_rounds}


@given(change_sets_and_orders)
def test_work_after_cancel_flags_are_order_independent_for_any_change_set(changes_and_order):
    changes, reordered = changes_and_order
    assert flagged_work(fold(changes)[1]) == flagged_work(fold(reordered)[1])


def test_cancellation_by_the_office_wins_over_field_work_of_its_round_and_keeps_it():
    work = StatusChange("w1", JOB, HLC(T0 + 9, 0, "dev-1"), Actor.FIELD, Status.COMPLETED, 1)
    cancel = StatusChange("k1", JOB, HLC(T0 + 1, 0, "server"), Actor.OFFICE, Status.CANCELLED, 1)
    for order in ([work, cancel], [cancel, work]):
        state, results = fold(order)
        assert state.status is Status.CANCELLED
        assert {mark.event_id for mark in state.marks} == {"w1", "k1"}
        (conflict,) = [c for r in results for c in r.conflicts]
        assert (conflict.kind, conflict.change_id, conflict.winner, conflict.loser) == (
            ConflictKind.WORK_AFTER_CANCEL,
            "w1",
            "cancelled",
            "completed",
        )


# --- facts -----------------------------------------------------------------------------------------


def test_repeating_a_fact_with_the_same_content_is_a_no_op():
    fact = {"meter_id": "m1", "value": 123, "read_at": "2024-01-01T10:00:00.000Z"}
    reordered_keys = dict(reversed(list(fact.items())))
    result = merge_fact(fact, reordered_keys)
    assert result.outcome is Outcome.APPLIED
    assert result.state == fact
    assert result.error is None


def test_reusing_a_fact_id_for_other_content_is_rejected():
    fact = {"meter_id": "m1", "value": 123}
    result = merge_fact(fact, {"meter_id": "m1", "value": 124})
    assert result.outcome is Outcome.REJECTED
    assert result.error.code == "id_reuse"
    assert result.state == fact


def test_a_new_fact_is_applied_as_sent():
    result = merge_fact(None, {"meter_id": "m1", "value": 7})
    assert (result.outcome, result.state) == (Outcome.APPLIED, {"meter_id": "m1", "value": 7})


fact_contents = st.fixed_dictionaries(
    {"meter_id": st.sampled_from(["m1", "m2"]), "value": st.one_of(st.none(), st.integers(0, 3))},
    optional={"skip_code": st.sampled_from(["dog", "no_access"]), "flags": st.lists(st.sampled_from("ab"))},
)


@st.composite
def fact_deliveries(draw):
    """Distinct facts, some delivered more than once, plus attempts to reuse an id for other content."""
    facts = {f"r{index}": draw(fact_contents) for index in range(draw(st.integers(1, 6)))}
    deliveries = [(fact_id, content) for fact_id, content in facts.items()]
    deliveries += [(fact_id, facts[fact_id]) for fact_id in draw(st.lists(st.sampled_from(sorted(facts))))]
    return facts, draw(st.permutations(deliveries))


def fold_facts(deliveries):
    store, outcomes = {}, []
    for fact_id, content in deliveries:
        result = merge_fact(store.get(fact_id), content)
        outcomes.append(result.outcome)
        if result.outcome is not Outcome.REJECTED:
            store[fact_id] = result.state
    return store, outcomes


@given(fact_deliveries())
def test_folding_facts_in_any_order_yields_the_same_facts(facts_and_deliveries):
    facts, deliveries = facts_and_deliveries
    store, outcomes = fold_facts(deliveries)
    assert store == facts
    assert set(outcomes) == {Outcome.APPLIED}


@given(fact_deliveries(), fact_contents)
def test_a_reused_fact_id_never_replaces_the_stored_fact(facts_and_deliveries, other):
    facts, deliveries = facts_and_deliveries
    fact_id = deliveries[0][0]
    store, _ = fold_facts(deliveries)
    result = merge_fact(store[fact_id], other)
    if canonical_json(other) == canonical_json(facts[fact_id]):
        assert result.outcome is Outcome.APPLIED
    else:
        assert result.outcome is Outcome.REJECTED
        assert result.error.code == "id_reuse"
    assert result.state == facts[fact_id]
