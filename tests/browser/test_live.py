"""Live updates: a list page names its fragment URL (its own URL plus fragment=1), the fragment is only
the table and reflects newly synced records, and live.js in a real browser swaps it in, highlighting new
and changed rows, keeping the filters and the scroll position, and holding back while the user is busy."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator

import pytest

from server.extensions import db
from server.models import Job
from server.services import office
from tests.web.conftest import admin, app, client, database_url, runner, staff, world  # noqa: F401 - fixtures
from tests.web.test_conflicts import make_conflicts
from tests.web.test_jobs import run, synced

LIVE_URL = re.compile(r'data-live-url="([^"]+)"')


def _row(html: str, key: str) -> str:
    start = html.index(f'data-live-key="{key}"')
    return html[start : html.index("</tr>", start)]


def test_live_script_is_served_and_documents_its_use(app, client, world):
    with client.get("/static/live.js") as response:
        assert response.status_code == 200 and "javascript" in response.mimetype
        script = response.get_data(as_text=True)
    for words in ("data-live-url", "fragment=1", "data-live-key", "visibilityState", "live-new", "FieldSyncLive"):
        assert words in script, words


@pytest.mark.parametrize("path", ["/jobs?status=assigned&q=job", "/conflicts?kind=concurrent_edit&state=all"])
def test_list_pages_name_their_fragment_with_the_filters_kept(app, client, world, staff, path):
    page = client.get(path).get_data(as_text=True)
    (url,) = LIVE_URL.findall(page)
    url = url.replace("&amp;", "&")
    assert url.startswith(path.split("?")[0] + "?") and "fragment=1" in url
    for parameter in path.split("?")[1].split("&"):
        assert parameter in url
    assert "live.js" in page


@pytest.mark.parametrize("path", ["/jobs?status=assigned", "/conflicts"])
def test_the_fragment_is_only_the_table(app, client, world, staff, path):
    response = client.get(f"{path}&fragment=1" if "?" in path else f"{path}?fragment=1")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True).strip()
    assert html.startswith('<nav class="pager"') and "<table" in html
    for outside in ("<html", "<head", "<header", 'role="search"', "data-live-url", "live.js", "<h1"):
        assert outside not in html, outside


def test_the_job_fragment_reflects_a_newly_pushed_event_and_a_new_job(app, client, world, staff):
    lineman = synced(app, client, "lineman")
    before = client.get("/jobs?assignee=U-lineman&fragment=1").get_data(as_text=True)
    assert "status-assigned" in _row(before, "J-outage") and "UTC" not in _row(before, "J-outage").split("</td>")[-2]
    lineman.push(lineman.status("J-outage", "en_route"))
    run(
        app,
        lambda: office.create_job(
            customer_id="C6",
            premise_id="P6",
            job_type="outage",
            summary="Fresh",
            assigned_to="U-lineman",
            job_id="J-new",
        ),
    )
    after = client.get("/jobs?assignee=U-lineman&fragment=1").get_data(as_text=True)
    row = _row(after, "J-outage")
    assert "status-en_route" in row and "En route" in row
    assert "UTC" in row.split("</td>")[-2]  # the last field activity is now known
    assert 'data-live-key="J-new"' in after and 'data-live-key="J-other"' not in after  # the filter holds


def test_the_conflict_fragment_reflects_a_new_conflict(app, client, world, staff):
    before = client.get("/conflicts?fragment=1").get_data(as_text=True)
    assert "data-live-key" not in before
    _, ids, _, _ = make_conflicts(app, client)
    after = client.get("/conflicts?fragment=1").get_data(as_text=True)
    assert f'data-live-key="conflict-{ids["work_after_cancel"]}"' in after


def test_the_fragment_needs_a_signed_in_staff_member(app, client, world):
    response = client.get("/jobs?fragment=1")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- in a real browser -----------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def live_server(app, world) -> Iterator[str]:
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("the browser check runs once, on SQLite")
    if CHROMIUM is None:
        pytest.skip("needs chromium (.ci/system-deps installs it)")
    pytest.importorskip("playwright.sync_api")
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def browser_page(browser, live_server):
    """A page signed in as staff, in the one Chromium the whole session shares (two Playwright instances
    cannot run in one thread)."""
    context = browser.new_context(viewport={"width": 1100, "height": 420})
    page = context.new_page()
    page.goto(f"{live_server}/login")
    page.fill("input[name=username]", "staff")
    page.fill("input[name=password]", "pw-staff")
    page.click("form:not(.inline) button")
    page.wait_for_url(f"{live_server}/")
    yield page, live_server
    context.close()


def test_browser_swaps_in_new_rows_keeping_filters_and_scroll(app, client, browser_page):
    page, base = browser_page
    url = f"{base}/jobs?assignee=U-lineman&per_page=50"
    page.goto(url)
    page.evaluate("window.scrollTo(0, 120)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    lineman = synced(app, client, "lineman")
    lineman.push(lineman.status("J-outage", "en_route"))
    run(
        app,
        lambda: office.create_job(
            customer_id="C6",
            premise_id="P6",
            job_type="outage",
            summary="Fresh",
            assigned_to="U-lineman",
            job_id="J-new",
        ),
    )
    run(app, lambda: office.assign_job(db.session.get(Job, "J-other"), "U-lineman2"))  # not for this filter
    page.evaluate("window.FieldSyncLive.refresh()")
    assert page.locator('tr[data-live-key="J-new"]').get_attribute("class").split().count("live-new") == 1
    outage = page.locator('tr[data-live-key="J-outage"]')
    assert "live-changed" in outage.get_attribute("class") and "En route" in outage.inner_text()
    assert "live-new" not in (page.locator('tr[data-live-key="J-repair"]').get_attribute("class") or "")
    assert page.locator('tr[data-live-key="J-other"]').count() == 0
    assert page.url == url and page.evaluate("window.scrollY") == scrolled
    assert "1 new" in page.locator(".live-banner").inner_text()


def test_browser_waits_while_the_user_is_filling_in_a_form(app, client, browser_page):
    page, base = browser_page
    _, ids, _, _ = make_conflicts(app, client)
    page.goto(f"{base}/conflicts")
    page.click(f"#conflict-{ids['concurrent_edit']} details.review summary")
    page.fill(f"#conflict-{ids['concurrent_edit']} textarea", "checking with the customer")
    lineman = synced(app, client, "lineman2")
    run(app, lambda: office.cancel_job(db.session.get(Job, "J-other"), actor_id="U-staff"))
    lineman.push(lineman.status("J-other", "on_site"))
    page.evaluate("window.FieldSyncLive.refresh()")
    assert page.locator("tr[data-live-key]").count() == 2  # not swapped: the note is still being typed
    assert page.input_value(f"#conflict-{ids['concurrent_edit']} textarea") == "checking with the customer"
    banner = page.locator(".live-banner")
    assert "New data" in banner.inner_text()
    banner.locator("button").click()
    assert page.locator("tr[data-live-key]").count() == 3
    assert page.locator("tr.live-new").count() == 1
