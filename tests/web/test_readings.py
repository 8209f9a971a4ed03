"""Readings pages and staff API: filters, exception flags, route progress, CSV export, access."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from server.extensions import db
from server.models import Meter, MeterReading, Route, User
from server.services import apitokens
from server.services.clock import now_hlc
from tests.server.helpers import assert_error, device
from tests.server.world import CYCLE_START, LAST_READ_AT, NOW

_ids = itertools.count(1)
IN_CYCLE = NOW - dt.timedelta(hours=6)
BEFORE_CYCLE = dt.datetime.combine(CYCLE_START, dt.time(), dt.UTC) - dt.timedelta(minutes=1)


def add_reading(meter_id: str, value: int | None = 1330, **fields: Any) -> str:
    """Insert a reading as the push would have stored it (inside an app context; not committed)."""
    meter = db.session.get(Meter, meter_id)
    route = db.session.get(Route, meter.route_id) if meter.route_id else None
    reading_id = fields.pop("id", None) or f"MR-T{next(_ids):05d}"
    row = {
        "meter_id": meter_id,
        "route_id": meter.route_id,
        "reader_id": route.assigned_to if route else None,
        "value": value,
        "reading_type": "regular",
        "skip_code": None if value is not None else "locked_gate",
        "read_at": IN_CYCLE,
        "check_result": None if value is None else "in_range",
        "consumption": None if value is None else 330.0,
        "rollover": False,
        "hlc": str(now_hlc()),
        "flags": [],
    }
    row.update(fields)
    db.session.add(MeterReading(id=reading_id, **row))
    db.session.flush()
    return reading_id


def supersede(old_id: str, new_id: str) -> None:
    db.session.get(MeterReading, old_id).supersedes = None
    db.session.get(MeterReading, new_id).supersedes = old_id
    db.session.get(MeterReading, old_id).superseded_by = new_id


def issue_staff_token(app: Flask, world) -> str:
    with app.app_context():
        user = db.session.get(User, world.users["staff"])
        _, secret = apitokens.issue_token(user, "tests")
        db.session.commit()
    return secret


@pytest.fixture
def token(app: Flask, world) -> str:
    """A staff API token."""
    return issue_staff_token(app, world)


def api(client, path: str, token: str, **query: Any) -> dict[str, Any]:
    response = client.get(path, query_string=query, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()


def page_ids(client, path: str, attribute: str = "data-reading", **query: Any) -> list[str]:
    response = client.get(path, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return re.findall(rf'{attribute}="([^"]+)"', response.get_data(as_text=True))


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# --- a varied set of readings ------------------------------------------------------------------------


@pytest.fixture
def readings(app: Flask, world) -> dict[str, str]:
    """One reading of each interesting kind, named."""
    with app.app_context():
        named = {
            "plain": add_reading("M1", 1330),
            "high_verified": add_reading(
                "M2", 3000, reading_type="verified", check_result="high", consumption=2000.0, check={"entries": 2}
            ),
            "low_remark": add_reading("M4", 1010, check_result="low", consumption=10.0, comment_code="low_use_vacant"),
            "skip": add_reading("M3", None, skip_code="dog", read_at=IN_CYCLE - dt.timedelta(hours=1)),
            "rollover": add_reading("M3", 100, rollover=True, consumption=600.0),
            "trouble": add_reading("M5", 1300, trouble_code="broken_glass", read_at=NOW - dt.timedelta(days=10)),
            "estimated": add_reading("M6", 1330, reading_type="estimated", read_at=NOW - dt.timedelta(days=40)),
            "old": add_reading("M1", 1000, read_at=NOW - dt.timedelta(days=40)),
        }
        named["correction"] = add_reading("M4", 1340)
        supersede(named["low_remark"], named["correction"])
        db.session.commit()
    return named


def test_readings_list_without_filters_shows_every_reading_newest_first(client, staff, readings):
    ids = page_ids(client, "/readings")
    assert set(ids) == set(readings.values())
    with client.application.app_context():
        times = [db.session.get(MeterReading, i).read_at for i in ids]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"route_id": "R2"}, {"trouble", "estimated"}),
        ({"reader_id": "U-reader"}, {"plain", "high_verified", "low_remark", "skip", "rollover", "old", "correction"}),
        ({"meter": "A0000003"}, {"skip", "rollover"}),
        ({"meter": "A000000"}, None),  # a prefix: every meter of the world
        ({"date_from": (NOW - dt.timedelta(days=11)).date().isoformat()}, "not old/estimated"),
        (
            {
                "date_from": (NOW - dt.timedelta(days=41)).date().isoformat(),
                "date_to": (NOW - dt.timedelta(days=10)).date().isoformat(),
            },
            {"trouble", "estimated", "old"},
        ),
        ({"reading_type": "verified"}, {"high_verified"}),
        ({"reading_type": "estimated"}, {"estimated"}),
        (
            {"exceptions_only": "1"},
            {"high_verified", "low_remark", "skip", "rollover", "trouble", "estimated"},
        ),
        ({"exception": "out_of_range"}, {"high_verified", "low_remark"}),
        ({"exception": "skipped"}, {"skip"}),
        ({"exception": "estimated"}, {"estimated"}),
        ({"exception": "rollover"}, {"rollover"}),
        ({"exception": "trouble"}, {"trouble"}),
        ({"exception": "superseded"}, {"low_remark"}),
        ({"exceptions_only": "1", "current_only": "1", "route_id": "R1"}, {"high_verified", "skip", "rollover"}),
    ],
)
def test_filters_return_exactly_the_matching_readings(client, staff, token, readings, query, expected):
    if expected is None:
        expected = set(readings)
    elif expected == "not old/estimated":
        expected = set(readings) - {"old", "estimated"}
    wanted = {readings[name] for name in expected}
    assert set(page_ids(client, "/readings", **query)) == wanted
    body = api(client, "/api/v1/staff/readings", token, **query)
    assert {item["id"] for item in body["items"]} == wanted
    assert body["total"] == len(wanted)


def test_date_to_includes_the_whole_day(app, client, staff, world):
    with app.app_context():
        last_minute = add_reading("M1", read_at=dt.datetime(2024, 3, 9, 23, 59, 59, tzinfo=dt.UTC))
        add_reading("M1", read_at=dt.datetime(2024, 3, 10, 0, 0, tzinfo=dt.UTC))
        db.session.commit()
    assert page_ids(client, "/readings", date_from="2024-03-01", date_to="2024-03-09") == [last_minute]


def test_exception_tags_name_the_reason(client, staff, readings):
    page = client.get("/readings").get_data(as_text=True)
    rows = dict(re.findall(r'data-reading="([^"]+)"[^>]*>(.*?)</tr>', page, re.S))
    assert "Out of range (High), verified" in rows[readings["high_verified"]]
    assert "Out of range (Low), remark given" in rows[readings["low_remark"]]
    assert "Skipped: Dog on premises" in rows[readings["skip"]]
    assert "Trouble: Broken glass" in rows[readings["trouble"]]
    assert "Rollover" in rows[readings["rollover"]]
    assert ">Estimated<" in rows[readings["estimated"]]
    assert f'href="/readings/{readings["correction"]}"' in rows[readings["low_remark"]]
    assert "tag" not in rows[readings["plain"]].split("</td>")[-2]  # the plain reading has no exception tag


def test_exception_summary_counts_every_matching_reading(client, staff, token, readings):
    body = api(client, "/api/v1/staff/readings", token, per_page=2)
    assert len(body["items"]) == 2 and body["pages"] == 5
    assert body["summary"] == {
        "total": 9,
        "out_of_range": 2,
        "skipped": 1,
        "estimated": 1,
        "rollover": 1,
        "trouble": 1,
        "superseded": 1,
    }
    everything = api(client, "/api/v1/staff/readings", token, per_page=200)["items"]
    flags = {item["id"]: item["exceptions"] for item in everything}
    assert flags[readings["low_remark"]] == ["out_of_range", "superseded"]
    assert flags[readings["plain"]] == []


def test_readings_pushed_by_a_handheld_are_flagged(app, client, staff, token, world):
    handheld = device(app, client, "reader")
    high = handheld.reading("M1", 3000, reading_type="verified", check={"result": "high", "entries": 2})
    rollover = handheld.reading("M3", 100)
    skip = handheld.reading("M2", None, skip_code="locked_gate")
    response = handheld.push(high, rollover, skip)
    assert [r["status"] for r in response.get_json()["results"]] == ["applied"] * 3
    correction = handheld.reading("M1", 1300, supersedes=high["entity_id"])
    assert handheld.push(correction).get_json()["results"][0]["status"] == "applied"
    flags = {item["id"]: item["exceptions"] for item in api(client, "/api/v1/staff/readings", token)["items"]}
    assert flags == {
        high["entity_id"]: ["out_of_range", "superseded"],
        rollover["entity_id"]: ["rollover"],
        skip["entity_id"]: ["skipped"],
        correction["entity_id"]: [],
    }
    page = client.get(f"/readings/{high['entity_id']}").get_data(as_text=True)
    assert f'href="/readings/{correction["entity_id"]}"' in page
    assert "Out of range (High), verified" in page


def test_a_bad_filter_is_ignored_on_the_page_and_refused_by_the_api(client, staff, token, readings):
    response = client.get("/readings?date_from=yesterday&route_id=R2")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Some filters were not valid and were ignored" in page and "date_from" in page
    assert set(re.findall(r'data-reading="([^"]+)"', page)) == {readings["trouble"], readings["estimated"]}
    reversed_range = client.get("/readings?date_from=2024-05-02&date_to=2024-05-01").get_data(as_text=True)
    assert "The end date is before the start date." in reversed_range
    for query in ({"date_from": "yesterday"}, {"exception": "bogus"}, {"per_page": "0"}, {"colour": "red"}):
        error = assert_error(
            client.get("/api/v1/staff/readings", query_string=query, headers={"Authorization": f"Bearer {token}"}),
            422,
            "validation_error",
        )
        assert set(error["fields"]) == set(query)


def test_notes_are_escaped_everywhere(app, client, staff, world):
    with app.app_context():
        reading = add_reading("M1", note='<script>alert("x")</script><b onmouseover=1>')
        db.session.commit()
    for path in ("/readings", f"/readings/{reading}"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in page and "<b onmouseover" not in page
        assert "&lt;script&gt;alert(" in page


def test_reading_detail_of_an_unknown_reading_is_404(client, staff, world):
    assert client.get("/readings/MR-nope").status_code == 404


def test_list_pages_need_a_fixed_number_of_queries(app, client, staff, world):
    """No query per row: a page of 3 readings and a page of 50 cost the same number of statements."""

    @contextmanager
    def counted() -> Any:
        statements: list[str] = []

        def count(conn, cursor, statement, *args: Any) -> None:
            statements.append(statement)

        with app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            yield statements
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)

    with app.app_context():
        for _ in range(3):
            add_reading("M1", note="n")
        db.session.commit()
    with counted() as few:
        assert client.get("/readings").status_code == 200
    with app.app_context():
        for i in range(60):
            add_reading(f"M{i % 6 + 1}", None if i % 5 == 0 else 1330, read_at=IN_CYCLE - dt.timedelta(minutes=i))
        db.session.commit()
    with counted() as many:
        assert client.get("/readings").get_data(as_text=True).count("data-reading=") == 50
    assert len(many) == len(few)
    with counted() as routes:
        assert client.get("/readings/routes").status_code == 200
    assert len(routes) <= len(few)


# --- CSV ----------------------------------------------------------------------------------------


def test_readings_csv_has_the_filtered_rows_and_neutralised_formulas(app, client, staff, readings):
    with app.app_context():
        formula = add_reading("M1", note='=HYPERLINK("http://evil")', read_at=NOW - dt.timedelta(minutes=1))
        db.session.commit()
    rows = read_csv(client.get("/readings?format=csv&route_id=R1&exceptions_only=1&page=3"))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["Reading id", "Read at (UTC)", "Meter"] and "Exceptions" in header
    assert {row[0] for row in body} == {readings[n] for n in ("high_verified", "low_remark", "skip", "rollover")}
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert by_id[readings["low_remark"]]["Exceptions"] == "out_of_range;superseded"
    assert by_id[readings["low_remark"]]["Superseded by"] == readings["correction"]
    assert by_id[readings["skip"]]["Skip code"] == "dog"
    everything = read_csv(client.get("/readings?format=csv"))
    note = {row[0]: row[header.index("Note")] for row in everything[1:]}[formula]
    assert note == '\'=HYPERLINK("http://evil")'


def test_readings_csv_streams_in_chunks(app, client, staff, world):
    with app.app_context():
        rows = [
            {
                "id": f"MR-B{i:05d}",
                "meter_id": "M1",
                "route_id": "R1",
                "reader_id": "U-reader",
                "value": i,
                "reading_type": "regular",
                "read_at": NOW - dt.timedelta(minutes=i),
                "hlc": str(now_hlc()),
                "rollover": False,
                "flags": [],
            }
            for i in range(1200)
        ]
        db.session.execute(sa.insert(MeterReading), rows)
        db.session.commit()
    response = client.get("/readings?format=csv", buffered=False)
    assert response.is_streamed
    chunks = [chunk for chunk in response.response if chunk]
    response.close()
    assert len(chunks) >= 3  # 500 rows a chunk: never the whole export in one piece
    lines = list(csv.reader(io.StringIO("".join(c if isinstance(c, str) else c.decode() for c in chunks))))
    assert len(lines) == 1201
    assert [line[0] for line in lines[1:4]] == ["MR-B00000", "MR-B00001", "MR-B00002"]


# --- route progress ------------------------------------------------------------------------------


@pytest.fixture
def progress(app: Flask, world) -> None:
    """R1 (4 meters): M1 read (its out-of-range read corrected, an older read before the cycle), M2 skipped
    then read, M3 skipped, M4 only read before the cycle and estimated twice in a row. R2 (2 meters): M5
    read low, M6 nothing. R3: no cycle started, one meter with a reading."""
    with app.app_context():
        add_reading("M1", 900, read_at=BEFORE_CYCLE)
        wrong = add_reading("M1", 5000, check_result="high", reading_type="verified")
        fixed = add_reading("M1", 1330, read_at=IN_CYCLE + dt.timedelta(minutes=5))
        supersede(wrong, fixed)
        add_reading("M2", None, skip_code="dog")
        add_reading("M2", 1320, read_at=IN_CYCLE + dt.timedelta(hours=1))
        add_reading("M3", None, skip_code="locked_gate")
        add_reading("M3", None, skip_code="no_access", read_at=IN_CYCLE + dt.timedelta(hours=1))
        add_reading("M4", 1200, read_at=BEFORE_CYCLE)
        db.session.get(Meter, "M4").consecutive_estimates = 2
        db.session.get(Meter, "M3").consecutive_estimates = 1
        add_reading("M5", 1010, check_result="low", reading_type="verified")
        db.session.add(Route(id="R3", code="RT-3", name="Hillside"))
        db.session.flush()
        db.session.add(Meter(id="M7", number="A0000007", premise_id="P1", route_id="R3", route_seq=10))
        db.session.flush()
        add_reading("M7", 500, read_at=LAST_READ_AT)
        db.session.commit()


PROGRESS = {
    "R1": {"meters": 4, "read": 2, "skipped": 1, "remaining": 1, "out_of_range": 0, "estimated_consecutive": 1},
    "R2": {"meters": 2, "read": 1, "skipped": 0, "remaining": 1, "out_of_range": 1, "estimated_consecutive": 0},
    "R3": {"meters": 1, "read": 0, "skipped": 0, "remaining": 1, "out_of_range": 0, "estimated_consecutive": 0},
}


def test_route_progress_counts_meters_once_in_the_current_cycle(client, staff, token, progress):
    body = api(client, "/api/v1/staff/routes/progress", token)
    got = {item["route_id"]: {key: item[key] for key in PROGRESS["R1"]} for item in body["items"]}
    assert got == PROGRESS
    r1 = next(item for item in body["items"] if item["route_id"] == "R1")
    assert r1["reader_name"] == "Reader" and r1["cycle_start"] == CYCLE_START.isoformat()
    assert r1["percent_done"] == 75.0
    assert body["totals"] == {
        "meters": 7,
        "read": 3,
        "skipped": 1,
        "remaining": 3,
        "out_of_range": 1,
        "estimated": 0,
        "estimated_consecutive": 1,
        "percent_done": pytest.approx(100 * 4 / 7),
    }


def test_route_progress_page_shows_counts_and_links_to_the_routes_readings(client, staff, progress):
    page = client.get("/readings/routes").get_data(as_text=True)
    rows = dict(re.findall(r'data-route="([^"]+)"[^>]*>(.*?)</tr>', page, re.S))
    cells = re.findall(r'<td class="num">(?:<[^>]+>)*([\d,]+)', rows["R1"])
    assert cells == ["4", "2", "1", "1", "0", "1"]
    assert f"/readings?route_id=R1&amp;date_from={CYCLE_START.isoformat()}&amp;current_only=1" in rows["R1"]
    assert "exception=skipped" in rows["R1"] and "no cycle started" in rows["R3"]
    assert 'class="read" x="0" y="0" width="50.00"' in rows["R1"]
    assert "All 3 routes" in page


def test_route_progress_filter_by_reader_and_csv(client, staff, token, progress):
    body = api(client, "/api/v1/staff/routes/progress", token, reader_id="U-reader2")
    assert [item["route_id"] for item in body["items"]] == ["R2"] and body["totals"]["meters"] == 2
    rows = read_csv(client.get("/readings/routes?format=csv"))
    header = rows[0]
    assert header[:3] == ["Route", "Name", "Reader"]
    table = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert set(table) == {"RT-1", "RT-2", "RT-3"}
    assert [table["RT-1"][k] for k in ("Meters", "Read", "Skipped", "Remaining", "Out of range")] == [
        "4",
        "2",
        "1",
        "1",
        "0",
    ]


# --- access ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/staff/readings", "/api/v1/staff/routes/progress"])
def test_staff_api_needs_a_staff_token_or_session(app, client, world, token, path):
    assert_error(client.get(path), 401, "unauthorized")
    handheld = device(app, client, "reader")
    assert_error(client.get(path, headers=handheld.headers), 401, "unauthorized")
    assert_error(client.get(path, headers={"Authorization": "Bearer fsk.not-a-token"}), 401, "unauthorized")
    assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    from tests.web.conftest import sign_in

    sign_in(client, "staff")
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/readings", "/readings/routes", "/readings?format=csv"])
def test_pages_need_a_signed_in_staff_member(client, world, path):
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


LIVE_LISTS = ["/readings?route_id=R1", "/readings/routes?reader_id=U-reader", "/customers?q=Customer"]


@pytest.mark.parametrize("path", LIVE_LISTS)
def test_lists_update_live_through_their_fragment(client, staff, readings, path):
    """The page polls its own URL plus fragment=1 (static/live.js), which returns only the table."""
    page = client.get(path).get_data(as_text=True)
    live_url = re.search(r'data-live-url="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "fragment=1" in live_url and path.split("?")[1] in live_url
    assert "live.js" in page
    fragment = client.get(live_url)
    assert fragment.status_code == 200 and fragment.headers["Cache-Control"] == "no-store"
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and "<table" in body and "data-live-key=" in body
