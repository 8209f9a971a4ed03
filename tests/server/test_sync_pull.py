"""Pulling: snapshots in bounded pages, the change log after them, dynamic scope, cursors that cannot be
served, and gzip both ways (DESIGN.md invariants 6, 8 and 9)."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import ChangeLog, Job, JobEvent, Meter, Route
from server.services import office, scope, state
from sync_protocol import load_record
from sync_protocol.schemas import PullResponseSchema
from tests.server.helpers import assert_error, compact_json, device, gzipped, table_dump

PULL = "/api/v1/sync/pull"


def pull_page(handheld, cursor: str | None = None, limit: int | None = None, **headers):
    query = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v}
    return handheld.client.get(PULL, query_string=query, headers={**handheld.headers, **headers})


def pages(handheld, limit: int | None = None) -> list[dict]:
    """Every page of a pull from the handheld's cursor to the end (advancing it)."""
    result = []
    while True:
        response = pull_page(handheld, handheld.cursor, limit)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        PullResponseSchema().load(body)
        result.append(body)
        handheld.cursor = body["cursor"]
        if not body["has_more"]:
            return result


def keys(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["entity"], r["id"]) for r in records]


def by_entity(records: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for record in records:
        found.setdefault(record["entity"], set()).add(record["id"])
    return found


def event_ids(app, *job_ids: str) -> set[str]:
    with app.app_context():
        return set(db.session.execute(sa.select(JobEvent.id).where(JobEvent.job_id.in_(job_ids))).scalars())


def office_do(app, action, model, key: str, *args, **kwargs):
    with app.app_context():
        result = action(db.session.get(model, key), *args, **kwargs)
        db.session.commit()
        return result


# --- snapshots ------------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["lineman", "reader"])
def test_first_sync_snapshot_returns_the_whole_scope_in_small_pages(app, client, world, username):
    handheld = device(app, client, username)
    if username == "reader":
        reading = handheld.reading("M2", 1280)
        assert handheld.push(reading).get_json()["results"][0]["status"] == "applied"
        handheld.cursor = None
    snapshot = pages(handheld, limit=2)
    assert len(snapshot) >= 5
    for page in snapshot[:-1]:
        assert page["has_more"] is True
        assert 1 <= len(page["records"]) <= 2
    assert len(snapshot[-1]["records"]) <= 2
    records = [record for page in snapshot for record in page["records"]]
    for record in records:
        load_record(record)  # every record has its entity's wire shape
        assert record["op"] == "upsert"
    assert len(set(keys(records))) == len(records), "a record came twice in one snapshot"
    if username == "lineman":
        jobs = {world.jobs["outage"], world.jobs["repair"]}
        expected = {
            "customer": {"C1", "C2"},
            "premise": {"P1", "P2"},
            "job": jobs,
            "job_event": event_ids(app, *jobs),
        }
        assert len(expected["job_event"]) == 4  # new + assigned, per job
    else:
        expected = {
            "route": {"R1"},
            "customer": {"C1", "C2", "C3", "C4"},
            "premise": {"P1", "P2", "P3", "P4"},
            "meter": set(world.meters),
            "meter_reading": {reading["entity_id"]},
        }
    assert by_entity(records) == expected
    # reference data comes before the records that point at it
    order = [scope.SNAPSHOT_ORDER.index(entity) for entity, _ in keys(records)]
    assert order == sorted(order)


def _add_meters(app, count: int) -> None:
    with app.app_context():
        for i in range(count):
            db.session.add(
                Meter(
                    id=f"MX{i:03d}",
                    number=f"X{i:07d}",
                    premise_id="P1",
                    route_id="R1",
                    route_seq=1000 + i,
                    meter_class="residential",
                    dials=5,
                    multiplier=1.0,
                    avg_daily=8.5,
                    last_value=4000 + i,
                    last_read_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
                    last_read_type="regular",
                )
            )
        db.session.commit()


def test_pages_are_bounded_by_bytes(app, client, world):
    budget = 2000
    app.config["PULL_PAGE_BYTES"] = budget
    _add_meters(app, 40)
    reader = device(app, client, "reader")
    snapshot = pages(reader)
    assert len(snapshot) >= 5
    for page in snapshot:
        records = page["records"]
        if not records:
            assert page is snapshot[-1]
            continue
        size = len(compact_json(records))
        assert size <= budget + len(compact_json(records[-1])), (size, len(records))
        if page["has_more"]:
            # the page stopped because the budget was reached, not earlier
            assert size >= budget, size
            assert len(compact_json(records[:-1])) < budget
    records = [r for page in snapshot for r in page["records"]]
    assert by_entity(records)["meter"] == set(world.meters) | {f"MX{i:03d}" for i in range(40)}


def test_after_the_snapshot_only_new_changes_are_pulled(app, client, world):
    reader = device(app, client, "reader")
    reader2 = device(app, client, "reader2", "other")
    reader.pull_all()
    reader2.pull_all()
    assert reader.pull_all() == []
    spare = device(app, client, "reader", "spare")  # the same reader's second handheld
    spare.pull_all()
    change = reader.reading("M1", 1300)
    assert reader.push(change).get_json()["results"][0]["status"] == "applied"
    assert reader.pull_all() == []  # its own change stored as sent: the push answer said all (no echo)
    (record,) = spare.pull_all()
    assert (record["entity"], record["id"], record["op"]) == ("meter_reading", change["entity_id"], "upsert")
    assert record["data"]["value"] == 1300
    assert spare.pull_all() == []
    assert reader2.pull_all() == []


def test_second_device_of_the_user_receives_the_firsts_changes(app, client, world):
    first = device(app, client, "lineman", "first")
    second = device(app, client, "lineman", "second")
    second.pull_all()
    change = first.note(world.jobs["outage"], "pole is cracked")
    first.push(change)
    assert keys(second.pull_all()) == [("job_event", change["entity_id"])]


# --- scope changes --------------------------------------------------------------------------------


def test_reassigned_job_leaves_the_old_device_and_reaches_the_new_one_whole(app, client, world):
    lineman = device(app, client, "lineman")
    lineman2 = device(app, client, "lineman2", "other")
    lineman.pull_all()
    lineman2.pull_all()
    job_id = world.jobs["outage"]
    office_do(app, office.assign_job, Job, job_id, world.users["lineman2"])

    old = lineman.pull_all()
    assert [(r["entity"], r["op"]) for r in old if r["id"] == job_id] == [("job", "remove")]
    assert not [r for r in old if r["op"] == "upsert" and r["data"].get("job_id") == job_id]

    new = lineman2.pull_all()
    assert all(r["op"] == "upsert" for r in new)
    found = by_entity(new)
    assert found["job"] == {job_id}
    assert found["job_event"] == event_ids(app, job_id)
    assert found["premise"] == {"P1"} and found["customer"] == {"C1"}
    job = next(r for r in new if r["entity"] == "job")
    assert job["data"]["assigned_to"] == world.users["lineman2"]
    # a fresh snapshot agrees
    lineman.cursor = None
    assert ("job", job_id) not in keys(lineman.pull_all())


def test_closed_job_is_removed_from_the_device(app, client, world):
    lineman = device(app, client, "lineman")
    job_id = world.jobs["outage"]
    results = lineman.push(
        lineman.status(job_id, "en_route"), lineman.status(job_id, "on_site"), lineman.status(job_id, "completed")
    ).get_json()["results"]
    assert [r["status"] for r in results] == ["applied"] * 3
    lineman.pull_all()
    office_do(app, office.close_job, Job, job_id)
    records = lineman.pull_all()
    assert [(r["entity"], r["id"], r["op"]) for r in records if r["id"] == job_id] == [("job", job_id, "remove")]
    assert not [r for r in records if r["op"] == "upsert" and r["data"].get("job_id") == job_id]
    lineman.cursor = None
    assert ("job", job_id) not in keys(lineman.pull_all())


def test_reassigned_route_leaves_the_old_reader_and_reaches_the_new_one_whole(app, client, world):
    reader = device(app, client, "reader")
    reader2 = device(app, client, "reader2", "other")
    reading = reader.reading("M1", 1300)
    reader.push(reading)
    reader.pull_all()
    reader2.pull_all()
    office_do(app, office.assign_route, Route, "R1", world.users["reader2"])

    old = reader.pull_all()
    assert [(r["entity"], r["id"], r["op"]) for r in old] == [("route", "R1", "remove")]

    found = by_entity(reader2.pull_all())
    assert found == {
        "route": {"R1"},
        "meter": set(world.meters),
        "premise": {"P1", "P2", "P3", "P4"},
        "customer": {"C1", "C2", "C3", "C4"},
        "meter_reading": {reading["entity_id"]},
    }
    reader.cursor = None
    assert by_entity(reader.pull_all()) == {}


# --- cursors --------------------------------------------------------------------------------------


def _encode(raw: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def _decode(cursor: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


MALFORMED_CURSORS = {
    "not-base64": lambda raw: "!!!*",
    "not-json": lambda raw: base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "json-list": lambda raw: _encode([raw["e"], raw["s"]]),
    "missing-seq": lambda raw: _encode({"e": raw["e"], "u": raw["u"]}),
    "seq-not-a-number": lambda raw: _encode({**raw, "s": "ten"}),
    "seq-too-large": lambda raw: _encode({**raw, "s": 10**30}),
    "phase-not-a-number": lambda raw: _encode({**raw, "p": "x", "a": ""}),
    "phase-out-of-range": lambda raw: _encode({**raw, "p": 99, "a": ""}),
    "phase-fractional": lambda raw: _encode({**raw, "p": 1.5, "a": ""}),
    "epoch-not-a-string": lambda raw: _encode({**raw, "e": 7}),
    "conflict-position-not-a-number": lambda raw: _encode(
        {**raw, "p": scope.SNAPSHOT_ORDER.index("conflict"), "a": "abc"}
    ),
}


@pytest.mark.parametrize("make", MALFORMED_CURSORS.values(), ids=MALFORMED_CURSORS.keys())
def test_malformed_cursor_is_a_validation_error(app, client, world, make):
    reader = device(app, client, "reader")
    reader.pull_all()
    cursor = make(_decode(reader.cursor))  # the right epoch, so only the malformation can refuse it
    before = table_dump(app)
    error = assert_error(pull_page(reader, cursor), 422, "validation_error")
    assert "cursor" in error["fields"]
    assert table_dump(app) == before


@pytest.mark.parametrize("phase", ["snapshot", "log"])
def test_cursor_from_another_epoch_requires_resync(app, client, world, phase):
    reader = device(app, client, "reader")
    if phase == "snapshot":
        cursor = pull_page(reader, limit=2).get_json()["cursor"]
    else:
        reader.pull_all()
        cursor = reader.cursor
    with app.app_context():
        state.rotate_epoch()
        db.session.commit()
    assert_error(pull_page(reader, cursor), 409, "resync_required")
    reader.cursor = None
    assert reader.pull_all()  # a fresh snapshot works in the new epoch


def test_compaction_makes_old_cursors_resync_while_fresh_ones_work(app, client, world):
    reader = device(app, client, "reader")
    late = device(app, client, "reader", "late")
    reader.pull_all()
    stale = reader.cursor
    for value in (1300, 1310):
        assert reader.push(reader.reading("M1", value)).get_json()["results"][0]["status"] == "applied"
    late.pull_all()
    fresh = late.cursor
    assert _decode(fresh)["s"] > _decode(stale)["s"]
    with app.app_context():
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        db.session.execute(sa.update(ChangeLog).values(created_at=old))
        deleted = state.compact(0)
        db.session.commit()
        remaining = db.session.execute(sa.select(sa.func.count()).select_from(ChangeLog)).scalar_one()
    assert deleted > 0 and remaining == 1  # the newest row stays, so current cursors stay servable
    assert_error(pull_page(reader, stale), 409, "resync_required")
    response = pull_page(late, fresh)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["records"] == []
    # and a change after compaction still reaches the fresh cursor
    change = reader.reading("M2", 1290)
    reader.push(change)
    assert keys(late.pull_all()) == [("meter_reading", change["entity_id"])]


# --- gzip -----------------------------------------------------------------------------------------


def test_large_pull_is_gzip_encoded_when_the_device_accepts_it(app, client, world):
    reader = device(app, client, "reader")
    response = pull_page(reader, **{"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    body = json.loads(gzip.decompress(response.data))
    assert ("route", "R1") in keys(body["records"])
    plain = pull_page(reader)
    assert "Content-Encoding" not in plain.headers
    assert len(response.data) < len(plain.data)


def test_small_response_is_not_gzip_encoded(app, client, world):
    reader = device(app, client, "reader")
    reader.pull_all()
    response = pull_page(reader, reader.cursor, **{"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.get_json()["records"] == []


def test_gzip_encoded_push_body_is_accepted(app, client, world):
    reader = device(app, client, "reader")
    change = reader.reading("M1", 1300)
    body = {"protocol": 1, "batch_id": "gz", "changes": [change]}
    response = client.post(
        "/api/v1/sync/push",
        data=gzipped(body),
        headers={**reader.headers, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"][0]["status"] == "applied"
    assert keys(reader.pull_all())[-1] == ("meter_reading", change["entity_id"])
