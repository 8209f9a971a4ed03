"""The conflicts page and API: both values with their HLC times, whose change, filters, CSV, and the review
that resolves a conflict and takes it off the crew's handheld."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import sqlalchemy as sa

from server.extensions import db
from server.models import ConflictRecord, Job, JobEvent
from server.services import office
from sync_protocol import HLC
from tests.server.helpers import assert_error, table_dump
from tests.web.test_jobs import pulled, run, shown, synced

ROW_KEY = re.compile(r'data-live-key="conflict-(\d+)"')


def make_conflicts(app, client):
    """Two conflicts of the lineman's handheld: field work on the cancelled J-outage, and a resolution
    note on J-repair that lost to the office's newer one (the crew's value looks like a formula)."""
    lineman = synced(app, client, "lineman")
    run(app, lambda: office.cancel_job(db.session.get(Job, "J-outage"), actor_id="U-staff", reason="duplicate"))
    on_site = lineman.status("J-outage", "on_site")
    assert lineman.push(on_site).get_json()["results"][0]["status"] == "conflict"
    run(app, lambda: office.edit_job(db.session.get(Job, "J-repair"), {"resolution_note": "Office: replaced fuse"}))
    with app.app_context():
        office_stamp = HLC.parse(db.session.get(Job, "J-repair").field_hlc["resolution_note"])
    edit = lineman.change("job", "J-repair", {"resolution_note": "=1+1 crew note"}, base={"resolution_note": None})
    edit["hlc"] = str(HLC(office_stamp.wall_ms - 5000, 0, lineman.clock.node))  # older: loses
    assert lineman.push(edit).get_json()["results"][0]["status"] == "conflict"
    with app.app_context():
        rows = db.session.execute(sa.select(ConflictRecord).order_by(ConflictRecord.id)).scalars().all()
        ids = {row.kind: row.id for row in rows}
        db.session.rollback()
    lineman.pull_all()
    return lineman, ids, on_site, edit


def listed(client, query: str = "") -> list[int]:
    response = client.get(f"/conflicts?{query}&fragment=1")
    assert response.status_code == 200
    return [int(i) for i in ROW_KEY.findall(response.get_data(as_text=True))]


def test_list_shows_both_values_their_times_the_job_and_whose_change(app, client, world, staff):
    _, ids, _, _ = make_conflicts(app, client)
    page = client.get("/conflicts").get_data(as_text=True)
    row = page[page.index(f'id="conflict-{ids["concurrent_edit"]}"') :]
    row = row[: row.index("</tr>")]
    assert "Concurrent edit" in row and "Resolution note" in row
    assert "Office: replaced fuse" in row and "=1+1 crew note" in row
    winner, loser = row.index("Office: replaced fuse"), row.index("=1+1 crew note")
    assert winner < loser  # kept first, then the value that lost
    with app.app_context():
        record = db.session.get(ConflictRecord, ids["concurrent_edit"])
        loser_at = HLC.parse(record.loser_hlc).wall_ms
        db.session.rollback()
    assert shown(dt.datetime.fromtimestamp(loser_at / 1000, dt.UTC)) in row  # the HLC's time
    assert "/jobs/J-repair" in row and "J-REPAIR" in row
    assert "Lineman" in row and "handheld" in row  # the user and the device
    cancel_row = page[page.index(f'id="conflict-{ids["work_after_cancel"]}"') :]
    cancel_row = cancel_row[: cancel_row.index("</tr>")]
    assert "Field work after cancellation" in cancel_row and "Cancelled" in cancel_row and "On site" in cancel_row


def test_filters_open_reviewed_kind_and_user(app, client, world, staff):
    _, ids, _, _ = make_conflicts(app, client)
    both = sorted(ids.values())
    assert sorted(listed(client)) == both  # open by default
    assert listed(client, "kind=work_after_cancel") == [ids["work_after_cancel"]]
    assert sorted(listed(client, "user=U-lineman")) == both
    assert listed(client, "user=U-lineman2") == []
    assert listed(client, "job=J-repair") == [ids["concurrent_edit"]]
    run(app, lambda: _review(ids["work_after_cancel"]))
    assert listed(client) == [ids["concurrent_edit"]]
    assert listed(client, "state=reviewed") == [ids["work_after_cancel"]]
    assert sorted(listed(client, "state=all")) == both
    assert listed(client, "state=reviewed&kind=concurrent_edit") == []
    assert listed(client, "state=nonsense") == [ids["concurrent_edit"]]  # ignored: open ones
    assert "were not valid" in client.get("/conflicts?state=nonsense").get_data(as_text=True)


def _review(conflict_id: int) -> None:
    from server.services.conflicts import mark_reviewed

    mark_reviewed(conflict_id, user_id="U-staff", note=None)


def test_review_resolves_the_conflict_and_the_handheld_drops_it(app, client, world, staff):
    _, ids, _, _ = make_conflicts(app, client)
    target = ids["concurrent_edit"]
    response = client.post(
        f"/conflicts/{target}/review",
        data={
            "note": "Office value confirmed with the customer",
            "next": "/conflicts?kind=concurrent_edit",
            "csrf_token": staff,
        },
    )
    assert response.status_code == 302 and response.headers["Location"] == "/conflicts?kind=concurrent_edit"
    with app.app_context():
        record = db.session.get(ConflictRecord, target)
        assert record.resolved_at is not None and record.resolved_by == "U-staff"
        notes = db.session.execute(sa.select(JobEvent.text).where(JobEvent.job_id == "J-repair")).scalars().all()
        assert f"[conflict {target}] Office value confirmed with the customer" in notes
        assert db.session.get(Job, "J-repair").resolution_note == "Office: replaced fuse"  # the winner stays
        db.session.rollback()
    page = client.get("/conflicts?state=reviewed").get_data(as_text=True)
    assert "Office value confirmed with the customer" in page and "Staff" in page
    api = client.get("/api/v1/staff/conflicts?state=reviewed").get_json()["items"]
    assert [(c["id"], c["review_note"], c["resolved_by"]["username"]) for c in api] == [
        (target, "Office value confirmed with the customer", "staff")
    ]


def test_the_handheld_receives_the_removal_on_its_next_pull(app, client, world, staff):
    lineman, ids, _, _ = make_conflicts(app, client)
    target = ids["work_after_cancel"]
    client.post(f"/conflicts/{target}/review", data={"csrf_token": staff})
    record = pulled(lineman, "conflict", str(target))
    assert record is not None and record["op"] == "remove"
    assert pulled(lineman, "conflict", str(ids["concurrent_edit"])) is None  # the other stays, unchanged


def test_a_second_review_or_a_missing_token_changes_nothing(app, client, world, staff):
    _, ids, _, _ = make_conflicts(app, client)
    target = ids["concurrent_edit"]
    before = table_dump(app, exclude=("rate_limit_windows",))
    assert client.post(f"/conflicts/{target}/review", data={"note": "x"}).status_code == 400
    assert client.post("/conflicts/999/review", data={"csrf_token": staff}).status_code == 302
    assert table_dump(app, exclude=("rate_limit_windows",)) == before
    client.post(f"/conflicts/{target}/review", data={"csrf_token": staff})
    after_first = table_dump(app, exclude=("rate_limit_windows",))
    response = client.post(f"/conflicts/{target}/review", data={"note": "again", "csrf_token": staff})
    assert response.status_code == 302
    assert "already reviewed" in client.get("/conflicts").get_data(as_text=True)
    assert table_dump(app, exclude=("rate_limit_windows",)) == after_first


def test_csv_lists_the_filtered_conflicts_with_formulas_neutralised(app, client, world, staff):
    _, ids, _, _ = make_conflicts(app, client)
    response = client.get("/conflicts?kind=concurrent_edit&format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv" and response.is_streamed
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["Conflict", "Recorded (UTC)", "Kind"]
    (row,) = rows[1:]
    assert row[0] == str(ids["concurrent_edit"]) and row[3] == "J-REPAIR"
    assert row[5] == "Office: replaced fuse" and row[7] == "'=1+1 crew note"
    assert row[9] == "lineman" and row[10] == "handheld" and row[11] == "Open"
    everything = list(csv.reader(io.StringIO(client.get("/conflicts?state=all&format=csv").get_data(as_text=True))))
    assert len(everything) == 3


def test_api_lists_conflicts_with_filters(app, client, world, staff):
    _, ids, _, _ = make_conflicts(app, client)
    body = client.get("/api/v1/staff/conflicts?kind=work_after_cancel").get_json()
    (item,) = body["items"]
    assert (item["id"], item["winner"], item["loser"], item["job_number"]) == (
        ids["work_after_cancel"],
        "cancelled",
        "on_site",
        "J-OUTAGE",
    )
    assert item["user"]["username"] == "lineman" and item["device_name"] == "handheld"
    assert item["winner_at"].endswith("Z") and item["resolved_at"] is None
    assert_error(client.get("/api/v1/staff/conflicts?kind=other"), 422, "validation_error")
    detail = client.get("/api/v1/staff/jobs/J-outage").get_json()
    assert [c["id"] for c in detail["conflicts"]] == [ids["work_after_cancel"]]


def test_conflict_values_are_escaped(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    run(app, lambda: office.edit_job(db.session.get(Job, "J-repair"), {"cause": "storm"}))
    with app.app_context():
        stamp = HLC.parse(db.session.get(Job, "J-repair").field_hlc["cause"])
    edit = lineman.change("job", "J-repair", {"cause": "<script>alert(1)</script>"}, base={"cause": None})
    edit["hlc"] = str(HLC(stamp.wall_ms - 5000, 0, lineman.clock.node))
    lineman.push(edit)
    page = client.get("/conflicts").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
