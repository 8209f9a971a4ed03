"""Customer pages and staff API: search and filters, CSV, the customer page (premises, meters, consumption
history, jobs, complaints with resolution times), access."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask

from server.extensions import db
from server.models import Customer, Job, JobEvent, Premise
from server.services import office
from server.services.clock import now_hlc
from tests.server.helpers import assert_error, device
from tests.server.world import NOW
from tests.web.test_readings import add_reading, api, issue_staff_token, page_ids, read_csv, supersede


@pytest.fixture
def token(app: Flask, world) -> str:
    """A staff API token."""
    return issue_staff_token(app, world)


@pytest.fixture
def customers(app: Flask, world) -> None:
    """Beside the world's six: searchable names, phones written in different ways, segments and VIPs."""
    with app.app_context():
        for cid, account, name, phone, segment, vip in [
            ("C7", "4200017", "Zhang Wei", "+86 139 1234 5678", "social", False),
            ("C8", "4200018", "Zhang Min's Restaurant", "139-8765-4321", "profit", True),
            ("C9", "5100019", "City Hospital", "(021) 5555 0101", "safety", True),
            ("C10", "4200020", "Li 100% Trading", None, "profit", False),
        ]:
            db.session.add(Customer(id=cid, account_no=account, name=name, phone=phone, segment=segment, vip=vip))
        db.session.commit()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "zhang"}, {"C7", "C8"}),
        ({"q": "ZHANG min"}, {"C8"}),
        ({"q": "42000"}, {"C7", "C8", "C10"}),  # the beginning of an account number
        ({"q": "410003"}, {"C3"}),
        ({"q": "13912345678"}, {"C7"}),  # digits as typed, whatever the stored separators
        ({"q": "8765 4321"}, {"C8"}),
        ({"q": "100%"}, {"C10"}),  # a wildcard character is searched for literally
        ({"q": "_"}, set()),
        ({"segment": "profit"}, {"C8", "C10"}),
        ({"segment": "safety"}, {"C1", "C9"}),
        ({"vip": "1"}, {"C1", "C8", "C9"}),
        ({"vip": "0", "segment": "profit"}, {"C10"}),
        ({"q": "zhang", "vip": "true"}, {"C8"}),
    ],
)
def test_customer_search_and_filters(client, staff, token, customers, query, expected):
    assert set(page_ids(client, "/customers", "data-customer", **query)) == expected
    body = api(client, "/api/v1/staff/customers", token, **query)
    assert {item["id"] for item in body["items"]} == expected and body["total"] == len(expected)


def test_customer_list_is_paginated_by_name(client, staff, token, customers):
    body = api(client, "/api/v1/staff/customers", token, per_page=4, page=2)
    assert body["total"] == 10 and body["pages"] == 3 and body["page"] == 2
    everything = api(client, "/api/v1/staff/customers", token, per_page=200)["items"]
    names = [item["name"] for item in everything]
    assert names == sorted(names)
    assert [item["name"] for item in body["items"]] == names[4:8]
    page = client.get("/customers?per_page=4&page=2").get_data(as_text=True)
    assert "5\N{EN DASH}8 of 10" in page and 'rel="prev"' in page and 'rel="next"' in page


def test_customer_list_shows_address_premises_and_open_jobs(app, client, staff, token, customers):
    with app.app_context():  # a finished job is not open
        job = office.create_job(customer_id="C4", premise_id="P4", job_type="inspection", summary="Check")
        office.cancel_job(job, reason="Duplicate")
        db.session.commit()
    items = {item["id"]: item for item in api(client, "/api/v1/staff/customers", token)["items"]}
    assert items["C1"]["address"] == "1 Renmin Rd" and items["C1"]["premises"] == 1
    assert items["C1"]["open_jobs"] == 1 and items["C4"]["open_jobs"] == 0
    assert items["C7"]["premises"] == 0 and items["C7"]["address"] is None


def test_customer_csv_has_the_filtered_rows_and_neutralised_formulas(client, staff, customers):
    rows = read_csv(client.get("/customers?format=csv&segment=profit&page=2"))
    assert rows[0] == ["Account", "Name", "Phone", "Segment", "VIP", "Address", "Premises", "Open jobs"]
    table = {row[0]: row for row in rows[1:]}
    assert set(table) == {"4200018", "4200020"}
    assert table["4200018"][1:5] == ["Zhang Min's Restaurant", "139-8765-4321", "profit", "yes"]
    everything = {row[0]: row for row in read_csv(client.get("/customers?format=csv"))[1:]}
    assert everything["4200017"][2] == "'+86 139 1234 5678"  # a leading "+" would run as a formula


def test_a_bad_customer_filter_is_ignored_on_the_page_and_refused_by_the_api(client, staff, token, customers):
    response = client.get("/customers?segment=gold&q=zhang")
    assert response.status_code == 200
    assert set(re.findall(r'data-customer="([^"]+)"', response.get_data(as_text=True))) == {"C7", "C8"}
    assert "Some filters were not valid and were ignored" in response.get_data(as_text=True)
    error = assert_error(
        client.get("/api/v1/staff/customers?segment=gold", headers={"Authorization": f"Bearer {token}"}),
        422,
        "validation_error",
    )
    assert list(error["fields"]) == ["segment"]


def test_customer_names_are_escaped(app, client, staff, world):
    with app.app_context():
        db.session.get(Customer, "C2").name = "<img src=x onerror=alert(1)>"
        db.session.get(Premise, "P2").access_notes = "<script>steal()</script>"
        db.session.commit()
    for path in ("/customers", "/customers/C2"):
        page = client.get(path).get_data(as_text=True)
        assert "<img src=x" not in page and "<script>steal" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page


# --- the customer page --------------------------------------------------------------------------


def month_key(today: dt.date, back: int) -> str:
    year, month = today.year, today.month - back
    while month < 1:
        year, month = year - 1, month + 12
    return f"{year:04d}-{month:02d}"


def mid_month(today: dt.date, back: int, day: int = 10) -> dt.datetime:
    year, month = (int(part) for part in month_key(today, back).split("-"))
    return dt.datetime(year, month, min(day, today.day if back == 0 else day), 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def history(app: Flask, world) -> dt.date:
    """Readings of customer C1 (meter M1) over 14 months, and readings that must not count."""
    today = dt.datetime.now(dt.UTC).date()
    with app.app_context():
        add_reading("M1", 5, consumption=100.0, read_at=mid_month(today, 0, 1))
        add_reading("M1", 5, consumption=50.5, read_at=mid_month(today, 0, 1) + dt.timedelta(minutes=1))
        wrong = add_reading("M1", 9, consumption=999.0, read_at=mid_month(today, 1))
        right = add_reading("M1", 5, consumption=250.0, read_at=mid_month(today, 1, 11))
        supersede(wrong, right)
        add_reading("M1", 5, consumption=300.0, reading_type="estimated", read_at=mid_month(today, 2))
        add_reading("M1", 5, consumption=-40.0, read_at=mid_month(today, 3))  # an estimate corrected
        add_reading("M1", None, skip_code="dog", read_at=mid_month(today, 4))  # a skip: no consumption
        add_reading("M1", 5, consumption=70.0, read_at=mid_month(today, 11))
        add_reading("M1", 5, consumption=5000.0, read_at=mid_month(today, 12))  # older than 12 months
        add_reading("M2", 5, consumption=800.0, read_at=mid_month(today, 0, 1))  # another customer
        db.session.commit()
    return today


def test_consumption_history_sums_effective_readings_per_month(client, staff, token, history):
    body = api(client, "/api/v1/staff/customers/C1", token)
    months = body["consumption"]
    assert [m["month"] for m in months] == [month_key(history, back) for back in range(11, -1, -1)]
    by_month = {m["month"]: (m["consumption"], m["readings"], m["estimated"]) for m in months}
    assert by_month[month_key(history, 0)] == (150.5, 2, 0)
    assert by_month[month_key(history, 1)] == (250.0, 1, 0)
    assert by_month[month_key(history, 2)] == (300.0, 1, 1)
    assert by_month[month_key(history, 3)] == (-40.0, 1, 0)
    assert by_month[month_key(history, 4)] == (0.0, 0, 0)
    assert by_month[month_key(history, 11)] == (70.0, 1, 0)
    assert sum(m["consumption"] for m in months) == pytest.approx(730.5)


def test_customer_page_shows_consumption_chart_and_table(client, staff, history):
    page = client.get("/customers/C1").get_data(as_text=True)
    assert '<svg class="chart"' in page
    assert f"{month_key(history, 0)}: 150.5 kWh</title>" in page  # the bar's tooltip
    assert re.search(rf"<td>{month_key(history, 2)}</td><td class=\"num\">300.0</td>", page)
    assert ">730.5<" in page  # the total


def test_customer_page_shows_account_premises_hazards_and_meters(app, client, staff, token, world):
    with app.app_context():
        db.session.get(Customer, "C2").phone = "+86 139 0000 0002"
        db.session.commit()
    page = client.get("/customers/C2").get_data(as_text=True)
    assert "Customer 2" in page and "410002" in page and "+86 139 0000 0002" in page
    assert "2 Renmin Rd" in page and ">Dog<" in page  # the premise's hazard
    assert 'href="/readings?meter=A0000002"' in page and "1000 · " in page  # the last billing read
    body = api(client, "/api/v1/staff/customers/C2", token)
    assert body["account_no"] == "410002" and body["segment"] == "standard" and body["vip"] is False
    (premise,) = body["premises"]
    assert premise["hazards"] == ["dog"]
    assert [(m["number"], m["dials"], m["multiplier"], m["last_value"]) for m in premise["meters"]] == [
        ("A0000002", 5, 1.0, 1000)
    ]
    vip = client.get("/customers/C1").get_data(as_text=True)
    assert 'class="tag vip"' in vip and 'class="tag safety"' in vip


@pytest.fixture
def complaints(app: Flask, world) -> dict[str, str]:
    """C1: a complaint resolved in 5 h; one completed, returned to the field and completed again after 10 h;
    one still open. C2: a complaint of another customer."""
    created = dt.datetime(2024, 6, 1, 8, 0, tzinfo=dt.UTC)

    def complaint(customer: str, name: str) -> Job:
        return office.create_job(
            customer_id=customer,
            premise_id=customer.replace("C", "P"),
            job_type="complaint",
            summary=f"{name}: flickering lights",
            job_id=f"J-{name}",
            number=f"J-{name.upper()}",
            created_at=created,
        )

    def finish(job: Job, hours: float, round_: int = 1, status: str = "completed") -> None:
        db.session.add(
            JobEvent(
                id=f"E-{job.id}-{round_}-{status}",
                job_id=job.id,
                kind="status",
                status=status,
                round=round_,
                recorded_at=created + dt.timedelta(hours=hours),
                hlc=str(now_hlc()),
                source="field",
                flags=[],
            )
        )
        job.status, job.round = status, round_

    with app.app_context():
        quick = complaint("C1", "quick")
        finish(quick, 5)
        finish(quick, 30, status="closed")
        redo = complaint("C1", "redo")
        finish(redo, 2)
        finish(redo, 10, round_=2)
        complaint("C1", "open")
        elsewhere = complaint("C2", "elsewhere")
        finish(elsewhere, 1)
        db.session.commit()
    return {"quick": "J-quick", "redo": "J-redo", "open": "J-open"}


def test_complaints_with_resolution_times(client, staff, token, complaints):
    body = api(client, "/api/v1/staff/customers/C1", token)
    times = {c["id"]: c["resolution_hours"] for c in body["complaints"]}
    assert times == {"J-quick": 5.0, "J-redo": 10.0, "J-open": None}
    assert body["complaint_summary"] == {
        "total": 3,
        "open": 1,
        "resolved": 2,
        "mean_hours": 7.5,
        "longest_hours": 10.0,
    }
    assert {job["id"] for job in body["jobs"]} == {"J-quick", "J-redo", "J-open", "J-outage"}
    assert body["jobs_total"] == 4
    page = client.get("/customers/C1").get_data(as_text=True)
    assert "5.0 h" in page and "10.0 h" in page and "mean resolution time 7.5 h" in page
    assert 'href="/jobs/J-quick"' in page and 'href="/jobs/J-outage"' in page
    assert "J-ELSEWHERE" not in page


def test_unknown_customer_is_404(client, staff, token, world):
    assert client.get("/customers/C404").status_code == 404
    response = client.get("/api/v1/staff/customers/C404", headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("path", ["/api/v1/staff/customers", "/api/v1/staff/customers/C1"])
def test_customer_api_needs_a_staff_token_or_session(app, client, world, token, path):
    assert_error(client.get(path), 401, "unauthorized")
    handheld = device(app, client, "reader")
    assert_error(client.get(path, headers=handheld.headers), 401, "unauthorized")
    assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("path", ["/customers", "/customers/C1", "/customers?format=csv"])
def test_customer_pages_need_a_signed_in_staff_member(client, world, path: Any):
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_customer_page_shows_the_value_class_of_the_value_analysis(app, client, staff, token, world):
    """Classes come from services/analysis.py (last 12 months): C1 consumes most, C2 a little, the rest
    nothing (non-consuming customers are C)."""
    with app.app_context():
        add_reading("M1", 5, consumption=9000.0, read_at=NOW - dt.timedelta(days=20))
        add_reading("M2", 5, consumption=10.0, read_at=NOW - dt.timedelta(days=20))
        db.session.commit()
    top = api(client, "/api/v1/staff/customers/C1", token)
    assert top["value_class"] == "A" and top["value"]["rank"] == 1 and top["value"]["volume"] == 9000.0
    assert api(client, "/api/v1/staff/customers/C5", token)["value_class"] == "C"
    page = client.get("/customers/C1").get_data(as_text=True)
    assert "Class A" in page and "rank 1, 9,000 kWh" in page
