"""Pushing changes: exactly-once effect, per-change rejection, domain rules and merge conflicts
(DESIGN.md invariants 2, 5, 6 and 10; section 4's meter-reading and job rules)."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import ChangeReceipt, ConflictRecord, Job, JobEvent, MeterReading
from server.services import office
from sync_protocol import HLC, PROTOCOL_HEADER, PROTOCOL_VERSION
from sync_protocol.schemas import MAX_BATCH_CHANGES, PushResponseSchema
from tests.server.helpers import assert_error, counts, device, rejected, table_dump
from tests.server.world import LAST_READ_AT

PUSH = "/api/v1/sync/push"
EFFECT_TABLES = ("meter_readings", "job_events", "change_receipts", "change_log", "conflicts")


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def push_results(handheld, *changes, batch_id: str | None = None) -> list[dict]:
    response = handheld.push(*changes, batch_id=batch_id)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    PushResponseSchema().load(body)  # the response has the wire shape
    assert [r["change_id"] for r in body["results"]] == [c["change_id"] for c in changes]
    return body["results"]


def one(handheld, change) -> dict:
    (result,) = push_results(handheld, change)
    return result


def get(app, model, key):
    with app.app_context():
        row = db.session.get(model, key)
        if row is not None:
            db.session.expunge(row)
        return row


def office_do(app, action, job_id: str, *args, **kwargs):
    with app.app_context():
        job = db.session.get(Job, job_id)
        result = action(job, *args, **kwargs)
        db.session.commit()
        return result


# --- exactly-once ---------------------------------------------------------------------------------


def test_retry_of_acknowledged_batch_is_noop(app, client, world):
    reader = device(app, client, "reader")
    lineman = device(app, client, "lineman")
    job = world.jobs["outage"]
    reader_batch = [reader.reading("M1", 1300), reader.reading("M2", 1290), reader.reading("M5", 1)]
    lineman_batch = [
        lineman.status(job, "en_route"),
        lineman.note(job, "on my way"),
        lineman.change("job", job, {"cause": "tree on line"}),
    ]
    first_reader = push_results(reader, *reader_batch, batch_id="batch-r")
    first_lineman = push_results(lineman, *lineman_batch, batch_id="batch-l")
    assert [r["status"] for r in first_reader] == ["applied", "applied", "rejected"]
    assert [r["status"] for r in first_lineman] == ["applied", "applied", "applied"]
    before_counts = counts(app, *EFFECT_TABLES)
    before = table_dump(app, exclude={"devices"})
    for _ in range(2):  # lost responses: the device sends the same batches again
        assert push_results(reader, *reader_batch, batch_id="batch-r") == first_reader
        assert push_results(lineman, *lineman_batch, batch_id="batch-l") == first_lineman
    assert counts(app, *EFFECT_TABLES) == before_counts
    assert table_dump(app, exclude={"devices"}) == before


def test_change_id_reused_with_other_content_is_rejected(app, client, world):
    reader = device(app, client, "reader")
    original = reader.reading("M1", 1300)
    assert one(reader, original)["status"] == "applied"
    before = table_dump(app, exclude={"devices"})
    altered = {**original, "data": {**original["data"], "value": 1400}}
    rejected(one(reader, altered), "id_reuse")
    assert table_dump(app, exclude={"devices"}) == before
    assert get(app, MeterReading, original["entity_id"]).value == 1300
    assert get(app, ChangeReceipt, original["change_id"]).status == "applied"


def test_change_id_of_another_user_is_id_reuse_even_with_equal_content(app, client, world):
    reader = device(app, client, "reader")
    reader2 = device(app, client, "reader2")
    change = reader.reading("M1", 1300)
    first = one(reader, change)
    second = one(reader2, change)
    rejected(second, "id_reuse")
    assert second != first


def test_fact_id_reused_for_other_content_is_rejected_and_a_resent_fact_is_not_duplicated(app, client, world):
    reader = device(app, client, "reader")
    original = reader.reading("M1", 1300)
    one(reader, original)
    resent = {**original, "change_id": uuid.uuid4().hex}  # the same reading under a new change id
    altered = {**original, "change_id": uuid.uuid4().hex, "data": {**original["data"], "value": 1400}}
    same, other = push_results(reader, resent, altered)
    assert same["status"] == "applied"
    rejected(other, "id_reuse")
    with app.app_context():
        rows = db.session.execute(sa.select(MeterReading.value).where(MeterReading.id == original["entity_id"]))
        assert rows.scalars().all() == [1300]


def test_known_change_in_another_batch_returns_its_stored_result(app, client, world):
    lineman = device(app, client, "lineman")
    known = lineman.status(world.jobs["outage"], "en_route")
    (stored,) = push_results(lineman, known, batch_id="first")
    fresh = lineman.note(world.jobs["outage"], "arrived late")
    again, new = push_results(lineman, known, fresh, batch_id="second")
    assert again == stored
    assert new["status"] == "applied"
    with app.app_context():
        events = db.session.execute(sa.select(sa.func.count()).where(JobEvent.id == known["entity_id"]))
        assert events.scalar_one() == 1


def test_one_invalid_change_is_rejected_alone_and_its_payload_kept(app, client, world):
    reader = device(app, client, "reader")
    good1, good2 = reader.reading("M1", 1300), reader.reading("M2", 1290)
    bad = reader.reading("M3", 99_990)
    bad["data"]["value"] = "ninety"
    results = push_results(reader, good1, bad, good2)
    assert [r["status"] for r in results] == ["applied", "rejected", "applied"]
    error = rejected(results[1], "validation_error")
    assert "data.value" in error["fields"]
    receipt = get(app, ChangeReceipt, bad["change_id"])
    assert receipt.status == "rejected"
    assert receipt.payload == bad
    assert receipt.result == results[1]
    assert get(app, MeterReading, bad["entity_id"]) is None
    assert get(app, MeterReading, good2["entity_id"]) is not None


# --- malformed batches ----------------------------------------------------------------------------


def _batch(handheld, changes: list[dict]) -> dict:
    return {"protocol": PROTOCOL_VERSION, "batch_id": uuid.uuid4().hex, "changes": changes}


def _missing_change_id(h):
    body = _batch(h, [h.reading("M1", 1300), h.reading("M2", 1290)])
    del body["changes"][1]["change_id"]
    return body, "changes.1.change_id"


def _duplicate_change_ids(h):
    first, second = h.reading("M1", 1300), h.reading("M2", 1290)
    second["change_id"] = first["change_id"]
    return _batch(h, [first, second]), "changes.1.change_id"


def _bad_change_id(h):
    change = h.reading("M1", 1300)
    change["change_id"] = "not an id!"
    return _batch(h, [h.reading("M2", 1290), change]), "changes.1.change_id"


def _too_many_changes(h):
    changes = [h.reading("M1", 1300 + i) for i in range(MAX_BATCH_CHANGES + 1)]
    return _batch(h, changes), "changes"


def _no_changes(h):
    return _batch(h, []), "changes"


def _protocol_missing(h):
    body = _batch(h, [h.reading("M1", 1300)])
    del body["protocol"]
    return body, "protocol"


def _batch_id_missing(h):
    body = _batch(h, [h.reading("M1", 1300)])
    del body["batch_id"]
    return body, "batch_id"


def _change_not_an_object(h):
    return _batch(h, [h.reading("M1", 1300), "reading"]), "changes.1"


def _unknown_top_level_field(h):
    body = _batch(h, [h.reading("M1", 1300)])
    body["priority"] = "high"
    return body, "priority"


MALFORMED = [
    _missing_change_id,
    _duplicate_change_ids,
    _bad_change_id,
    _too_many_changes,
    _no_changes,
    _protocol_missing,
    _batch_id_missing,
    _change_not_an_object,
    _unknown_top_level_field,
]


@pytest.mark.parametrize("make", MALFORMED, ids=[m.__name__.strip("_") for m in MALFORMED])
def test_malformed_batch_is_refused_whole_with_field_paths(app, client, world, make):
    reader = device(app, client, "reader")
    body, path = make(reader)
    before = table_dump(app)
    error = assert_error(client.post(PUSH, json=body, headers=reader.headers), 422, "validation_error")
    assert path in error["fields"], error
    assert table_dump(app) == before


def test_push_without_any_protocol_version_is_refused(app, client, world):
    reader = device(app, client, "reader")
    body = _batch(reader, [reader.reading("M1", 1300)])
    del body["protocol"]
    headers = {"Authorization": reader.headers["Authorization"]}
    before = table_dump(app)
    error = assert_error(client.post(PUSH, json=body, headers=headers), 422, "validation_error")
    assert PROTOCOL_HEADER in error["fields"]
    assert table_dump(app) == before


# --- job rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"priority": 1},
        {"assigned_to": "U-lineman2"},
        {"summary": "something else"},
        {"scheduled_start": "2030-01-01T08:00:00Z"},
        {"cause": "tree on line", "customer_id": "C2"},
    ],
    ids=["priority", "assigned_to", "summary", "scheduled_start", "mixed-with-editable"],
)
def test_device_edit_of_server_owned_job_field_is_rejected(app, client, world, values):
    lineman = device(app, client, "lineman")
    job_id = world.jobs["outage"]
    before = get(app, Job, job_id)
    error = rejected(one(lineman, lineman.change("job", job_id, values)), "server_owned_field")
    owned = {name for name in values if name != "cause"}
    assert set(error["fields"]) == {f"data.{name}" for name in owned}
    after = get(app, Job, job_id)
    for name in (*values, "field_hlc"):
        assert getattr(after, name) == getattr(before, name)


@pytest.mark.parametrize("status", ["cancelled", "closed", "new", "assigned"])
def test_field_cannot_set_office_statuses(app, client, world, status):
    lineman = device(app, client, "lineman")
    change = lineman.status(world.jobs["outage"], status)
    rejected(one(lineman, change), "transition_not_allowed")
    assert get(app, JobEvent, change["entity_id"]) is None
    assert get(app, Job, world.jobs["outage"]).status == "assigned"


def test_field_event_in_a_round_the_job_never_had_is_unknown_round(app, client, world):
    lineman = device(app, client, "lineman")
    change = lineman.status(world.jobs["outage"], "en_route", round_=2)
    error = rejected(one(lineman, change), "unknown_round")
    assert "data.round" in error["fields"]
    assert get(app, JobEvent, change["entity_id"]) is None
    assert get(app, Job, world.jobs["outage"]).status == "assigned"


def test_field_event_in_current_round_applies(app, client, world):
    lineman = device(app, client, "lineman")
    change = lineman.status(world.jobs["outage"], "en_route", round_=1)
    assert one(lineman, change)["status"] == "applied"
    assert get(app, Job, world.jobs["outage"]).status == "en_route"


# --- meter-reading rules --------------------------------------------------------------------------


def test_reading_beyond_the_register_is_rejected(app, client, world):
    reader = device(app, client, "reader")
    too_big = reader.reading("M1", 100_000)  # 5 dials read 0..99999
    largest = reader.reading("M2", 99_999)
    results = push_results(reader, too_big, largest)
    error = rejected(results[0], "reading_invalid")
    assert error["fields"] == {"data": ["value_out_of_register"]}
    assert results[1]["status"] == "applied"
    assert get(app, MeterReading, too_big["entity_id"]) is None


@pytest.mark.parametrize(
    ("read_at", "rule"),
    [
        (lambda: LAST_READ_AT - dt.timedelta(minutes=1), "read_before_previous"),
        (lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=1), "read_in_future"),
        (lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6), "read_in_future"),
    ],
    ids=["before-previous-read", "a-day-ahead", "beyond-allowed-skew"],
)
def test_reading_dated_outside_its_window_is_rejected(app, client, world, read_at, rule):
    reader = device(app, client, "reader")
    change = reader.reading("M1", 1300, read_at=iso(read_at()))  # times taken now, not at collection
    error = rejected(one(reader, change), "reading_invalid")
    assert error["fields"] == {"data": [rule]}
    assert get(app, MeterReading, change["entity_id"]) is None


@pytest.mark.parametrize(
    "read_at",
    [lambda: LAST_READ_AT, lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)],
    ids=["at-previous-read", "within-allowed-skew"],
)
def test_reading_dated_at_the_edges_of_its_window_applies(app, client, world, read_at):
    reader = device(app, client, "reader")
    assert one(reader, reader.reading("M1", 1300, read_at=iso(read_at())))["status"] == "applied"


def test_register_rollover_counts_consumption_past_zero(app, client, world):
    reader = device(app, client, "reader")
    change = reader.reading("M3", 120)  # M3: 5 dials, previous actual read 99500
    assert one(reader, change)["status"] == "applied"
    stored = get(app, MeterReading, change["entity_id"])
    assert stored.consumption == 620
    assert stored.rollover is True
    assert stored.check_result == "in_range"  # 33 days x 10/day expected: 165..660


def test_lower_value_without_rollover_is_not_flagged_as_one(app, client, world):
    reader = device(app, client, "reader")
    change = reader.reading("M1", 1300)
    one(reader, change)
    stored = get(app, MeterReading, change["entity_id"])
    assert (stored.consumption, stored.rollover) == (300, False)


def test_correction_supersedes_the_earlier_reading(app, client, world):
    reader = device(app, client, "reader")
    first = reader.reading("M1", 1300)
    correction = reader.reading("M1", 1310, supersedes=first["entity_id"], reading_type="re_read")
    assert [r["status"] for r in push_results(reader, first, correction)] == ["applied", "applied"]
    old, new = get(app, MeterReading, first["entity_id"]), get(app, MeterReading, correction["entity_id"])
    assert old.superseded_by == correction["entity_id"]
    assert old.value == 1300  # facts are never overwritten
    assert new.supersedes == first["entity_id"] and new.superseded_by is None


@pytest.mark.parametrize("target", ["unknown", "other-meter"])
def test_correction_of_an_unknown_reading_is_rejected(app, client, world, target):
    reader = device(app, client, "reader")
    elsewhere = reader.reading("M2", 1300)
    one(reader, elsewhere)
    supersedes = "MR-nope" if target == "unknown" else elsewhere["entity_id"]
    change = reader.reading("M1", 1310, supersedes=supersedes)
    error = rejected(one(reader, change), "reading_invalid")
    assert "data.supersedes" in error["fields"]
    assert get(app, MeterReading, elsewhere["entity_id"]).superseded_by is None


# --- clocks ---------------------------------------------------------------------------------------


def test_change_stamped_a_day_ahead_applies_flagged_with_a_clamped_stamp(app, client, world):
    reader = device(app, client, "reader")
    change = reader.reading("M1", 1300)
    ahead = HLC(int(time.time() * 1000) + 86_400_000, 0, reader.clock.node)
    change["hlc"] = str(ahead)
    before_ms = int(time.time() * 1000)
    result = one(reader, change)
    after_ms = int(time.time() * 1000)
    assert result["status"] == "applied"
    assert "clock_skew" in result["flags"]
    stamp = HLC.parse(result["hlc"])
    assert before_ms - 1000 <= stamp.wall_ms <= after_ms + 1000
    assert stamp.node == reader.clock.node
    stored = get(app, MeterReading, change["entity_id"])
    assert stored.hlc == result["hlc"]
    assert "clock_skew" in stored.flags
    assert stored.value == 1300  # the data is kept


def test_fast_clock_cannot_win_later_edits(app, client, world):
    lineman = device(app, client, "lineman")
    job_id = world.jobs["outage"]
    change = lineman.change("job", job_id, {"cause": "tree on line"})
    change["hlc"] = str(HLC(int(time.time() * 1000) + 86_400_000, 0, lineman.clock.node))
    result = one(lineman, change)
    assert result["status"] == "applied" and "clock_skew" in result["flags"]
    assert get(app, Job, job_id).field_hlc["cause"] == result["hlc"]  # stored clamped
    office_do(app, office.edit_job, job_id, {"cause": "storm"})  # a later edit by the office
    assert get(app, Job, job_id).cause == "storm"


def test_change_stamped_slightly_ahead_keeps_its_stamp(app, client, world):
    reader = device(app, client, "reader")
    change = reader.reading("M1", 1300)
    change["hlc"] = str(HLC(int(time.time() * 1000) + 60_000, 0, reader.clock.node))
    result = one(reader, change)
    assert result["status"] == "applied" and result["flags"] == []
    assert result["hlc"] == change["hlc"]


# --- conflicts ------------------------------------------------------------------------------------


def _office_cause(app, job_id: str, value: str) -> HLC:
    office_do(app, office.edit_job, job_id, {"cause": value})
    return HLC.parse(get(app, Job, job_id).field_hlc["cause"])


@pytest.mark.parametrize("device_clock", ["later", "earlier"])
def test_concurrent_edit_keeps_the_loser_in_a_conflict(app, client, world, device_clock):
    lineman = device(app, client, "lineman")
    job_id = world.jobs["outage"]
    office_stamp = _office_cause(app, job_id, "storm")
    offset = 1000 if device_clock == "later" else -1000
    change = lineman.change("job", job_id, {"cause": "tree on line"}, base={"cause": None})  # stale base
    change["hlc"] = str(HLC(office_stamp.wall_ms + offset, 0, lineman.clock.node))
    result = one(lineman, change)
    winner, loser = ("tree on line", "storm") if device_clock == "later" else ("storm", "tree on line")
    assert result["status"] == "conflict", result
    (conflict,) = result["conflicts"]
    assert (conflict["field"], conflict["winner"], conflict["loser"]) == ("cause", winner, loser)
    assert conflict["change_id"] == change["change_id"]
    assert get(app, Job, job_id).cause == winner
    with app.app_context():
        (row,) = db.session.execute(sa.select(ConflictRecord)).scalars()
        assert (row.kind, row.entity, row.entity_id, row.field) == ("concurrent_edit", "job", job_id, "cause")
        assert (row.winner, row.loser) == (winner, loser)
        assert row.user_id == world.users["lineman"]
        assert row.device_id == lineman.device_id


def test_edit_based_on_the_current_value_is_no_conflict(app, client, world):
    lineman = device(app, client, "lineman")
    job_id = world.jobs["outage"]
    office_stamp = _office_cause(app, job_id, "storm")
    change = lineman.change("job", job_id, {"cause": "tree on line"}, base={"cause": str(office_stamp)})
    change["hlc"] = str(HLC(office_stamp.wall_ms + 1000, 0, lineman.clock.node))
    result = one(lineman, change)
    assert (result["status"], result["conflicts"]) == ("applied", [])
    assert get(app, Job, job_id).cause == "tree on line"
    assert counts(app, "conflicts") == {"conflicts": 0}


def _assert_work_after_cancel(app, world, event_id: str) -> None:
    event = get(app, JobEvent, event_id)
    assert event is not None and "work_after_cancel" in event.flags
    assert get(app, Job, world.jobs["outage"]).status == "cancelled"
    with app.app_context():
        (row,) = db.session.execute(sa.select(ConflictRecord)).scalars()
        assert (row.kind, row.entity_id, row.change_id) == ("work_after_cancel", world.jobs["outage"], event_id)
        assert (row.winner, row.loser) == ("cancelled", "en_route")
        assert row.user_id == world.users["lineman"]


def test_field_status_after_office_cancellation_is_kept_and_flagged(app, client, world):
    lineman = device(app, client, "lineman")
    office_do(app, office.cancel_job, world.jobs["outage"], reason="customer called back")
    change = lineman.status(world.jobs["outage"], "en_route")
    result = one(lineman, change)
    assert result["status"] == "conflict", result
    assert "work_after_cancel" in result["flags"]
    assert [c["kind"] for c in result["conflicts"]] == ["work_after_cancel"]
    _assert_work_after_cancel(app, world, change["entity_id"])


def test_office_cancellation_after_field_status_flags_the_field_work(app, client, world):
    lineman = device(app, client, "lineman")
    lineman.pull_all()
    change = lineman.status(world.jobs["outage"], "en_route")
    assert one(lineman, change)["status"] == "applied"
    office_do(app, office.cancel_job, world.jobs["outage"])
    _assert_work_after_cancel(app, world, change["entity_id"])
    # the device hears of it: the flagged event and the conflict come with its next pull
    records = {(r["entity"], r["id"]): r for r in lineman.pull_all()}
    assert "work_after_cancel" in records[("job_event", change["entity_id"])]["data"]["flags"]
    assert records[("job", world.jobs["outage"])]["data"]["status"] == "cancelled"
    assert [key for key in records if key[0] == "conflict"]
