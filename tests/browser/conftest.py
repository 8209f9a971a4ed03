"""Browser tests: the service-centre pages in a real headless Chromium, against a real server.

How it works
- `live_site` (session scope): one gunicorn server on a free loopback port over a fresh SQLite database
  seeded with the demo data (`init-db`, `seed-demo --customers 300 --jobs 30`, as tests/e2e does through
  `start_server`). All browser tests share it, so a test must not depend on data another test changes:
  create what you need (a user, a job) or pick records by what you look for, not by position.
- `browser` (session scope): Debian's Chromium (/usr/bin/chromium, installed by .ci/system-deps) driven
  by the Python `playwright` package, started with the flags in shared/NOTES.md. Playwright gives every
  launch a fresh, empty user-data directory. Never run `playwright install` (it downloads a browser).
- `page`: a new browser context signed in as the demo administrator (`admin`, whose password the demo
  keeps in the instance folder's demo-credentials.txt), English, 1366x900. Each test gets its own
  cookies. The sign-in happens once per session and is reused (the login form is rate-limited).
  `anonymous_page` is a fresh context that is not signed in. `live_site.url` is the server's base URL.
- `screenshot(page, name)` saves a full-page PNG to tests/output/screenshots/browser-<name>.png, to look
  at when a page changes (nothing compares them automatically).

If Chromium is missing or cannot start, every browser test FAILS (CI must not pass without them);
`FIELDSYNC_SKIP_BROWSER=1` skips them explicitly. They carry the `browser` marker: `pytest -m browser`
runs only them, `-m "not browser"` everything else.

Adding tests for a page (jobs, readings, KPIs, analysis, conflicts ...)
- One module per page, tests/browser/test_<page>.py, using the `page` fixture:

      from playwright.sync_api import expect
      from tests.browser.conftest import screenshot

      def test_jobs_list_filters_by_status(page, live_site):
          page.goto(f"{live_site.url}/jobs")
          page.get_by_label("Status").select_option("completed")
          page.get_by_role("button", name="Filter").click()
          expect(page.locator("table tbody tr").first).to_contain_text("Completed")
          screenshot(page, "jobs-completed")

- Prefer what a person sees: get_by_role / get_by_label / get_by_text, and `expect(...)` (it waits);
  use data-* attributes for rows (the admin pages mark rows with data-device-id, data-username).
- Use `requests` (or `live_site.flask(...)`, the administration commands) to set up data through the
  API the handhelds use, as tests/browser/test_admin.py does; never write to the database directly.
- Keep each test to a few page loads: the whole browser suite should stay under about two minutes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer, start_server

CHROMIUM = Path(os.environ.get("FIELDSYNC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"
VIEWPORT = {"width": 1366, "height": 900}
TIMEOUT_MS = 15_000
SKIP = os.environ.get("FIELDSYNC_SKIP_BROWSER") == "1"
HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (tests/browser)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            if SKIP:
                item.add_marker(pytest.mark.skip(reason="FIELDSYNC_SKIP_BROWSER=1"))


@pytest.fixture(scope="session")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(tmp_path_factory.mktemp("browser-site"), "sqlite") as server:
        yield server


def admin_password(server: LiveServer) -> str:
    """The demo admin's password, as server/demo.py keeps it in the instance folder."""
    return (Path(server.env["FIELDSYNC_INSTANCE_PATH"]) / "demo-credentials.txt").read_text().strip()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium. Fails (never skips) when it is missing or cannot start."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `bash .ci/system-deps` (Debian package chromium), "
            "or set FIELDSYNC_SKIP_BROWSER=1 to skip the browser tests",
            pytrace=False,
        )
    from playwright.sync_api import Error, sync_playwright

    playwright = sync_playwright().start()
    try:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Error as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}", pytrace=False)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="session")
def admin_state(browser: Any, live_site: LiveServer) -> dict[str, Any]:
    """Cookies of one admin sign-in through the form, reused by every `page`."""
    context = browser.new_context(base_url=live_site.url, locale="en-US")
    try:
        page = context.new_page()
        sign_in(page, live_site.url, "admin", admin_password(live_site))
        return context.storage_state()
    finally:
        context.close()


def sign_in(page: Any, base_url: str, username: str, password: str) -> None:
    """Sign in through the login form and wait for the start page."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(base_url)}/$"))


def _context(browser: Any, live_site: LiveServer, **options: Any) -> Any:
    context = browser.new_context(base_url=live_site.url, locale="en-US", viewport=VIEWPORT, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def page(browser: Any, live_site: LiveServer, admin_state: dict[str, Any]) -> Iterator[Any]:
    """A page signed in as the demo administrator, in a context of its own."""
    context = _context(browser, live_site, storage_state=admin_state)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def anonymous_page(browser: Any, live_site: LiveServer) -> Iterator[Any]:
    """A page in a fresh context: not signed in."""
    context = _context(browser, live_site)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot to tests/output/screenshots/browser-<name>.png; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"browser-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
