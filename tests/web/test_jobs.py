"""The jobs pages and the staff jobs API: filters, CSV, the job's record, office actions that reach the
handheld, create-job validation, access and escaping. Each runs on SQLite and (with
FIELDSYNC_TEST_PG_URL) PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.database import write_transaction
from server.extensions import db
from server.models import Customer, Job, JobEvent, User
from server.services import apitokens, office
from sync_protocol import HLC
from tests.server.helpers import assert_error, device, table_dump
from tests.server.world import Handheld

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
OLD = NOW - dt.timedelta(days=40)
ROW_KEY = re.compile(r'data-live-key="([^"]+)"')


# --- helpers (also used by test_conflicts.py and test_live.py) ----------------------------------------


def run(app: Flask, work: Callable[[], Any]) -> Any:
    """Run `work` in one write transaction of the app (as a service would)."""
    with app.app_context():
        return write_transaction(work)


def job(app: Flask, job_id: str) -> Job:
    with app.app_context():
        found = db.session.get(Job, job_id)
        db.session.expunge_all()
        return found


def more_jobs(app: Flask) -> dict[str, str]:
    """Beside the world's three assigned jobs: an old, low-priority, unassigned job of customer 4 (whose
    summary looks like a spreadsheet formula) and an emergency for customer 5 (social value)."""

    def work() -> dict[str, str]:
        db.session.get(Customer, "C5").segment = "social"
        old = office.create_job(
            customer_id="C4",
            premise_id="P4",
            job_type="meter_fault",
            summary='=HYPERLINK("http://x") meter box',
            priority=4,
            created_at=OLD,
            job_id="J-old",
            number="J-OLD",
        )
        urgent = office.create_job(
            customer_id="C5",
            premise_id="P5",
            job_type="line_repair",
            summary="Line down over the road",
            priority=1,
            assigned_to="U-lineman2",
            job_id="J-urgent",
            number="J-URGENT",
        )
        return {"old": old.id, "urgent": urgent.id}

    return run(app, work)


def listed(client: FlaskClient, query: dict | str = "") -> list[str]:
    """Job ids the list page shows for this query string, in order (read from the live fragment)."""
    if isinstance(query, dict):
        query = "&".join(f"{k}={v}" for k, v in query.items())
    response = client.get(f"/jobs?{query}&fragment=1")
    assert response.status_code == 200
    return ROW_KEY.findall(response.get_data(as_text=True))


def api_listed(client: FlaskClient, query: str = "", headers: dict | None = None) -> list[str]:
    response = client.get(f"/api/v1/staff/jobs?{query}", headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def pulled(handheld: Handheld, entity: str, entity_id: str) -> dict[str, Any] | None:
    """The last record for this entity in the handheld's next pull (None when it brought none)."""
    found = None
    for record in handheld.pull_all():
        if record["entity"] == entity and record["id"] == entity_id:
            found = record
    return found


def synced(app: Flask, client: FlaskClient, username: str) -> Handheld:
    """An enrolled handheld that has taken its first snapshot."""
    handheld = device(app, client, username)
    handheld.pull_all()
    return handheld


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def status_at(handheld: Handheld, job_id: str, status: str, at: dt.datetime, round_: int = 1) -> dict:
    change = handheld.status(job_id, status, round_)
    change["data"]["recorded_at"] = iso(at)
    return change


def shown(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


# --- the list -----------------------------------------------------------------------------------------


def test_each_filter_selects_the_right_jobs(app, client, world, staff):
    ids = more_jobs(app)
    everything = {"J-outage", "J-repair", "J-other", ids["old"], ids["urgent"]}
    assert set(listed(client)) == everything
    assert listed(client, "status=new") == [ids["old"]]
    assert set(listed(client, "status=new&status=assigned")) == everything
    assert set(listed(client, "status=new,assigned")) == everything
    assert set(listed(client, "assignee=U-lineman")) == {"J-outage", "J-repair"}
    assert listed(client, "assignee=none") == [ids["old"]]
    assert listed(client, "customer=410002") == ["J-repair"]
    assert listed(client, "customer=C2") == ["J-repair"]
    assert listed(client, "priority=4") == [ids["old"]]
    assert set(listed(client, "priority=1&priority=4")) == {ids["old"], ids["urgent"]}
    day = OLD.date()
    assert listed(client, f"created_from={day}&created_to={day}") == [ids["old"]]
    assert ids["old"] not in listed(client, f"created_from={day + dt.timedelta(days=1)}")
    assert listed(client, "segment=safety") == ["J-outage"]
    assert listed(client, "segment=social") == [ids["urgent"]]
    assert listed(client, "vip=1") == ["J-outage"]
    assert set(listed(client, "segment=standard")) == {"J-repair", "J-other", ids["old"]}


def test_search_matches_number_summary_customer_name_and_account(app, client, world, staff):
    ids = more_jobs(app)
    assert listed(client, "q=j-oth") == ["J-other"]  # number, any case
    assert listed(client, "q=road") == [ids["urgent"]]  # summary
    assert listed(client, "q=customer 4") == [ids["old"]]  # customer name
    assert listed(client, "q=410003") == ["J-other"]  # account number
    assert listed(client, "q=%25") == []  # a LIKE wildcard is searched for literally
    assert listed(client, "q=repair&assignee=U-lineman2") == []  # filters combine


def test_sorting_by_created_and_priority(app, client, world, staff):
    ids = more_jobs(app)
    newest_first = listed(client)
    assert newest_first[0] == ids["urgent"] and newest_first[-1] == ids["old"]
    assert listed(client, "sort=created")[0] == ids["old"]
    by_priority = listed(client, "sort=priority")
    assert by_priority[0] == ids["urgent"] and by_priority[-1] == ids["old"]
    assert listed(client, "sort=-priority")[0] == ids["old"]


def test_pages_keep_the_filters_in_their_links(app, client, world, staff):
    more_jobs(app)
    first = listed(client, "status=assigned&per_page=2")
    second = listed(client, "status=assigned&per_page=2&page=2")
    assert len(first) == 2 and len(second) == 2 and not set(first) & set(second)
    page = client.get("/jobs?status=assigned&per_page=2&vip=&q=").get_data(as_text=True)
    next_link = re.search(r'href="([^"]+)" rel="next"', page).group(1).replace("&amp;", "&")
    assert "status=assigned" in next_link and "per_page=2" in next_link and "page=2" in next_link
    assert "fragment" not in next_link
    assert re.search(r'<option value="assigned" selected>', page)  # the form shows the filter it applied
    live = re.search(r'data-live-url="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "status=assigned" in live and "fragment=1" in live


def test_the_list_marks_vip_and_safety_customers(app, client, world, staff):
    page = client.get("/jobs?customer=410001").get_data(as_text=True)
    row = page[page.index('data-live-key="J-outage"') :]
    assert 'class="tag vip"' in row[:2000] and 'class="tag safety"' in row[:2000]
    other = client.get("/jobs?customer=410003").get_data(as_text=True)
    assert 'class="tag vip"' not in other and 'class="tag safety"' not in other


def test_a_bad_filter_is_ignored_with_a_message_on_the_page_and_refused_by_the_api(app, client, world, staff):
    response = client.get("/jobs?priority=9&status=assigned")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "were not valid" in page and set(ROW_KEY.findall(page)) == {"J-outage", "J-repair", "J-other"}
    error = assert_error(client.get("/api/v1/staff/jobs?priority=9"), 422, "validation_error")
    assert "priority.0" in error["fields"]
    assert_error(
        client.get("/api/v1/staff/jobs?created_from=2026-02-01&created_to=2026-01-01"), 422, "validation_error"
    )
    assert_error(client.get("/api/v1/staff/jobs?colour=red"), 422, "validation_error")


def test_the_api_lists_the_same_jobs_as_the_page(app, client, world, staff):
    more_jobs(app)
    for query in ("", "status=new", "assignee=U-lineman&sort=priority", "q=customer", "vip=true", "segment=social"):
        assert api_listed(client, query) == listed(client, query), query
    body = client.get("/api/v1/staff/jobs?customer=410001").get_json()
    assert body["total"] == 1 and body["page"] == 1
    (item,) = body["items"]
    assert item["customer"] == {
        "id": "C1",
        "account_no": "410001",
        "name": "Customer 1",
        "phone": None,
        "segment": "safety",
        "vip": True,
    }
    assert item["assignee"]["username"] == "lineman" and item["status"] == "assigned"


def test_csv_streams_exactly_the_filtered_jobs_with_formulas_neutralised(app, client, world, staff):
    ids = more_jobs(app)
    response = client.get("/jobs?assignee=none&format=csv&page=3")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["Job number", "Created (UTC)", "Status"]
    assert [row[0] for row in rows[1:]] == ["J-OLD"]  # the filter, not the page
    (row,) = rows[1:]
    assert row[6].startswith("'=HYPERLINK")  # summary
    assert row[2] == "New" and row[4] == "Low"
    everything = list(csv.reader(io.StringIO(client.get("/jobs?format=csv").get_data(as_text=True))))
    assert sorted(row[0] for row in everything[1:]) == ["J-OLD", "J-OTHER", "J-OUTAGE", "J-REPAIR", "J-URGENT"]
    assert ids


# --- one job ------------------------------------------------------------------------------------------


def test_detail_shows_device_and_server_times_flags_and_time_on_site(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    arrived = NOW - dt.timedelta(hours=3)
    changes = [
        status_at(lineman, "J-repair", "en_route", arrived - dt.timedelta(minutes=20)),
        status_at(lineman, "J-repair", "on_site", arrived),
        status_at(lineman, "J-repair", "on_hold", arrived + dt.timedelta(minutes=30)),
        status_at(lineman, "J-repair", "on_site", arrived + dt.timedelta(minutes=40)),
        status_at(lineman, "J-repair", "completed", arrived + dt.timedelta(minutes=100)),
    ]
    skewed = lineman.note("J-repair", "clock is a day fast")
    skewed["hlc"] = str(HLC(int(NOW.timestamp() * 1000) + 86_400_000, 0, lineman.clock.node))
    assert lineman.push(*changes, skewed).status_code == 200
    page = client.get("/jobs/J-repair").get_data(as_text=True)
    with app.app_context():
        event = db.session.get(JobEvent, changes[1]["entity_id"])
        recorded, received = event.recorded_at, event.received_at
    assert received - recorded > dt.timedelta(hours=2)
    row = page[page.index(f'id="event-{event.id}"') :]
    row = row[: row.index("</tr>")]
    assert shown(recorded) in row and shown(received) in row  # device time and server receive time
    assert "handheld" in row  # the device's name
    assert "1 h 30 min" in page  # 100 min on site less 10 min on hold
    skew_row = page[page.index(f'id="event-{skewed["entity_id"]}"') :]
    assert skew_row.startswith(f'id="event-{skewed["entity_id"]}" class="exception"')
    assert "flag-clock_skew" in skew_row[: skew_row.index("</tr>")]
    assert "Dog" in page  # the premise's hazard
    assert "Customer 2" in page and "410002" in page
    detail = client.get("/api/v1/staff/jobs/J-repair").get_json()
    assert detail["time_on_site_ms"] == 90 * 60 * 1000
    api_event = next(e for e in detail["timeline"] if e["id"] == event.id)
    assert api_event["recorded_at"] == iso(recorded).replace("Z", ".000Z")
    assert api_event["received_at"] != api_event["recorded_at"] and api_event["device_name"] == "handheld"
    assert detail["premise"]["hazards"] == ["dog"]


def test_detail_highlights_work_after_cancel(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    run(app, lambda: office.cancel_job(db.session.get(Job, "J-outage"), actor_id="U-staff", reason="duplicate"))
    change = lineman.status("J-outage", "on_site")
    lineman.push(change)
    page = client.get("/jobs/J-outage").get_data(as_text=True)
    row = page[page.index(f'id="event-{change["entity_id"]}"') :]
    assert row.startswith(f'id="event-{change["entity_id"]}" class="bad"')
    assert "flag-work_after_cancel" in row[: row.index("</tr>")]
    assert 'id="conflict-' in page  # the conflict about this job, on its page


def test_unknown_job_is_404_on_the_page_and_the_api(app, client, world, staff):
    assert client.get("/jobs/J-nope").status_code == 404
    assert_error(client.get("/api/v1/staff/jobs/J-nope"), 404, "not_found")


def test_field_notes_are_escaped(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    lineman.push(lineman.note("J-outage", "<script>alert('x')</script> & <b>bold</b>"))
    run(app, lambda: office.edit_job(db.session.get(Job, "J-outage"), {"summary": "<img src=x onerror=alert(1)>"}))
    for url in ("/jobs/J-outage", "/jobs", "/jobs?fragment=1"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold" not in page, url
    page = client.get("/jobs/J-outage").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


# --- office actions -----------------------------------------------------------------------------------


def test_reassign_moves_the_job_between_handhelds(app, client, world, staff):
    lineman, lineman2 = synced(app, client, "lineman"), synced(app, client, "lineman2")
    response = client.post("/jobs/J-outage/assign", data={"assigned_to": "U-lineman2", "csrf_token": staff})
    assert response.status_code == 302 and response.headers["Location"].endswith("/jobs/J-outage")
    assert "reassigned to Lineman2" in client.get("/jobs/J-outage").get_data(as_text=True)
    assert job(app, "J-outage").assigned_to == "U-lineman2"
    arrived = pulled(lineman2, "job", "J-outage")
    assert arrived["op"] == "upsert" and arrived["data"]["assigned_to"] == "U-lineman2"
    assert pulled(lineman, "job", "J-outage")["op"] == "remove"


def test_assign_a_new_job(app, client, world, staff):
    ids = more_jobs(app)
    lineman = synced(app, client, "lineman")
    client.post(f"/jobs/{ids['old']}/assign", data={"assigned_to": "U-lineman", "csrf_token": staff})
    assert (job(app, ids["old"]).status, job(app, ids["old"]).assigned_to) == ("assigned", "U-lineman")
    assert pulled(lineman, "job", ids["old"])["data"]["status"] == "assigned"


def test_cancel_with_a_reason_reaches_the_crew(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    response = client.post("/jobs/J-outage/cancel", data={"reason": "Customer called: power back", "csrf_token": staff})
    assert response.status_code == 302
    assert job(app, "J-outage").status == "cancelled"
    records = lineman.pull_all()
    (job_record,) = [r for r in records if r["entity"] == "job" and r["id"] == "J-outage"]
    assert job_record["data"]["status"] == "cancelled"
    notes = [r["data"]["text"] for r in records if r["entity"] == "job_event" and r["data"]["kind"] == "note"]
    assert notes == ["Customer called: power back"]


def test_return_to_the_field_opens_a_new_round_on_the_handheld(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    lineman.push(*(lineman.status("J-repair", s) for s in ("en_route", "on_site", "completed")))
    assert job(app, "J-repair").status == "completed"
    lineman.pull_all()
    response = client.post(
        "/jobs/J-repair/return",
        data={"assigned_to": "U-lineman", "note": "Photo of the seal missing", "csrf_token": staff},
    )
    assert response.status_code == 302
    stored = job(app, "J-repair")
    assert (stored.status, stored.round) == ("assigned", 2)
    records = lineman.pull_all()
    (job_record,) = [r for r in records if r["entity"] == "job"]
    assert (job_record["data"]["status"], job_record["data"]["round"]) == ("assigned", 2)
    assert any(r["entity"] == "job_event" and r["data"].get("text") == "Photo of the seal missing" for r in records)
    page = client.get("/jobs/J-repair").get_data(as_text=True)
    time_on_site = page[page.index('id="time-on-site"') :]
    assert "not arrived yet" in time_on_site[: time_on_site.index("</dd>")]  # round 2 has its own clock


def test_close_removes_the_job_from_the_handheld(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    lineman.push(*(lineman.status("J-repair", s) for s in ("on_site", "completed")))
    lineman.pull_all()
    assert client.post("/jobs/J-repair/close", data={"csrf_token": staff}).status_code == 302
    assert job(app, "J-repair").status == "closed"
    assert pulled(lineman, "job", "J-repair")["op"] == "remove"


def test_office_note_and_edit_reach_the_handheld(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    client.post("/jobs/J-outage/note", data={"text": "Bring the long ladder", "csrf_token": staff})
    records = lineman.pull_all()
    assert [r["data"]["text"] for r in records if r["entity"] == "job_event"] == ["Bring the long ladder"]
    response = client.post(
        "/jobs/J-outage/edit",
        data={"priority": "1", "summary": "outage job", "scheduled_start": "2030-01-02T08:30", "csrf_token": staff},
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    record = pulled(lineman, "job", "J-outage")
    assert record["data"]["priority"] == 1 and record["data"]["scheduled_start"] == "2030-01-02T08:30:00.000Z"


@pytest.mark.parametrize(
    ("path", "data", "status", "message"),
    [
        ("/jobs/J-outage/close", {}, 409, "Not possible: the job is now Assigned"),  # not from assigned
        ("/jobs/J-outage/return", {"assigned_to": "U-lineman", "note": "x"}, 409, "Not possible"),
        ("/jobs/J-outage/assign", {"assigned_to": "U-reader"}, 422, "Choose an active field user"),
        ("/jobs/J-outage/assign", {"assigned_to": "U-staff"}, 422, "Choose an active field user"),
        ("/jobs/J-outage/assign", {"assigned_to": "U-lineman"}, 422, "already assigned to Lineman"),
        ("/jobs/J-outage/cancel", {"reason": "  "}, 422, "Please fill in this field"),
        ("/jobs/J-outage/note", {"text": ""}, 422, "Please fill in this field"),
        ("/jobs/J-outage/note", {"text": "x" * 4001}, 422, "At most 4000 characters"),
        ("/jobs/J-outage/edit", {"priority": "7", "summary": "s"}, 422, "Choose a priority"),
    ],
)
def test_an_invalid_action_says_why_and_changes_nothing(app, client, world, staff, path, data, status, message):
    if "U-reader" in data.values():  # a meter reader is a field user: refuse an inactive one instead
        run(app, lambda: setattr(db.session.get(User, "U-reader"), "active", False))
    before = table_dump(app, exclude=("rate_limit_windows", "api_tokens"))
    response = client.post(path, data={**data, "csrf_token": staff})
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert message in page and 'role="alert"' in page
    assert table_dump(app, exclude=("rate_limit_windows", "api_tokens")) == before


def test_cancelled_job_offers_return_and_close_only(app, client, world, staff):
    run(app, lambda: office.cancel_job(db.session.get(Job, "J-other"), actor_id="U-staff"))
    page = client.get("/jobs/J-other").get_data(as_text=True)
    assert "/jobs/J-other/return" in page and "/jobs/J-other/close" in page
    assert "/jobs/J-other/cancel" not in page and "/jobs/J-other/assign" not in page
    assert client.post("/jobs/J-other/cancel", data={"reason": "again", "csrf_token": staff}).status_code == 409


def test_actions_without_the_csrf_token_are_refused_and_change_nothing(app, client, world, staff):
    before = table_dump(app, exclude=("rate_limit_windows", "api_tokens"))
    for path, data in (
        ("/jobs/J-outage/cancel", {"reason": "no token"}),
        ("/jobs/J-outage/assign", {"assigned_to": "U-lineman2"}),
        ("/jobs/J-outage/note", {"text": "no token"}),
        ("/jobs/new", {"customer_id": "C1", "premise_id": "P1", "job_type": "outage", "priority": "3", "summary": "x"}),
    ):
        assert client.post(path, data=data).status_code == 400, path
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    assert table_dump(app, exclude=("rate_limit_windows", "api_tokens")) == before


# --- create ---------------------------------------------------------------------------------------------


def test_create_job_finds_the_customer_and_reaches_the_assignee(app, client, world, staff):
    lineman2 = synced(app, client, "lineman2")
    search = client.get("/jobs/new?q=Customer").get_data(as_text=True)
    assert "/jobs/new?customer_id=C1" in search and "/jobs/new?customer_id=C6" in search
    form = client.get("/jobs/new?q=410002").get_data(as_text=True)  # an exact account number selects it
    assert 'name="customer_id" value="C2"' in form and "2 Renmin Rd" in form
    response = client.post(
        "/jobs/new",
        data={
            "customer_id": "C2",
            "premise_id": "P2",
            "job_type": "meter_fault",
            "priority": "2",
            "summary": "Meter display blank",
            "scheduled_start": "2030-05-01T09:00",
            "scheduled_end": "2030-05-01T11:00",
            "requires_signature": "1",
            "assigned_to": "U-lineman2",
            "csrf_token": staff,
        },
    )
    assert response.status_code == 302
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    created = job(app, job_id)
    assert (created.customer_id, created.premise_id, created.job_type, created.priority) == (
        "C2",
        "P2",
        "meter_fault",
        2,
    )
    assert created.requires_signature and created.scheduled_start == dt.datetime(2030, 5, 1, 9, tzinfo=dt.UTC)
    assert (created.status, created.assigned_to) == ("assigned", "U-lineman2")
    assert "created" in client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert pulled(lineman2, "job", job_id)["data"]["summary"] == "Meter display blank"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"premise_id": "P3"}, "premise_id", "Choose one of this customer"),  # another customer's premise
        ({"job_type": "picnic"}, "job_type", "Choose a type"),
        ({"priority": "0"}, "priority", "Choose a priority"),
        ({"summary": "   "}, "summary", "Describe the work"),
        ({"scheduled_start": "tomorrow"}, "scheduled_start", "Not a date and time"),
        ({"scheduled_start": "2030-05-02T09:00", "scheduled_end": "2030-05-01T09:00"}, "scheduled_end", "before"),
        ({"assigned_to": "U-staff"}, "assigned_to", "Choose an active field user"),
        ({"customer_id": "C-nobody"}, "customer_id", "Choose a customer"),
    ],
)
def test_create_job_shows_errors_next_to_fields_and_saves_nothing(app, client, world, staff, changes, field, message):
    data = {"customer_id": "C2", "premise_id": "P2", "job_type": "outage", "priority": "3", "summary": "Lights out"}
    before = table_dump(app, exclude=("rate_limit_windows", "api_tokens"))
    response = client.post("/jobs/new", data={**data, **changes, "csrf_token": staff})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(rf'<span class="field-error" id="{field}-error">([^<]*)</span>', page)
    assert error and message in error.group(1)
    if field not in ("customer_id", "summary"):
        assert ">Lights out</textarea>" in page  # what was typed is kept
    assert table_dump(app, exclude=("rate_limit_windows", "api_tokens")) == before


# --- access -------------------------------------------------------------------------------------------


PAGES = ("/jobs", "/jobs/J-outage", "/jobs/new", "/jobs?format=csv", "/jobs?fragment=1", "/conflicts")


def test_anonymous_visitors_are_sent_to_sign_in(app, client, world):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_a_field_user_cannot_open_the_pages(app, client, world):
    from tests.web.conftest import csrf_token

    token = csrf_token(client)
    refused = client.post("/login", data={"username": "lineman", "password": "", "csrf_token": token})
    assert refused.status_code == 401
    for path in PAGES:
        assert client.get(path).status_code == 302, path
    # and a session that somehow belongs to a field user is refused by the pages themselves
    from flask import session
    from flask_login import login_user

    with app.test_request_context(environ_base=client.environ_base):  # same address and agent as the client
        login_user(db.session.get(User, "U-lineman"))
        forged = dict(session)
    with client.session_transaction() as stored:
        stored.update(forged)
    for path in PAGES:
        assert client.get(path).status_code == 403, path


def test_staff_api_takes_an_api_token_and_refuses_a_device_token(app, client, world):
    with app.app_context():
        _, token = apitokens.issue_token(db.session.get(User, "U-staff"), "integration")
        db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert set(api_listed(client, "", headers)) == {"J-outage", "J-repair", "J-other"}
    assert client.get("/api/v1/staff/jobs/J-outage", headers=headers).status_code == 200
    handheld = device(app, client, "lineman")
    for path in ("/api/v1/staff/jobs", "/api/v1/staff/jobs/J-outage", "/api/v1/staff/conflicts"):
        assert_error(client.get(path, headers={"Authorization": f"Bearer {handheld.token}"}), 401, "unauthorized")
        assert_error(client.get(path), 401, "unauthorized")
        assert_error(client.get(path, headers={"Authorization": "Bearer fsk.unknown"}), 401, "unauthorized")


def test_every_staff_route_is_documented(app, client, world, staff):
    spec = client.get("/api/v1/openapi.json").get_json()
    jobs = spec["paths"]["/api/v1/staff/jobs"]["get"]
    names = {parameter["name"] for parameter in jobs["parameters"]}
    assert {"q", "status", "assignee", "customer", "priority", "created_from", "created_to", "segment", "vip"} <= names
    assert "/api/v1/staff/jobs/{job_id}" in spec["paths"] and "/api/v1/staff/conflicts" in spec["paths"]


def test_pages_render_in_chinese(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    lineman.push(lineman.status("J-outage", "on_site"), lineman.note("J-outage", "到达现场"))
    for path in ("/jobs", "/jobs/J-outage", "/jobs/new?customer_id=C1", "/conflicts", "/jobs?priority=9"):
        response = client.get(path, headers={"Accept-Language": "zh-CN"})
        assert response.status_code == 200, path
        assert 'lang="zh-CN"' in response.get_data(as_text=True), path
    assert "到达现场" in client.get("/jobs/J-outage").get_data(as_text=True)
