"""Value analysis: customers' volumes from the database classified A/B/C, the page (/analysis: Pareto
chart, class and segment totals, VIP list, the classified list with filters, pages and CSV) and the staff
API (/api/v1/staff/analysis/abc), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from typing import Any

import pytest
from flask import Flask

from server.extensions import db
from server.models import MeterReading, User
from server.services import analysis, apitokens
from server.services.analysis import AbcClass, Rule, Variant
from server.services.clock import now_hlc
from server.services.periods import Period
from tests.server.helpers import assert_error, device

YEAR = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
IN_YEAR = dt.datetime(2025, 6, 15, 10, 0, tzinfo=dt.UTC)
ABC_API = "/api/v1/staff/analysis/abc"


def reading(meter_id: str, consumption: float | None, read_at: dt.datetime = IN_YEAR, **extra: Any) -> MeterReading:
    row = MeterReading(
        id=f"MR-{uuid.uuid4().hex[:12]}",
        meter_id=meter_id,
        route_id=None,
        value=extra.pop("value", 1000),
        reading_type=extra.pop("reading_type", "regular"),
        read_at=read_at,
        consumption=consumption,
        hlc=str(now_hlc()),
        received_at=read_at,
        flags=[],
        **extra,
    )
    db.session.add(row)
    return row


@pytest.fixture
def volumes(app: Flask, world) -> None:
    """Volumes over 2025 (total 1000): C1 600, C2 250, C3 100, C4 40, C5 10, C6 none.

    Count rule: n = 5 consuming, ceil(5/3) = 2 A (C1, C2: 85 %); C3 starts at 85 % -> B and ends at
    exactly 95 %; C4 starts at 95 % -> C; C5 C; C6 (no readings) C."""
    with app.app_context():
        reading("M1", 400.0)
        reading("M1", 200.0, IN_YEAR + dt.timedelta(days=30))
        reading("M2", 250.0)
        wrong = reading("M3", 999.0)  # corrected: does not count
        fixed = reading("M3", 100.0, supersedes=wrong.id)
        wrong.superseded_by = fixed.id
        reading("M4", 40.0)
        reading("M4", 5000.0, dt.datetime(2024, 12, 31, 23, 59, tzinfo=dt.UTC))  # before the period
        reading("M4", 5000.0, dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.UTC))  # the day after it
        reading("M5", 10.0, dt.datetime(2025, 12, 31, 23, 59, tzinfo=dt.UTC))  # the last day counts
        reading("M5", None, value=None, skip_code="dog")  # a skip has no value
        reading("M5", None)  # a first read: no consumption yet
        db.session.commit()


def test_volumes_are_sums_of_effective_readings_in_the_period(app, volumes):
    with app.app_context():
        found = {v.customer_id: (v.volume, v.readings) for v in analysis.customer_volumes(YEAR)}
    assert found == {
        "C1": (600.0, 2),
        "C2": (250.0, 1),
        "C3": (100.0, 1),
        "C4": (40.0, 1),
        "C5": (10.0, 2),
        "C6": (0.0, 0),
    }


def test_customers_are_classified_by_the_count_rule(app, volumes):
    with app.app_context():
        result = analysis.analyse(YEAR, Rule())
        classes = {row.customer_id: row.abc.value for row in result.rows}
        assert [row.customer_id for row in result.rows] == ["C1", "C2", "C3", "C4", "C5", "C6"]
        assert analysis.customer_class("C3", YEAR, Rule()).cumulative_share == pytest.approx(0.95)
        assert analysis.customer_class("C404", YEAR) is None
    assert classes == {"C1": "A", "C2": "A", "C3": "B", "C4": "C", "C5": "C", "C6": "C"}
    assert result.classification.total_volume == 1000.0
    assert [t.customers for t in result.classification.totals] == [2, 1, 3]


def test_textbook_rule_and_configured_defaults(app, volumes):
    with app.app_context():
        textbook = analysis.analyse(YEAR, Rule.make(Variant.CUMULATIVE))
        assert {r.customer_id: r.abc.value for r in textbook.rows} == {
            "C1": "A",  # starts at 0 %
            "C2": "A",  # starts at 60 % < 80 %
            "C3": "B",  # starts at 85 %
            "C4": "C",  # starts at 95 %
            "C5": "C",
            "C6": "C",
        }
        app.config["ABC_VARIANT"] = "cumulative"
        app.config["ABC_A_CUMULATIVE_SHARE"] = "0.5"
        assert analysis.configured_rule() == Rule(Variant.CUMULATIVE, "0.5", "0.95")
        only_c1 = analysis.analyse(YEAR)  # C2 starts at 60 % >= 50 %
        assert [r.abc.value for r in only_c1.rows] == ["A", "B", "B", "C", "C", "C"]


def test_an_empty_period_classifies_everyone_c(app, volumes):
    with app.app_context():
        result = analysis.analyse(Period(dt.date(2030, 1, 1), dt.date(2030, 1, 31)), Rule())
    assert {row.abc for row in result.rows} == {AbcClass.C}
    assert result.classification.total_volume == 0 and result.classification.consuming == 0


def test_segments_and_vips_with_open_jobs(app, volumes):
    with app.app_context():
        result = analysis.analyse(YEAR, Rule())
        segments = {s.segment: s for s in result.segments()}
        open_jobs = analysis.open_jobs_of_vips()
    assert segments["safety"].customers == 1 and segments["safety"].vip == 1
    assert segments["safety"].volume_share == pytest.approx(0.6)
    assert segments["standard"].customers == 5 and segments["standard"].volume_share == pytest.approx(0.4)
    assert dict(segments["standard"].by_class) == {AbcClass.A: 1, AbcClass.B: 1, AbcClass.C: 3}
    assert segments["social"].customers == 0
    assert open_jobs == {"C1": 1}  # the world's outage job for C1 is assigned, not finished


# --- the page ------------------------------------------------------------------------------------------


def test_value_analysis_page_needs_a_signed_in_staff_member(client, world):
    response = client.get("/analysis")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_value_analysis_page_shows_the_chart_classes_segments_and_vips(client, staff, volumes):
    response = client.get("/analysis?start=2025-01-01&end=2025-12-31")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert re.search(r'<svg class="chart"[^>]*role="img"[^>]*aria-labelledby="chart-1-title chart-1-desc"', page)
    assert '<title id="chart-1-title">Customers ranked by volume, with the cumulative share</title>' in page
    desc = re.search(r'<desc id="chart-1-desc">([^<]*)</desc>', page).group(1)
    assert "A: 2 customers" in desc and "85.0 %" in desc
    assert 'class="guide"' in page and "95 %" in page and "80 %" in page  # the guides
    assert '<polyline class="cumulative"' in page
    assert "<script" not in page.split("<main>")[1]  # charts need no script
    assert 'href="/customers/C1"' in page
    vip = page.split('id="vip"')[1].split('id="classified"')[0]
    assert "Customer 1" in vip and "Customer 2" not in vip
    assert re.search(r'<span class="tag warn">1</span>', vip)  # C1's open job
    assert "Customers without consumption (class C, not drawn): 1" in page


def test_classified_list_filters_by_class_and_segment(client, staff, volumes):
    base = "/analysis?start=2025-01-01&end=2025-12-31"
    listed = _listed(client.get(base + "&class=A").get_data(as_text=True))
    assert listed == ["C1", "C2"]
    assert _listed(client.get(base + "&class=C&segment=standard").get_data(as_text=True)) == ["C4", "C5", "C6"]
    assert _listed(client.get(base + "&vip=true").get_data(as_text=True)) == ["C1"]
    assert _listed(client.get(base + "&per_page=2&page=2").get_data(as_text=True)) == ["C3", "C4"]


def _listed(page: str) -> list[str]:
    table = page.split('id="classified"')[1]
    return re.findall(r'<a href="/customers/(C\d+)">', table)


def test_rule_and_thresholds_come_from_the_form(client, staff, volumes):
    base = "/analysis?start=2025-01-01&end=2025-12-31"
    page = client.get(base + "&variant=cumulative&a=50&class=A").get_data(as_text=True)
    assert _listed(page) == ["C1"]
    assert "A until the cumulative volume reaches 50 %" in page
    page = client.get(base + "&variant=count&a=60&class=A").get_data(as_text=True)  # ceil(0.6 x 5) = 3
    assert _listed(page) == ["C1", "C2", "C3"]


def test_invalid_settings_are_shown_and_replaced_by_defaults(client, staff, volumes):
    response = client.get("/analysis?start=2025-12-31&end=2025-01-01&a=500&variant=magic")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true" aria-describedby="end-error"' in page
    assert 'id="a-error"' in page and 'id="variant-error"' in page
    assert "replaced by their defaults" in page


def test_classified_list_downloads_as_csv(client, staff, volumes):
    response = client.get("/analysis?start=2025-01-01&end=2025-12-31&format=csv&segment=standard")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="value-analysis-2025-01-01-2025-12-31.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:4] == ["Rank", "Class", "Account", "Customer"]
    assert [(r[0], r[1], r[2], r[6]) for r in rows[1:]] == [
        ("2", "A", "410002", "250.0"),
        ("3", "B", "410003", "100.0"),
        ("4", "C", "410004", "40.0"),
        ("5", "C", "410005", "10.0"),
        ("6", "C", "410006", "0.0"),
    ]


def test_csv_neutralises_formulas_in_names(app, client, staff, volumes):
    with app.app_context():
        from server.models import Customer

        db.session.get(Customer, "C2").name = '=HYPERLINK("http://evil")'
        db.session.commit()
    response = client.get("/analysis?class=A&start=2025-01-01&end=2025-12-31&format=csv")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[2][3] == '\'=HYPERLINK("http://evil")'


# --- the staff API -----------------------------------------------------------------------------------


@pytest.fixture
def token(app: Flask, world) -> str:
    with app.app_context():
        _row, secret = apitokens.issue_token(db.session.get(User, "U-staff"), "analysis tests")
        db.session.commit()
    return secret


def test_abc_api_refuses_missing_and_device_tokens(app, client, world):
    assert_error(client.get(ABC_API), 401, "unauthorized")
    handheld = device(app, client, "reader")
    assert_error(client.get(ABC_API, headers={"Authorization": f"Bearer {handheld.token}"}), 401, "unauthorized")
    assert_error(client.get(ABC_API, headers={"Authorization": "Bearer fsk.not-a-token"}), 401, "unauthorized")


def test_abc_api_returns_summary_and_a_page_of_classified_customers(client, token, volumes):
    headers = {"Authorization": f"Bearer {token}"}
    body = client.get(ABC_API + "?start=2025-01-01&end=2025-12-31&per_page=2&page=2", headers=headers).get_json()
    assert body["period"] == {"start": "2025-01-01", "end": "2025-12-31"}
    assert body["rule"] == {"variant": "count", "a": 33.333333, "b": 95.0, "a_exact": "1/3", "b_exact": "19/20"}
    assert body["total_volume"] == 1000.0 and body["customers"] == 6 and body["consuming_customers"] == 5
    assert [(c["class"], c["customers"], c["volume_share"]) for c in body["classes"]] == [
        ("A", 2, 0.85),
        ("B", 1, 0.1),
        ("C", 3, pytest.approx(0.05)),
    ]
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (2, 2, 6, 3)
    assert [(c["customer_id"], c["rank"], c["class"]) for c in body["items"]] == [("C3", 3, "B"), ("C4", 4, "C")]
    assert body["items"][0]["cumulative_share"] == pytest.approx(0.95)
    safety = next(s for s in body["segments"] if s["segment"] == "safety")
    assert safety == {"segment": "safety", "customers": 1, "vip": 1, "volume": 600.0, "volume_share": 0.6,
                      "by_class": {"A": 1, "B": 0, "C": 0}}  # fmt: skip


def test_abc_api_takes_the_variant_thresholds_and_filters(client, token, volumes):
    headers = {"Authorization": f"Bearer {token}"}
    query = "?start=2025-01-01&end=2025-12-31&variant=cumulative&a=50&b=99&class=B"
    body = client.get(ABC_API + query, headers=headers).get_json()
    assert body["rule"]["a_exact"] == "1/2" and body["rule"]["b_exact"] == "99/100"
    assert [c["customer_id"] for c in body["items"]] == ["C2", "C3", "C4"]  # C4 starts at 95 % < 99 %: B
    body = client.get(ABC_API + "?start=2025-01-01&end=2025-12-31&segment=safety", headers=headers).get_json()
    assert [c["customer_id"] for c in body["items"]] == ["C1"] and body["total"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2025-12-31&end=2025-01-01", "end"),
        ("a=0", "a"),
        ("b=101", "b"),
        ("variant=abc", "variant"),
        ("variant=cumulative&a=90&b=80", "a"),
        ("class=D", "class"),
        ("per_page=1000", "per_page"),
        ("start=yesterday", "start"),
        ("variant=cumulative&b=70", "a"),  # the configured 80 % for A would exceed B's 70 %
    ],
)
def test_abc_api_refuses_invalid_parameters(client, token, volumes, query, field):
    error = assert_error(client.get(f"{ABC_API}?{query}", headers={"Authorization": f"Bearer {token}"}), 422,
                         "validation_error")  # fmt: skip
    assert field in error["fields"], error


def test_abc_api_serves_a_signed_in_staff_session(client, staff, volumes):
    assert client.get(ABC_API + "?start=2025-01-01").status_code == 200
