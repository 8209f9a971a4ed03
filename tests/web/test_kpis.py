"""KPIs on a constructed week with known answers (SQLite and PostgreSQL): response and completion times,
first-time-fix rate, jobs per worker with time on site, readings per route and reader, complaints, the
trend; the dashboard page (/kpis) and the staff API (/api/v1/staff/kpis); periods and percentiles."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from flask import Flask

from server.extensions import db
from server.models import Job, JobEvent, MeterReading, User
from server.services import apitokens, kpis, office
from server.services.clock import now_hlc
from server.services.ids import new_id
from server.services.jobstate import load_state, store_state
from server.services.kpis import Distribution, percentile
from server.services.periods import Grouping, Period, Preset, bucket_count, buckets, preset_period
from tests.server.helpers import assert_error, device

WEEK = Period(dt.date(2025, 3, 3), dt.date(2025, 3, 9))  # Monday to Sunday, ISO week 10
T0 = dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
KPI_API = "/api/v1/staff/kpis"
WEEK_QUERY = "preset=custom&start=2025-03-03&end=2025-03-09"


def mark(job: Job, status: str, at: dt.datetime, round_: int | None = None, source: str = "field") -> None:
    """A status event recorded at `at` (the crew's device time), merged into the job as a push would."""
    db.session.add(
        JobEvent(
            id=new_id("E"),
            job_id=job.id,
            kind="status",
            status=status,
            round=round_ or job.round,
            recorded_at=at,
            hlc=str(now_hlc()),
            source=source,
            author_id=job.assigned_to if source == "field" else None,
            received_at=at,
            flags=[],
        )
    )
    db.session.flush()
    store_state(job, load_state(job))


def job(name: str, created: dt.datetime, job_type: str = "outage", priority: int = 3, who: str = "lineman") -> Job:
    return office.create_job(
        customer_id="C2",
        premise_id="P2",
        job_type=job_type,
        summary=name,
        priority=priority,
        assigned_to=f"U-{who}",
        created_at=created,
        job_id=f"J-{name}",
        number=f"N-{name}",
    )


def reading(meter: str, route: str, reader: str, at: dt.datetime, value: int | None, **extra: Any) -> MeterReading:
    row = MeterReading(
        id=f"MR-{uuid.uuid4().hex[:12]}",
        meter_id=meter,
        route_id=route,
        reader_id=f"U-{reader}",
        value=value,
        reading_type=extra.pop("reading_type", "regular"),
        read_at=at,
        check_result=extra.pop("check_result", "in_range" if value is not None else None),
        consumption=None if value is None else 100.0,
        hlc=str(now_hlc()),
        received_at=at,
        flags=[],
        **extra,
    )
    db.session.add(row)
    return row


@pytest.fixture
def week(app: Flask, world) -> None:
    """Jobs and readings of ISO week 10 of 2025 (the world's own jobs are created today: outside it).

    job  type        prio  who       created   arrival   outcome (time)                      counts
    J1   outage      1     lineman   T0        +30 min   completed +90 min (60 on site)      FTF
    J2   line_repair 3     lineman   T0+1d     +2 h      hold 30 min, completed +4 h         FTF, 90 min on site
    J3   meter_fault 3     lineman2  T0+1d     +1 h      cannot complete +90 min             finished, not FTF
    J4   outage      2     lineman2  T0+2d     +3 h      completed +4 h, returned, round 2 on site +6 h,
                                                         completed +8 h (120 min on site)    not FTF
    J5   complaint   3     lineman   T0+2d     +24 h     completed +26 h                     FTF, resolved 26 h
    J6   complaint   4     lineman2  T0+3d     +2 h      cannot complete +3 h, closed +48 h  resolved 48 h
    J7   complaint   3     lineman   T0+4d     -         -                                   open, awaiting
    J8   outage      1     lineman   T0-25h    +25 h     -                                   arrival in week
    J9   outage      2     lineman   T0+5d     +1 h      cancelled +2 h, crew completes +3 h never finished
    J10  outage      3     lineman   after     after                                         not counted
    J12  outage      3     lineman2  T0+4d     -         cancelled +1 h, crew completes +2 h,
                                                         closed +3 h                         never finished
    J11  outage      3     lineman2  T0+5d     after     completed after the week            not counted
    """
    with app.app_context():
        j1 = job("J1", T0, priority=1)
        mark(j1, "en_route", T0 + 10 * MIN)
        mark(j1, "on_site", T0 + 30 * MIN)
        mark(j1, "completed", T0 + 90 * MIN)

        j2 = job("J2", T0 + DAY, "line_repair")
        mark(j2, "on_site", T0 + DAY + 2 * HOUR)
        mark(j2, "on_hold", T0 + DAY + 150 * MIN)
        mark(j2, "on_site", T0 + DAY + 3 * HOUR)
        mark(j2, "completed", T0 + DAY + 4 * HOUR)

        j3 = job("J3", T0 + DAY, "meter_fault", who="lineman2")
        mark(j3, "on_site", T0 + DAY + HOUR)
        mark(j3, "cannot_complete", T0 + DAY + 90 * MIN)

        j4 = job("J4", T0 + 2 * DAY, priority=2, who="lineman2")
        mark(j4, "on_site", T0 + 2 * DAY + 3 * HOUR)
        mark(j4, "completed", T0 + 2 * DAY + 4 * HOUR)
        mark(j4, "assigned", T0 + 2 * DAY + 5 * HOUR, round_=2, source="office")  # returned for correction
        mark(j4, "on_site", T0 + 2 * DAY + 6 * HOUR)
        mark(j4, "completed", T0 + 2 * DAY + 8 * HOUR)
        assert (j4.status, j4.round) == ("completed", 2)

        j5 = job("J5", T0 + 2 * DAY, "complaint")
        mark(j5, "on_site", T0 + 3 * DAY)
        mark(j5, "completed", T0 + 3 * DAY + 2 * HOUR)

        j6 = job("J6", T0 + 3 * DAY, "complaint", priority=4, who="lineman2")
        mark(j6, "on_site", T0 + 3 * DAY + 2 * HOUR)
        mark(j6, "cannot_complete", T0 + 3 * DAY + 3 * HOUR)
        mark(j6, "closed", T0 + 5 * DAY, source="office")

        job("J7", T0 + 4 * DAY, "complaint")

        j8 = job("J8", T0 - 25 * HOUR, priority=1)
        mark(j8, "on_site", T0)

        j9 = job("J9", T0 + 5 * DAY, priority=2)
        mark(j9, "on_site", T0 + 5 * DAY + HOUR)
        mark(j9, "cancelled", T0 + 5 * DAY + 2 * HOUR, source="office")
        mark(j9, "completed", T0 + 5 * DAY + 3 * HOUR)  # work after the cancellation
        assert j9.status == "cancelled"

        j12 = job("J12", T0 + 4 * DAY, who="lineman2")
        mark(j12, "cancelled", T0 + 4 * DAY + HOUR, source="office")
        mark(j12, "completed", T0 + 4 * DAY + 2 * HOUR)  # the crew had not heard: work in a cancelled round
        mark(j12, "closed", T0 + 4 * DAY + 3 * HOUR, source="office")
        assert j12.status == "closed"

        j10 = job("J10", T0 + 7 * DAY)
        mark(j10, "on_site", T0 + 7 * DAY + HOUR)

        j11 = job("J11", T0 + 5 * DAY, who="lineman2")
        mark(j11, "on_site", T0 + 8 * DAY)
        mark(j11, "completed", T0 + 8 * DAY + HOUR)

        # readings: R1 (M1-M4) by reader, R2 (M5, M6) by reader2
        monday, tuesday = T0 + HOUR, T0 + DAY + HOUR
        wrong = reading("M1", "R1", "reader", monday, 1100)
        fixed = reading("M1", "R1", "reader", monday + MIN, 1090, supersedes=wrong.id)
        wrong.superseded_by = fixed.id
        reading("M2", "R1", "reader", monday, 5000, check_result="high")
        reading("M3", "R1", "reader", tuesday, None, skip_code="dog")
        reading("M4", "R1", "reader", tuesday, 1300, reading_type="estimated")
        reading("M4", "R1", "reader", T0 - DAY, 1200)  # the Sunday before
        reading("M5", "R2", "reader2", tuesday, 1001, check_result="low")
        reading("M6", "R2", "reader2", T0 + 6 * DAY + 15 * HOUR, None, skip_code="no_access")  # Sunday 23:00
        db.session.commit()


def report(app: Flask, grouping: Grouping = Grouping.DAY) -> kpis.KpiReport:
    with app.app_context():
        return kpis.build_report(WEEK, grouping)


# response times in minutes: J1 30, J3 60, J9 60, J2 120, J6 120, J4 180, J5 1440, J8 1500
RESPONSES = [30, 60, 60, 120, 120, 180, 1440, 1500]
# completion times in minutes: J1 90, J2 240, J4 480, J5 1560
COMPLETIONS = [90, 240, 480, 1560]


def test_response_time_runs_from_creation_to_first_arrival(app, week):
    r = report(app)
    assert r.response.count == 8
    assert r.response.median == 120 * 60
    assert r.response.p90 == pytest.approx((1440 + 0.3 * 60) * 60)  # rank 6.3 of 0..7
    by_priority = {p: d for p, d in r.response_by_priority}
    assert by_priority[1] == Distribution(2, (30 + 1500) / 2 * 60, pytest.approx((30 + 0.9 * 1470) * 60))
    assert by_priority[2].count == 2 and by_priority[2].median == (180 + 60) / 2 * 60  # J4, J9
    assert r.awaiting_arrival == 1  # J7


def test_completion_time_counts_the_standing_completion(app, week):
    r = report(app)
    assert r.completion == Distribution(4, (240 + 480) / 2 * 60, pytest.approx((480 + 0.7 * 1080) * 60))


def test_first_time_fix_rate_counts_finished_jobs(app, week):
    r = report(app)
    # finished: J1, J2, J5 (fixed first time), J3, J6 (cannot complete), J4 (second round); J9 cancelled
    assert (r.first_time_fix.part, r.first_time_fix.whole) == (3, 6)
    assert r.first_time_fix.value == 0.5


def test_jobs_per_worker_with_first_time_fix_and_time_on_site(app, week):
    workers = {w.user_id: w for w in report(app).workers}
    assert set(workers) == {"U-lineman", "U-lineman2"}
    lineman, lineman2 = workers["U-lineman"], workers["U-lineman2"]
    assert lineman.completed == 3 and (lineman.first_time_fix.part, lineman.first_time_fix.whole) == (3, 3)
    assert lineman.time_on_site == Distribution(3, 90 * 60, pytest.approx((90 + 0.8 * 30) * 60))  # 60, 90, 120
    assert lineman2.completed == 1 and (lineman2.first_time_fix.part, lineman2.first_time_fix.whole) == (0, 3)
    assert lineman2.time_on_site == Distribution(1, 120 * 60, 120 * 60)  # J4's second round
    assert [w.user_id for w in report(app).workers] == ["U-lineman", "U-lineman2"]  # most completed first


def test_complaints_received_resolved_and_open(app, week):
    c = report(app).complaints
    assert (c.received, c.resolved, c.still_open) == (3, 2, 1)
    assert c.resolution == Distribution(2, (26 + 48) / 2 * 3600, pytest.approx((26 + 0.9 * 22) * 3600))


def test_readings_per_route_and_reader(app, week):
    r = report(app)
    routes = {row.key: (row.done, row.skipped, row.out_of_range, row.estimated) for row in r.routes}
    assert routes == {"R1": (3, 1, 1, 1), "R2": (1, 1, 1, 0)}
    readers = {row.key: (row.done, row.skipped, row.out_of_range, row.estimated) for row in r.readers}
    assert readers == {"U-reader": (3, 1, 1, 1), "U-reader2": (1, 1, 1, 0)}
    assert (r.readings.done, r.readings.skipped, r.readings.out_of_range, r.readings.estimated) == (4, 2, 2, 1)
    r1 = next(row for row in r.routes if row.key == "R1")
    assert r1.skip_rate == 0.25 and r1.out_of_range_rate == pytest.approx(1 / 3) and r1.label == "RT-1 Riverside"


def test_trend_by_day_and_by_week(app, week):
    daily = report(app, Grouping.DAY).trend
    assert [p.label for p in daily] == [f"2025-03-0{d}" for d in range(3, 10)]
    monday = daily[0]
    assert monday.response.count == 2 and monday.response.median == (30 + 1500) / 2 * 60  # J1, J8
    assert [p.completed for p in daily] == [1, 1, 1, 1, 0, 0, 0]  # J1, J2, J4, J5
    assert [p.complaints_received for p in daily] == [0, 0, 1, 1, 1, 0, 0]
    assert [p.complaints_resolved for p in daily] == [0, 0, 0, 1, 0, 1, 0]
    assert [(p.readings_done, p.readings_skipped) for p in daily] == [(2, 0), (2, 1), (0, 0), (0, 0), (0, 0), (0, 0),
                                                                      (0, 1)]  # fmt: skip
    assert daily[4].response.count == 0 and daily[4].response.median is None
    weekly = report(app, Grouping.WEEK).trend
    assert [(p.label, p.response.count, p.completed, p.first_time_fix.part) for p in weekly] == [("2025-W10", 8, 4, 3)]


def test_an_empty_period_has_no_numbers_but_every_lineman(app, week):
    with app.app_context():
        r = kpis.build_report(Period(dt.date(2030, 1, 1), dt.date(2030, 1, 7)), Grouping.DAY)
    assert r.response == Distribution(0, None, None) and r.first_time_fix.value is None
    assert {w.user_id: w.completed for w in r.workers} == {"U-lineman": 0, "U-lineman2": 0}
    assert len(r.trend) == 7 and all(p.response.median is None for p in r.trend)


# --- the page --------------------------------------------------------------------------------------------


def test_kpi_page_needs_a_signed_in_staff_member(client, world):
    response = client.get("/kpis")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_kpi_page_shows_the_week(client, staff, week):
    response = client.get(f"/kpis?{WEEK_QUERY}&group=day")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "2 h 00 min" in page  # median response time
    assert "6 h 00 min" in page  # median completion time
    assert "50.0 %" in page  # first-time-fix rate
    assert page.count('role="img"') == 3  # response trend, jobs per worker, readings per route
    assert '<title id="chart-1-title">Response time, creation to arrival on site</title>' in page
    assert re.search(r"<title>Lineman: 3 jobs</title>", page)  # a bar's tooltip
    assert "RT-1 Riverside" in page and "Reader2" in page
    assert "<script" not in page.split("<main>")[1]


def test_kpi_page_presets_and_invalid_ranges(client, staff, week):
    assert client.get("/kpis?preset=7d").status_code == 200
    page = client.get("/kpis?preset=quarter&group=month").get_data(as_text=True)
    assert 'aria-current="true"' in page
    page = client.get("/kpis?preset=custom&start=2025-03-09&end=2025-03-01").get_data(as_text=True)
    assert 'id="end-error"' in page and "replaced by their defaults" in page
    page = client.get("/kpis?preset=custom&start=2020-01-01&end=2025-03-01&group=day").get_data(as_text=True)
    assert 'id="group-error"' in page  # 1887 days are too many points


# --- the staff API -------------------------------------------------------------------------------------


@pytest.fixture
def token(app: Flask, world) -> str:
    with app.app_context():
        _row, secret = apitokens.issue_token(db.session.get(User, "U-staff"), "kpi tests")
        db.session.commit()
    return secret


def test_kpi_api_refuses_missing_and_device_tokens(app, client, world):
    assert_error(client.get(KPI_API), 401, "unauthorized")
    handheld = device(app, client, "lineman")
    assert_error(client.get(KPI_API, headers={"Authorization": f"Bearer {handheld.token}"}), 401, "unauthorized")


def test_kpi_api_returns_the_same_numbers(client, token, week):
    body = client.get(f"{KPI_API}?{WEEK_QUERY}&group=week", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert body["period"] == {"start": "2025-03-03", "end": "2025-03-09"} and body["grouping"] == "week"
    assert body["response"] == {"count": 8, "median_s": 7200.0, "p90_s": pytest.approx(87480.0)}
    assert body["completion"]["median_s"] == 21600.0
    assert body["first_time_fix"] == {"part": 3, "whole": 6, "rate": 0.5}
    assert body["awaiting_arrival"] == 1
    assert body["complaints"]["received"] == 3 and body["complaints"]["resolution"]["median_s"] == 37 * 3600
    assert [(w["user_id"], w["completed"]) for w in body["workers"]] == [("U-lineman", 3), ("U-lineman2", 1)]
    assert {r["key"]: r["done"] for r in body["routes"]} == {"R1": 3, "R2": 1}
    assert body["readings"]["skipped"] == 2
    assert [p["label"] for p in body["trend"]] == ["2025-W10"]
    assert {p["priority"]: p["count"] for p in body["response_by_priority"]} == {1: 2, 2: 2, 3: 3, 4: 1}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("preset=custom", "start"),
        ("preset=custom&start=2025-03-01", "end"),
        ("preset=custom&start=2025-03-09&end=2025-03-01", "end"),
        ("preset=decade", "preset"),
        ("group=hour", "group"),
        ("preset=custom&start=2020-01-01&end=2025-01-01&group=day", "group"),
        ("start=2025-13-01&end=2025-12-01", "start"),
    ],
)
def test_kpi_api_refuses_invalid_periods(client, token, world, query, field):
    response = client.get(f"{KPI_API}?{query}", headers={"Authorization": f"Bearer {token}"})
    assert field in assert_error(response, 422, "validation_error")["fields"]


def test_kpi_api_defaults_to_the_last_30_days(client, token, world):
    body = client.get(KPI_API, headers={"Authorization": f"Bearer {token}"}).get_json()
    today = dt.datetime.now(dt.UTC).date()
    assert body["period"] == {"start": (today - dt.timedelta(days=29)).isoformat(), "end": today.isoformat()}
    assert body["grouping"] == "day" and len(body["trend"]) == 30


# --- periods and percentiles ------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0], 0.9) == pytest.approx(91.0)
    assert Distribution.of([5.0, 1.0, 3.0]) == Distribution(3, 3.0, pytest.approx(4.6))


@pytest.mark.parametrize(
    ("preset", "today", "expected"),
    [
        ("7d", dt.date(2025, 3, 9), (dt.date(2025, 3, 3), dt.date(2025, 3, 9))),
        ("30d", dt.date(2025, 3, 30), (dt.date(2025, 3, 1), dt.date(2025, 3, 30))),
        ("quarter", dt.date(2025, 5, 20), (dt.date(2025, 4, 1), dt.date(2025, 5, 20))),
        ("last_quarter", dt.date(2025, 1, 15), (dt.date(2024, 10, 1), dt.date(2024, 12, 31))),
        ("12m", dt.date(2024, 2, 29), (dt.date(2023, 3, 1), dt.date(2024, 2, 29))),
        ("12m", dt.date(2025, 3, 31), (dt.date(2024, 4, 1), dt.date(2025, 3, 31))),
    ],
)
def test_presets(preset, today, expected):
    period = preset_period(Preset(preset), today)
    assert (period.start, period.end) == expected


def test_buckets_cover_the_period_by_day_week_and_month():
    period = Period(dt.date(2025, 1, 30), dt.date(2025, 3, 2))
    assert len(list(buckets(period, Grouping.DAY))) == bucket_count(period, Grouping.DAY) == 32
    weeks = list(buckets(period, Grouping.WEEK))
    assert weeks[0] == dt.date(2025, 1, 27) and weeks[-1] == dt.date(2025, 2, 24)
    assert len(weeks) == bucket_count(period, Grouping.WEEK) == 5
    assert list(buckets(period, Grouping.MONTH)) == [dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)]
    assert bucket_count(period, Grouping.MONTH) == 3
    assert period.contains(dt.datetime(2025, 3, 2, 23, 59, tzinfo=dt.UTC))
    assert not period.contains(dt.datetime(2025, 3, 3, 0, 0, tzinfo=dt.UTC))
