"""The service centre in a real browser, fed by a real handheld: a note typed in the field (with markup
in it) is searched for, opened and shown escaped; the jobs list exports CSV; the value analysis and KPI
pages draw their charts; the pages switch to Chinese. Screenshots of the key pages for docs/."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from pda_client import Handheld
from tests.browser.conftest import screenshot
from tests.e2e.conftest import ROOT

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HOSTILE_NOTE = "Fuse replaced <script>window.__pwned = 1</script><b>bold?</b>"


# The office dispatches a job to lineman1, as its job form does, through the office service.
DISPATCH = """
from server import create_app
from server.extensions import db
from server.models import User
from server.services import office
app = create_app()
with app.app_context():
    lineman = db.session.execute(db.select(User).where(User.username == "lineman1")).scalar_one()
    job = office.create_job(customer_id="C000002", premise_id="P000002", job_type="line_repair",
                            summary="Browser test: sagging line", priority=2, assigned_to=lineman.id)
    db.session.commit()
    print(job.id)
"""


@pytest.fixture(scope="module")
def synced_job(live_site, tmp_path_factory) -> str:
    """A job dispatched to lineman1, whose handheld records field work with a hostile note and syncs;
    returns the job number."""
    result = subprocess.run(
        [sys.executable, "-c", DISPATCH], cwd=ROOT, env=live_site.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    hh = Handheld(tmp_path_factory.mktemp("lineman1"))
    try:
        hh.enroll(live_site.url, live_site.flask("enroll-code", "lineman1").strip(), "browser-test")
        hh.sync()
        hh.jobs.arrive(job_id)
        hh.jobs.add_note(job_id, HOSTILE_NOTE)
        hh.sync()
        assert hh.status()["pending_changes"] == 0
        return hh.jobs.find(job_id)["number"]
    finally:
        hh.close()


def _keep(page, name: str) -> None:
    """A screenshot for the tests' output and, with FIELDSYNC_PUBLISH_SCREENSHOTS=1, docs/screenshots/."""
    path = screenshot(page, name)
    if os.environ.get("FIELDSYNC_PUBLISH_SCREENSHOTS") == "1":  # refresh the committed copies on purpose only
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / f"web-{name}.png")


def test_a_job_synced_from_a_handheld_is_found_and_its_note_shown_escaped(page, live_site, synced_job):
    page.goto(f"{live_site.url}/jobs")
    page.get_by_label("Search").fill(synced_job)
    page.get_by_label("Search").press("Enter")
    row = page.locator("table tbody tr", has_text=synced_job)
    expect(row).to_have_count(1)
    _keep(page, "jobs-list")
    row.get_by_role("link", name=synced_job).click()
    expect(page.locator("table.timeline")).to_contain_text("<script>window.__pwned = 1</script>")
    assert page.evaluate("() => window.__pwned") is None  # the note's script never ran
    assert page.locator("table.timeline b", has_text="bold?").count() == 0  # nor did its markup render
    expect(page.locator("table.timeline")).to_contain_text("On site")
    _keep(page, "job-detail")


def test_the_jobs_list_exports_the_filtered_rows_as_csv(page, live_site, synced_job):
    page.goto(f"{live_site.url}/jobs?q={synced_job}")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 2, rows  # the header and the one job the filter selects
    assert synced_job in rows[1]


def test_value_analysis_and_kpis_draw_their_charts(page, live_site):
    page.goto(f"{live_site.url}/analysis")
    expect(page.locator("svg").first).to_be_visible()
    classes = page.locator("table", has=page.get_by_role("columnheader", name="Share of customers"))
    expect(classes.locator("tbody tr")).to_have_count(3)  # A, B and C
    _keep(page, "value-analysis")
    page.goto(f"{live_site.url}/kpis")
    expect(page.locator("svg").first).to_be_visible()
    _keep(page, "kpis")
    page.goto(f"{live_site.url}/readings/routes")
    expect(page.locator("table").first).to_be_visible()
    _keep(page, "route-progress")


def test_pages_switch_to_chinese(page, live_site):
    page.goto(f"{live_site.url}/jobs")
    page.get_by_label("Language").select_option("zh")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("header nav")).to_contain_text("工单")
    _keep(page, "jobs-list-zh")
