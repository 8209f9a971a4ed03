"""Repair jobs on the handheld: the crew's actions follow the lifecycle table, each writes its record and
its outbox entry atomically, and what the crew sees is the merge of pulled state and pending work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from pda_client import Handheld
from pda_client.errors import InvalidInput, NotAllowed, NotFound
from pda_client.jobs import Jobs
from sync_protocol import Actor, Status
from sync_protocol.lifecycle import SETTABLE_BY, TRANSITIONS
from sync_protocol.schemas import MAX_NOTE_CHARS
from tests.client.conftest import NOW, FakeClock
from tests.client.scope import Scope, customer, premise, stamp, status_event

# The crew's actions and the status each one records.
ACTIONS: dict[str, Status | None] = {
    "start_travel": Status.EN_ROUTE,
    "arrive": Status.ON_SITE,
    "hold": Status.ON_HOLD,
    "resume": Status.ON_SITE,
    "complete": Status.COMPLETED,
    "cannot_complete": Status.CANNOT_COMPLETE,
    "cancel": None,  # the service centre's alone
}
FINISH_CODES = {"complete": "repaired", "cannot_complete": "no_access"}


def counts(handheld: Handheld) -> tuple[int, int]:
    db = handheld.store.db
    return (
        db.execute("SELECT COUNT(*) FROM job_events").fetchone()[0],
        db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
    )


def act(handheld: Handheld, action: str, ref: str) -> Any:
    method = getattr(handheld.jobs, action)
    if action in FINISH_CODES:
        return method(ref, FINISH_CODES[action])
    return method(ref)


def put_in_status(pull: Callable[..., Any], scope: Scope, status: Status) -> str:
    """Pull a fresh job J-9 whose server status is `status` (recorded by whoever may record it)."""
    created = scope.created_at
    source = "field" if status in SETTABLE_BY[Actor.FIELD] else "office"
    events = [status_event("E-9-new", "J-9", "new", created, stamp(created, 9))]
    final_hlc = stamp(created, 9)
    if status is not Status.NEW:
        final_hlc = stamp(created + dt.timedelta(hours=1), 9)
        events.append(
            status_event("E-9-last", "J-9", status.value, created + dt.timedelta(hours=1), final_hlc, source=source)
        )
    pull(scope.job("J-9", number="J-1009", status=status.value, status_hlc=final_hlc), *events)
    return "J-9"


def outbox(handheld: Handheld) -> list[dict[str, Any]]:
    return [entry["payload"] for entry in handheld.outbox()]


# --- the lifecycle ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("status", list(Status))
def test_field_actions_follow_the_lifecycle_table(
    handheld: Handheld, pull: Callable[..., Any], scope: Scope, status: Status, action: str
) -> None:
    job_id = put_in_status(pull, scope, status)
    assert handheld.jobs.find(job_id)["status"] == status.value
    target = ACTIONS[action]
    allowed = target is not None and target in TRANSITIONS[Actor.FIELD].get(status, frozenset())
    if action == "resume":
        allowed = allowed and status is Status.ON_HOLD
    events_before, outbox_before = counts(handheld)

    if not allowed:
        with pytest.raises(NotAllowed):
            act(handheld, action, "J-1009")
        assert counts(handheld) == (events_before, outbox_before)
        assert handheld.jobs.find(job_id)["status"] == status.value
        return

    event = act(handheld, action, "J-1009")
    assert target is not None
    assert handheld.jobs.find(job_id)["status"] == target.value
    new_events = handheld.store.rows("SELECT * FROM job_events WHERE job_id = ? AND pending = 1", [job_id])
    assert [(e["kind"], e["status"], e["source"], e["round"]) for e in new_events] == [
        ("status", target.value, "field", 1)
    ]
    assert new_events[0]["id"] == event["id"]
    changes = outbox(handheld)
    expected_entities = ["job_event", "job"] if action in FINISH_CODES else ["job_event"]
    assert [c["entity"] for c in changes] == expected_entities
    assert changes[0]["entity_id"] == event["id"]
    assert changes[0]["data"]["status"] == target.value
    assert counts(handheld) == (events_before + 1, outbox_before + len(expected_entities))


def test_cancel_is_never_allowed_from_the_field(handheld: Handheld) -> None:
    for ref in ("J-1001", "J-1002"):
        with pytest.raises(NotAllowed, match="service centre"):
            handheld.jobs.cancel(ref)
    assert handheld.outbox() == []


def test_a_refused_action_names_what_the_job_can_do_instead(handheld: Handheld) -> None:
    with pytest.raises(NotAllowed) as refused:
        handheld.jobs.complete("J-1001", "repaired")
    assert refused.value.message == "Job J-1001 is assigned: it can go to en route, on site."


def test_status_event_and_outbox_entry_are_written_in_one_transaction(
    handheld: Handheld, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = counts(handheld)

    def battery_dies(self: Jobs, job_id: str) -> None:
        raise KeyboardInterrupt("battery died")

    monkeypatch.setattr(Jobs, "refresh", battery_dies)
    with pytest.raises(KeyboardInterrupt):
        handheld.jobs.arrive("J-1001")
    monkeypatch.undo()
    assert counts(handheld) == before
    assert handheld.jobs.find("J-1001")["status"] == "assigned"


# --- completing ---------------------------------------------------------------------------------------------


def test_complete_refuses_an_unknown_resolution_code_and_writes_nothing(handheld: Handheld) -> None:
    handheld.jobs.arrive("J-1001")
    before = counts(handheld)
    for code in ("", "fixed_it", None):
        with pytest.raises(InvalidInput, match="resolution code"):
            handheld.jobs.complete("J-1001", code)  # type: ignore[arg-type]
    assert counts(handheld) == before
    assert handheld.jobs.find("J-1001")["status"] == "on_site"


def test_complete_records_the_status_event_then_the_job_edit(handheld: Handheld) -> None:
    handheld.jobs.arrive("J-1001")
    handheld.jobs.complete("J-1001", "replaced", "Fuse replaced on pole 17")

    job = handheld.jobs.find("J-1001")
    assert job["status"] == "completed"
    assert job["resolution_code"] == "replaced"
    assert job["resolution_note"] == "Fuse replaced on pole 17"
    changes = outbox(handheld)
    assert [(c["entity"], c["data"].get("status")) for c in changes] == [
        ("job_event", "on_site"),
        ("job_event", "completed"),
        ("job", None),
    ]
    edit = changes[-1]
    assert edit["entity_id"] == "J-1"
    assert edit["data"] == {"resolution_code": "replaced", "resolution_note": "Fuse replaced on pole 17"}
    assert edit["base"] == {"resolution_code": None, "resolution_note": None}
    assert changes[1]["hlc"] < edit["hlc"]


def test_complete_is_atomic_a_failed_edit_leaves_no_status_event(
    handheld: Handheld, monkeypatch: pytest.MonkeyPatch
) -> None:
    handheld.jobs.arrive("J-1001")
    before = counts(handheld)
    real_refresh = Jobs.refresh
    calls = []

    def dies_on_second_refresh(self: Jobs, job_id: str) -> None:
        calls.append(job_id)
        if len(calls) == 2:  # the status event is written, the edit is being written
            raise KeyboardInterrupt("battery died")
        real_refresh(self, job_id)

    monkeypatch.setattr(Jobs, "refresh", dies_on_second_refresh)
    with pytest.raises(KeyboardInterrupt):
        handheld.jobs.complete("J-1001", "repaired")
    monkeypatch.undo()
    assert counts(handheld) == before
    assert handheld.jobs.find("J-1001")["status"] == "on_site"


def test_time_on_site_runs_from_arrival_to_completion_less_time_on_hold(handheld: Handheld, clock: FakeClock) -> None:
    handheld.jobs.start_travel("J-1001")
    clock.advance(minutes=20)  # travel is not time on site
    handheld.jobs.arrive("J-1001")
    clock.advance(minutes=30)
    handheld.jobs.hold("J-1001")
    clock.advance(minutes=15)
    handheld.jobs.resume("J-1001")
    clock.advance(minutes=45)
    handheld.jobs.complete("J-1001", "repaired")

    detail = handheld.jobs.detail("J-1001")
    assert detail["time_on_site_ms"] == (30 + 45) * 60_000
    assert [e["status"] for e in detail["events"] if e["kind"] == "status"] == [
        "new",
        "assigned",
        "en_route",
        "on_site",
        "on_hold",
        "on_site",
        "completed",
    ]


def test_time_on_site_stops_while_the_job_is_on_hold(handheld: Handheld, clock: FakeClock) -> None:
    handheld.jobs.arrive("J-1001")
    clock.advance(minutes=10)
    handheld.jobs.hold("J-1001")
    clock.advance(minutes=50)
    handheld.jobs.add_note("J-1001", "waiting for the bucket truck")
    assert handheld.jobs.detail("J-1001")["time_on_site_ms"] == 10 * 60_000


def test_held_job_offers_resume_instead_of_arrive(handheld: Handheld) -> None:
    handheld.jobs.arrive("J-1001")
    handheld.jobs.hold("J-1001", "waiting for parts")
    detail = handheld.jobs.detail("J-1001")
    assert detail["actions"] == ["cannot_complete", "resume"]
    assert [e["text"] for e in detail["events"] if e["kind"] == "note"] == ["waiting for parts"]


def test_resume_is_refused_unless_the_job_is_on_hold(handheld: Handheld) -> None:
    handheld.jobs.arrive("J-1001")
    with pytest.raises(NotAllowed, match="on hold"):
        handheld.jobs.resume("J-1001")


# --- notes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t ", "x" * (MAX_NOTE_CHARS + 1)])
def test_empty_or_oversized_note_is_refused_and_writes_nothing(handheld: Handheld, text: str) -> None:
    before = counts(handheld)
    with pytest.raises(InvalidInput):
        handheld.jobs.add_note("J-1001", text)
    assert counts(handheld) == before


def test_note_is_trimmed_and_queued_with_the_longest_allowed_text(handheld: Handheld) -> None:
    longest = "y" * MAX_NOTE_CHARS
    handheld.jobs.add_note("J-1001", f"  {longest}  ")
    (change,) = outbox(handheld)
    assert change["entity"] == "job_event"
    assert change["data"]["kind"] == "note"
    assert change["data"]["text"] == longest


def test_action_on_an_unknown_job_is_not_found(handheld: Handheld) -> None:
    with pytest.raises(NotFound, match="J-404"):
        handheld.jobs.arrive("J-404")


# --- the list -----------------------------------------------------------------------------------------------


def test_job_list_sorts_by_priority_then_schedule_and_marks_vip_and_safety(
    handheld: Handheld, pull: Callable[..., Any], scope: Scope
) -> None:
    pull(
        customer("C-9", "Dr. Wu", vip=True),
        premise("P-9", "C-9", "9 Hill St"),
        scope.job(
            "J-3",
            number="J-1003",
            customer_id="C-9",
            premise_id="P-9",
            priority=3,
            scheduled_start=NOW + dt.timedelta(minutes=30),
        ),
        *scope.job_events("J-3"),
    )
    jobs = handheld.jobs.list()
    assert [(j["number"], j["priority"]) for j in jobs] == [("J-1001", 1), ("J-1003", 3), ("J-1002", 3)]
    marks = {j["number"]: (j["vip"], j["safety"]) for j in jobs}
    assert marks == {"J-1001": (True, True), "J-1003": (True, False), "J-1002": (False, False)}


def test_finished_jobs_leave_the_list_unless_asked_for(handheld: Handheld) -> None:
    handheld.jobs.arrive("J-1001")
    handheld.jobs.complete("J-1001", "repaired")
    assert [j["number"] for j in handheld.jobs.list()] == ["J-1002"]
    assert [j["number"] for j in handheld.jobs.list(include_finished=True)] == ["J-1002", "J-1001"]


def test_detail_shows_hazards_and_customer(handheld: Handheld, pull: Callable[..., Any]) -> None:
    pull(premise("P-5", "C-2", "1 Hospital Way", hazards=["dog", "electrical_hazard"]))
    detail = handheld.jobs.detail("J-1001")
    assert detail["premise"]["hazards"] == ["dog", "electrical_hazard"]
    assert detail["customer"]["name"] == "City Hospital"
    assert detail["actions"] == ["arrive", "start_travel"]


# --- pulled state and pending work ------------------------------------------------------------------------


def test_office_cancellation_beats_a_pending_arrival(
    handheld: Handheld, pull: Callable[..., Any], scope: Scope
) -> None:
    handheld.jobs.arrive("J-1001")
    assert handheld.jobs.find("J-1001")["status"] == "on_site"
    # the office cancelled *earlier* by the clock than the crew arrived: the stage still wins
    cancelled_hlc = stamp(NOW - dt.timedelta(minutes=10), 0)
    pull(
        scope.job("J-1", status="cancelled", status_hlc=cancelled_hlc),
        status_event("E-1-cancel", "J-1", "cancelled", NOW - dt.timedelta(minutes=10), cancelled_hlc),
    )
    job = handheld.jobs.find("J-1001")
    assert job["status"] == "cancelled"
    # the crew's arrival is kept, still waiting to be sent
    pending = handheld.store.rows("SELECT status FROM job_events WHERE job_id = 'J-1' AND pending = 1")
    assert pending == [{"status": "on_site"}]
    assert [c["data"].get("status") for c in outbox(handheld)] == ["on_site"]
    with pytest.raises(NotAllowed):
        handheld.jobs.hold("J-1001")


def test_pull_without_our_pending_status_keeps_the_local_status(
    handheld: Handheld, pull: Callable[..., Any], scope: Scope
) -> None:
    handheld.jobs.start_travel("J-1001")
    handheld.jobs.arrive("J-1001")
    pull(scope.job("J-1", summary="No power: transformer"), *scope.job_events("J-1"))
    job = handheld.jobs.find("J-1001")
    assert job["status"] == "on_site"
    assert job["summary"] == "No power: transformer"


def test_pending_edit_survives_a_pull_with_other_values_and_is_reapplied_on_top(
    handheld: Handheld, pull: Callable[..., Any], scope: Scope
) -> None:
    office_stamp = stamp(NOW - dt.timedelta(hours=1), 0, "office")  # before the crew's edit
    handheld.jobs.edit("J-1001", cause="tree on line")
    pull(scope.job("J-1", summary="Pole down", field_values={"cause": ("squirrel", office_stamp)}))

    job = handheld.jobs.find("J-1001")
    assert job["cause"] == "tree on line"
    assert job["summary"] == "Pole down"
    assert job["server_state"]["fields"]["cause"] == ["squirrel", office_stamp]


def test_rejected_edit_disappears_and_the_job_shows_the_server_value_again(
    handheld: Handheld, pull: Callable[..., Any], scope: Scope
) -> None:
    office_stamp = stamp(NOW - dt.timedelta(hours=1), 0, "office")
    handheld.jobs.edit("J-1001", cause="tree on line")
    pull(scope.job("J-1", field_values={"cause": ("squirrel", office_stamp)}))
    (entry,) = handheld.outbox()

    engine = pull()  # an engine over the same store
    result = rejection(entry["change_id"], "not_in_scope", "The job was reassigned.", {"entity_id": ["Not yours."]})
    engine._settle_all([entry], [result])

    assert handheld.outbox() == []
    assert handheld.jobs.find("J-1001")["cause"] == "squirrel"
    (rejected,) = handheld.rejected()
    assert rejected["payload"] == entry["payload"]
    assert (rejected["code"], rejected["message"]) == ("not_in_scope", "The job was reassigned.")
    assert rejected["fields"] == {"entity_id": ["Not yours."]}


def test_rejected_edit_of_a_field_the_server_never_set_clears_it_again(
    handheld: Handheld, pull: Callable[..., Any]
) -> None:
    handheld.jobs.edit("J-1002", contact_name="Mr. Lee", follow_up_needed=True)
    assert handheld.jobs.find("J-1002")["contact_name"] == "Mr. Lee"
    (entry,) = handheld.outbox()

    pull()._settle_all([entry], [rejection(entry["change_id"], "not_in_scope", "Not assigned to you.")])

    job = handheld.jobs.find("J-1002")
    assert (job["contact_name"], job["follow_up_needed"]) == (None, None)
    assert job["field_hlc"] == {}
    assert [r["entity_id"] for r in handheld.rejected()] == ["J-2"]


def test_rejected_status_event_leaves_the_job_at_its_previous_status(
    handheld: Handheld, pull: Callable[..., Any]
) -> None:
    handheld.jobs.arrive("J-1001")
    (entry,) = handheld.outbox()
    pull()._settle_all([entry], [rejection(entry["change_id"], "transition_not_allowed", "Not from here.")])

    assert handheld.jobs.find("J-1001")["status"] == "assigned"
    assert handheld.store.rows("SELECT id FROM job_events WHERE pending = 1") == []
    (rejected,) = handheld.rejected()
    assert rejected["payload"]["data"]["status"] == "on_site"


def test_applied_status_event_is_settled_with_the_servers_stamp(handheld: Handheld, pull: Callable[..., Any]) -> None:
    event = handheld.jobs.arrive("J-1001")
    (entry,) = handheld.outbox()
    server_stamp = stamp(NOW, 5)
    pull()._settle_all(
        [entry],
        [
            {
                "change_id": entry["change_id"],
                "status": "applied",
                "error": None,
                "conflicts": [],
                "hlc": server_stamp,
                "flags": ["clock_skew"],
            }
        ],
    )
    row = handheld.store.get("job_events", event["id"])
    assert (row["pending"], row["hlc"], row["flags"]) == (0, server_stamp, ["clock_skew"])
    assert handheld.jobs.find("J-1001")["status"] == "on_site"
    assert handheld.outbox() == []


def rejection(change_id: str, code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """A push result as the server shapes a per-change rejection."""
    return {
        "change_id": change_id,
        "status": "rejected",
        "error": {"code": code, "message": message, "fields": fields or {}},
        "conflicts": [],
        "hlc": None,
        "flags": [],
    }


def test_jobs_now_is_injectable(handheld: Handheld) -> None:
    moment = dt.datetime(2025, 6, 16, 12, 34, 56, 789000, tzinfo=dt.UTC)
    jobs = Jobs(handheld.store, handheld.clock, now=lambda: moment)
    event = jobs.add_note("J-1001", "gate code 4711")
    assert event["recorded_at"] == "2025-06-16T12:34:56.789Z"
