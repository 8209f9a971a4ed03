"""The echo: a device does not pull back what its own push stored exactly as sent (the push answer told it
the stamp and flags), while every other device of its user does, and anything else that changed — a
superseded reading, a merged job, the office's work, a flagged event — still reaches the sender too."""

from __future__ import annotations

import base64
import json
import time

import pytest
import sqlalchemy as sa

from server.database import write_transaction
from server.extensions import db
from server.models import ChangeLog, Job, Route, User
from server.services import changefeed, office
from server.services.pull import Cursor, pull_page
from sync_protocol import HLC
from tests.server.helpers import device
from tests.server.test_sync_push import push_results


def keys(records: list[dict]) -> set[tuple[str, str]]:
    return {(r["entity"], r["id"]) for r in records}


def readings(*changes: dict) -> set[tuple[str, str]]:
    return {("meter_reading", c["entity_id"]) for c in changes}


def pull(handheld, limit: int | None = None) -> tuple[list[dict], int]:
    """Every record after the handheld's cursor, and how many pages that took."""
    records, pages = [], 0
    while True:
        query = {k: v for k, v in (("cursor", handheld.cursor), ("limit", limit)) if v}
        response = handheld.client.get("/api/v1/sync/pull", query_string=query, headers=handheld.headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        records.extend(body["records"])
        handheld.cursor = body["cursor"]
        pages += 1
        if not body["has_more"]:
            return records, pages


def synced(app, client, username: str, name: str):
    handheld = device(app, client, username, name)
    handheld.pull_all()  # the snapshot: from here on only the change log
    return handheld


def office_do(app, action, job_id: str, *args, **kwargs) -> None:
    with app.app_context():
        action(db.session.get(Job, job_id), *args, **kwargs)
        db.session.commit()


def office_note(app, job_id: str, text: str) -> str:
    with app.app_context():
        note_id = office.add_note(db.session.get(Job, job_id), text, None).id
        db.session.commit()
        return note_id


# --- readings -------------------------------------------------------------------------------------


def test_own_readings_are_not_pulled_back_but_reach_the_users_other_handheld(app, client, world):
    first, second = synced(app, client, "reader", "first"), synced(app, client, "reader", "second")
    other_reader = synced(app, client, "reader2", "other")
    changes = [first.reading("M1", 1300), first.reading("M2", 1290)]
    push_results(first, *changes)
    assert first.pull_all() == []
    delivered = second.pull_all()
    assert keys(delivered) == readings(*changes)
    assert {r["data"]["value"] for r in delivered} == {1300, 1290}
    assert other_reader.pull_all() == []


def test_clamped_stamp_comes_in_the_answer_not_the_echo(app, client, world):
    first, second = synced(app, client, "reader", "first"), synced(app, client, "reader", "second")
    change = first.reading("M1", 1300)
    change["hlc"] = str(HLC(int(time.time() * 1000) + 86_400_000, 0, first.clock.node))
    (result,) = push_results(first, change)
    assert "clock_skew" in result["flags"] and result["hlc"] != change["hlc"]
    assert first.pull_all() == []
    (record,) = second.pull_all()
    assert (record["data"]["hlc"], record["data"]["flags"]) == (result["hlc"], result["flags"])


def test_superseded_reading_skips_the_sender_and_reaches_its_other_devices(app, client, world):
    """The superseded reading changed only in superseded_by, which the sender knows (handhelds derive the
    current reading from `supersedes`)."""
    first, second = synced(app, client, "reader", "first"), synced(app, client, "reader", "second")
    original = first.reading("M1", 1300)
    push_results(first, original)
    second.pull_all()
    correction = first.reading("M1", 1310, supersedes=original["entity_id"], reading_type="re_read")
    push_results(first, correction)
    assert first.pull_all() == []
    records = second.pull_all()
    (superseded,) = [r for r in records if r["id"] == original["entity_id"]]
    assert superseded["data"]["superseded_by"] == correction["entity_id"]
    assert keys(records) == {
        ("meter_reading", original["entity_id"]),
        ("meter_reading", correction["entity_id"]),
    }


def test_reading_corrected_in_its_own_batch_is_the_senders_own(app, client, world):
    """Two causes of one row in one transaction (stored as sent, then superseded), both the sender's."""
    first, second = synced(app, client, "reader", "first"), synced(app, client, "reader", "second")
    original = first.reading("M1", 1300)
    correction = first.reading("M1", 1310, supersedes=original["entity_id"], reading_type="re_read")
    push_results(first, original, correction)
    assert first.pull_all() == []
    (record,) = [r for r in second.pull_all() if r["id"] == original["entity_id"]]
    assert record["data"]["superseded_by"] == correction["entity_id"]


def test_another_handhelds_correction_of_my_reading_reaches_me(app, client, world):
    first, second = synced(app, client, "reader", "first"), synced(app, client, "reader", "second")
    original = first.reading("M1", 1300)
    push_results(first, original)
    second.pull_all()
    correction = second.reading("M1", 1310, supersedes=original["entity_id"], reading_type="re_read")
    push_results(second, correction)
    assert keys(first.pull_all()) == {
        ("meter_reading", original["entity_id"]),
        ("meter_reading", correction["entity_id"]),
    }
    assert second.pull_all() == []  # the original's superseded_by changed by its own push


def test_route_handed_over_again_sends_the_senders_readings_back(app, client, world):
    """Scope changes are the office's: a route that comes back arrives whole, own readings included."""
    reader = synced(app, client, "reader", "first")
    change = reader.reading("M1", 1300)
    push_results(reader, change)
    with app.app_context():
        office.assign_route(db.session.get(Route, "R1"), world.users["reader2"])
        db.session.commit()
        office.assign_route(db.session.get(Route, "R1"), world.users["reader"])
        db.session.commit()
    assert ("meter_reading", change["entity_id"]) in keys(reader.pull_all())


# --- jobs -----------------------------------------------------------------------------------------


def test_own_event_skipped_but_the_merged_job_and_office_work_delivered(app, client, world):
    lineman = synced(app, client, "lineman", "first")
    job_id = world.jobs["outage"]
    event = lineman.status(job_id, "en_route")
    push_results(lineman, event)
    records = lineman.pull_all()
    assert keys(records) == {("job", job_id)}  # the job's merged state, not the event echoed
    assert records[0]["data"]["status"] == "en_route"
    note_id = office_note(app, job_id, "customer will be home after 3")
    assert keys(lineman.pull_all()) == {("job_event", note_id)}


def test_event_flagged_by_a_conflict_reaches_the_sender(app, client, world):
    lineman = synced(app, client, "lineman", "first")
    job_id = world.jobs["outage"]
    office_do(app, office.cancel_job, job_id, reason="customer called back")
    lineman.pull_all()
    event = lineman.status(job_id, "en_route")
    (result,) = push_results(lineman, event)
    assert result["status"] == "conflict"
    records = {(r["entity"], r["id"]): r for r in lineman.pull_all()}
    assert "work_after_cancel" in records[("job_event", event["entity_id"])]["data"]["flags"]
    assert [key for key in records if key[0] == "conflict"]


def test_job_edit_is_delivered_back(app, client, world):
    """A job edit is merged into the job record (stamps, server state): never the sender's own row."""
    lineman = synced(app, client, "lineman", "first")
    job_id = world.jobs["outage"]
    push_results(lineman, lineman.change("job", job_id, {"cause": "tree on line"}))
    (record,) = lineman.pull_all()
    assert (record["id"], record["data"]["cause"]) == (job_id, "tree on line")


# --- cursors --------------------------------------------------------------------------------------


def head_seq(app) -> int:
    with app.app_context():
        return db.session.execute(sa.select(sa.func.max(ChangeLog.seq))).scalar_one()


def test_skipped_rows_advance_the_cursor_and_pages_stay_correct(app, client, world):
    first, second = synced(app, client, "reader", "first"), synced(app, client, "reader", "second")
    push_results(first, *[first.reading(m, 1300) for m in world.meters])
    theirs = [second.reading(m, 1310) for m in world.meters[:2]]
    push_results(second, *theirs)
    push_results(first, first.reading("M3", 99_600))  # the log ends with the sender's own row
    records, pages = pull(first, limit=1)
    assert [r["id"] for r in records] == [c["entity_id"] for c in theirs]
    assert pages == 3  # a full page says has_more; the last finds only the sender's own row
    assert Cursor.decode(first.cursor).seq == head_seq(app)  # moved past the skipped rows
    later = second.reading("M4", 1320)
    push_results(second, later)
    records, pages = pull(first, limit=1)
    assert ([r["id"] for r in records], pages) == ([later["entity_id"]], 2)


def test_snapshot_delivers_what_the_device_pushed_while_it_ran(app, client, world):
    """A snapshot interrupted by a sync's push: the readings phase may already have passed the new
    reading's id, so the log that completes the snapshot must bring it, echo or not (else the client,
    dropping what its snapshot did not contain, would lose it)."""
    reader = synced(app, client, "reader", "first")
    push_results(reader, reader.reading("M1", 1300))
    fresh = device(app, client, "reader", "fresh")
    records: list[dict] = []
    while not any(r["entity"] == "meter_reading" for r in records):  # into the readings phase
        response = fresh.client.get(
            "/api/v1/sync/pull",
            query_string={"limit": 1, **({"cursor": fresh.cursor} if fresh.cursor else {})},
            headers=fresh.headers,
        )
        body = response.get_json()
        records.extend(body["records"])
        fresh.cursor = body["cursor"]
    early = fresh.reading("M2", 1290)
    early["entity_id"] = "MR-000000000000"  # sorts before every reading the snapshot sent
    push_results(fresh, early)
    rest, _ = pull(fresh, limit=1)
    assert ("meter_reading", early["entity_id"]) in keys(rest)
    push_results(fresh, fresh.reading("M3", 99_600))
    assert fresh.pull_all() == []  # snapshot complete: back to skipping its own echo


@pytest.mark.parametrize("flag", [2, "1", True, None])
def test_malformed_catch_up_flag_is_a_validation_error(app, client, world, flag):
    reader = synced(app, client, "reader", "first")
    raw = json.loads(base64.urlsafe_b64decode(reader.cursor + "=" * (-len(reader.cursor) % 4)))
    for cursor in ({**raw, "c": flag}, {**raw, "c": 1, "p": 0, "a": ""}):
        text = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
        response = reader.client.get("/api/v1/sync/pull", query_string={"cursor": text}, headers=reader.headers)
        assert response.status_code == 422, response.get_json()
        assert "cursor" in response.get_json()["error"]["fields"]


def test_pull_without_a_device_still_sends_everything(app, client, world):
    """The service call without a device (office tools, tests) keeps the whole log."""
    reader = synced(app, client, "reader", "first")
    change = reader.reading("M1", 1300)
    push_results(reader, change)
    with app.app_context():
        user = db.session.get(User, world.users["reader"])
        page = pull_page(user, reader.cursor)
    assert [r["id"] for r in page["records"]] == [change["entity_id"]]


# --- the change feed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("causes", "expected"),
    [
        (["D-a"], "D-a"),
        (["D-a", "D-a"], "D-a"),
        (["D-a", None], None),
        ([None, "D-a"], None),
        (["D-a", "D-b"], None),
    ],
    ids=["one", "same-device-twice", "then-other-cause", "after-other-cause", "two-devices"],
)
def test_a_row_is_the_origins_own_only_if_every_cause_is(app, world, causes, expected):
    def work() -> None:
        for origin in causes:
            changefeed.emit("meter_reading", "MR-x", ["U-reader", "U-reader2"], origin=origin)
        changefeed.emit("meter_reading", "MR-y", ["U-reader"])

    with app.app_context():
        write_transaction(work)
        rows = db.session.execute(
            sa.select(ChangeLog.user_id, ChangeLog.entity_id, ChangeLog.origin_device_id).order_by(ChangeLog.seq)
        ).all()
    assert [tuple(r) for r in rows][-3:] == [
        ("U-reader", "MR-x", expected),
        ("U-reader2", "MR-x", expected),
        ("U-reader", "MR-y", None),
    ]
