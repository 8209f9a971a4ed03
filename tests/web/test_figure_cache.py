"""Period figures kept per data version (services/periods.py `cached_figures`): a page or API call made
after new readings or jobs arrive shows them, whether they came through a push, the office or were
loaded directly; unchanged data is served from the cache. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

from flask import Flask

from server.extensions import db
from server.models import Customer, Job, MeterReading
from server.services import analysis, kpis, office, readinglist
from server.services.clock import now_hlc
from server.services.joblist import JobFilter, job_count
from server.services.periods import (
    FIGURES_KEY,
    FigureCache,
    Grouping,
    Period,
    cached_figures,
    data_version,
    today_utc,
)
from server.services.readinglist import ReadingFilter, RouteFilter
from tests.server.helpers import device
from tests.server.world import NOW

TODAY = Period(today_utc() - dt.timedelta(days=40), today_utc())


def _volume(app: Flask, customer_id: str) -> float:
    with app.app_context():
        row = analysis.customer_class(customer_id, TODAY)
        assert row is not None
        return row.volume


def _direct_reading(meter_id: str, consumption: float) -> None:
    """A reading loaded without the sync path (no change-log row), received now."""
    db.session.add(
        MeterReading(
            id=f"MR-{uuid.uuid4().hex[:12]}",
            meter_id=meter_id,
            value=2000,
            reading_type="regular",
            read_at=NOW,
            consumption=consumption,
            hlc=str(now_hlc()),
            received_at=dt.datetime.now(dt.UTC),
            flags=[],
        )
    )


def test_the_cache_serves_unchanged_data_and_recomputes_after_a_change(app: Flask, world) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    with app.app_context():
        assert cached_figures(("test", 1), compute) == 1
        assert cached_figures(("test", 1), compute) == 1  # same data: not computed again
        assert cached_figures(("test", 2), compute) == 2  # another key
        before = data_version()
        _direct_reading("M1", 5.0)
        db.session.commit()
        assert data_version() != before
        assert cached_figures(("test", 1), compute) == 3


def test_abc_class_follows_a_pushed_reading(app: Flask, client, world) -> None:
    assert _volume(app, "C1") == 0.0
    reader = device(app, client, "reader")
    response = reader.push(reader.reading("M1", 1300))  # last read 1000: 300 consumed
    assert response.status_code == 200 and response.get_json()["results"][0]["status"] == "applied"
    assert _volume(app, "C1") == 300.0


def test_abc_class_follows_a_correction(app: Flask, client, world) -> None:
    reader = device(app, client, "reader")
    first = reader.reading("M1", 1300)
    reader.push(first)
    assert _volume(app, "C1") == 300.0
    correction = reader.reading("M1", 1100, supersedes=first["entity_id"], reading_type="re_read")
    assert reader.push(correction).get_json()["results"][0]["status"] == "applied"
    assert _volume(app, "C1") == 100.0


def test_abc_page_and_customer_page_show_a_reading_loaded_directly(app: Flask, client, staff) -> None:
    page = f"/analysis?start={TODAY.start}&end={TODAY.end}"
    assert "1,234" not in client.get(page).get_data(as_text=True)
    assert "abc-C" in client.get("/customers/C2").get_data(as_text=True)  # nobody consumed: all C
    with app.app_context():
        _direct_reading("M2", 1234.0)
        db.session.commit()
    assert "1,234" in client.get(page).get_data(as_text=True)
    assert "abc-A" in client.get("/customers/C2").get_data(as_text=True)  # the only consuming customer
    assert _volume(app, "C2") == 1234.0


def test_reading_summary_and_route_progress_follow_pushed_readings(app: Flask, client, world) -> None:
    def figures() -> tuple[int, int]:
        with app.app_context():
            summary = readinglist.reading_summary(ReadingFilter())
            _page, total = readinglist.route_progress_page(RouteFilter())
            return summary["total"], total.read

    assert figures() == (0, 0)
    reader = device(app, client, "reader")
    reader.push(reader.reading("M1", 1300), reader.reading("M2", 1200))
    assert figures() == (2, 2)


def test_kpis_follow_job_events_from_the_field(app: Flask, client, world) -> None:
    def arrivals() -> int:
        with app.app_context():
            return kpis.build_report(TODAY, Grouping.DAY).response.count

    assert arrivals() == 0
    lineman = device(app, client, "lineman")
    job = world.jobs["outage"]
    results = lineman.push(lineman.status(job, "en_route"), lineman.status(job, "on_site")).get_json()["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert arrivals() == 1


def test_job_search_count_follows_new_jobs_and_a_new_customer(app: Flask, client, staff, world) -> None:
    with app.app_context():
        assert job_count(JobFilter(q="outage")) == 1
        office.create_job(customer_id="C4", premise_id="P4", job_type="outage", summary="second outage job")
        db.session.commit()
        assert job_count(JobFilter(q="outage")) == 2
        db.session.add(Customer(id="C9", account_no="419999", name="Outage Watch Ltd", segment="standard"))
        db.session.flush()
        db.session.add(
            Job(
                id="J-direct",
                number="J-DIRECT",
                customer_id="C9",
                premise_id="P4",
                job_type="complaint",
                summary="loaded by an import",
                created_at=dt.datetime.now(dt.UTC),
                field_hlc={},
            )
        )
        db.session.commit()
        assert job_count(JobFilter(q="outage")) == 3
        assert job_count(JobFilter(q="outage", page=2)) == 3  # the page does not change the count
    page = client.get("/jobs?q=outage").get_data(as_text=True)
    assert "J-DIRECT" in page and "Outage Watch Ltd" in page


def test_every_app_has_its_own_cache(app: Flask, world) -> None:
    with app.app_context():
        cached_figures(("test", "own"), lambda: 1)
        assert FIGURES_KEY in app.extensions


def test_large_kinds_keep_few_entries_and_the_rest_are_bounded(app: Flask, world, monkeypatch) -> None:
    monkeypatch.setattr("server.services.periods.data_version", lambda: ("same",))
    cache = FigureCache(entries=3, kind_entries={"abc": 1})
    with app.app_context():
        cache.get(("abc", 1), lambda: "first")
        cache.get(("abc", 2), lambda: "second")  # drops ("abc", 1)
        assert cache.get(("abc", 1), lambda: "again") == "again"
        assert cache.get(("abc", 1), lambda: "not computed") == "again"
        for n in range(4):
            cache.get(("kpis", n), lambda n=n: n)
        assert cache.get(("kpis", 0), lambda: "recomputed") == "recomputed"  # the oldest went first
        assert cache.get(("kpis", 3), lambda: "not computed") == 3
