"""The lists' text search (readinglist.contains_text) on jobs and customers: a substring anywhere,
letters in any case, % and _ taken literally, Chinese names; on SQLite (plain LIKE) and PostgreSQL
(ILIKE) alike, on the pages and in the counts."""

from __future__ import annotations

import pytest
from flask import Flask

from server.extensions import db
from server.models import Customer, Premise
from server.services import office
from server.services.customerview import CustomerFilter, customer_page
from server.services.joblist import JobFilter, job_count, job_select

CUSTOMERS = {
    "C7": "王伟 (welfare tariff)",
    "C8": "100% Green_Energy Co.",
    "C9": "100x GreenXEnergy Co.",
}


@pytest.fixture
def named(app: Flask, world) -> None:
    with app.app_context():
        for number, (cid, name) in enumerate(CUSTOMERS.items(), start=7):
            db.session.add(Customer(id=cid, account_no=f"41000{number}", name=name, segment="standard"))
            db.session.add(Premise(id=f"P{number}", customer_id=cid, address=f"{number} Jiefang Ave", hazards=[]))
        db.session.flush()
        for cid, summary in (("C7", "停电 no power"), ("C8", "Meter 50% off"), ("C9", "Meter 50x off")):
            office.create_job(customer_id=cid, premise_id="P" + cid[1:], job_type="outage", summary=summary, priority=3)
        db.session.commit()


def customers(app: Flask, text: str) -> set[str]:
    with app.app_context():
        page = customer_page(CustomerFilter(q=text))
        found = {row[0].id for row in page.items}
        assert page.total == len(found)
        return found


def job_customers(app: Flask, text: str) -> set[str]:
    with app.app_context():
        jobs = db.session.execute(job_select(JobFilter(q=text))).scalars().all()
        assert job_count(JobFilter(q=text)) == len(jobs)
        return {job.customer_id for job in jobs}


def test_a_substring_in_any_case(app, named) -> None:
    assert customers(app, "green_energy") == {"C8"}
    assert customers(app, "GREEN") == {"C8", "C9"}
    assert customers(app, "reen") == {"C8", "C9"}
    assert job_customers(app, "METER 50") == {"C8", "C9"}


def test_percent_and_underscore_are_literal(app, named) -> None:
    assert customers(app, "100%") == {"C8"}
    assert customers(app, "n_e") == {"C8"}
    assert customers(app, "_") == {"C8"}
    assert job_customers(app, "50%") == {"C8"}
    assert job_customers(app, "%") == {"C8"}


def test_chinese_names_and_summaries(app, named) -> None:
    assert customers(app, "王伟") == {"C7"}
    assert customers(app, "伟") == {"C7"}
    assert job_customers(app, "王") == {"C7"}  # the customer's name
    assert job_customers(app, "停电") == {"C7"}  # the summary
    assert customers(app, "李") == set()


def test_the_jobs_page_finds_by_customer_name(app, client, staff, named) -> None:
    page = client.get("/jobs?q=王伟").get_data(as_text=True)
    assert "停电 no power" in page and "Meter 50% off" not in page
    page = client.get("/customers?q=green_").get_data(as_text=True)
    assert "100% Green_Energy Co." in page and "100x GreenXEnergy" not in page
