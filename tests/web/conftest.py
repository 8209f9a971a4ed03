"""Fixtures for the service-centre pages and staff API: the server test fixtures (an app on SQLite and,
with FIELDSYNC_TEST_PG_URL, PostgreSQL; the small world) and a signed-in staff browser session."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from tests.server.conftest import app, client, database_url, runner, world  # noqa: F401 - shared fixtures

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(browser: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a page's forms carry (the session's token)."""
    match = CSRF.search(browser.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(browser: FlaskClient, username: str = "staff", password: str | None = None) -> str:
    """Sign in through the login form (world users have the password "pw-<username>"); returns the
    session's CSRF token for posting forms."""
    token = csrf_token(browser)
    response = browser.post(
        "/login", data={"username": username, "password": password or f"pw-{username}", "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return csrf_token(browser, "/")


@pytest.fixture
def staff(client, world) -> str:
    """A client signed in as staff; the value is the CSRF token for forms."""
    return sign_in(client, "staff")


@pytest.fixture
def admin(client, world) -> str:
    return sign_in(client, "admin")
