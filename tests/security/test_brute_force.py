"""Guessing secrets online: enrolment codes and passwords are rate-limited; bearer tokens need not be.

The limits are fixed windows counted in the database (server/services/ratelimit.py), so every worker and
host shares them. A test ends a window by moving its start back, instead of waiting for it.

What tests/server/test_errors.py already shows (the enrolment limit answers 429 with Retry-After, a real
code waits too, another address is not affected) is not repeated; these tests add who "the address" is
(X-Forwarded-For is believed only from a trusted proxy), the sign-in limits, and the windows' end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from server import create_app
from server.cli import init_database
from server.extensions import db
from server.models import ApiToken, EnrollmentCode, RateLimitWindow, User
from server.services import apitokens, enrollment
from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.server.helpers import assert_error, device
from tests.server.world import World, build_world
from tests.web.conftest import csrf_token

ENROLL = "/api/v1/devices/enroll"
GUESS = {"code": "ABCD-EFGH-JKLM", "device_name": "guess"}


def _issue(app: Flask, username: str) -> str:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one()
        code = enrollment.issue_code(user, 1)
        db.session.commit()
    return code


def _code_used(app: Flask) -> bool:
    with app.app_context():
        used = db.session.execute(sa.select(EnrollmentCode.used_at)).scalar_one() is not None
        db.session.rollback()
    return used


def _end_windows(app: Flask, seconds: int) -> None:
    """Every rate-limit window started `seconds` ago: the next attempt opens a new one."""
    with app.app_context():
        for row in db.session.execute(sa.select(RateLimitWindow)).scalars():
            row.window_start -= dt.timedelta(seconds=seconds)
        db.session.commit()


def _assert_limited(response, window: int) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)[:300]
    assert 0 < int(response.headers["Retry-After"]) <= window


# --- enrolment codes ------------------------------------------------------------------------------------


def test_enrolment_guesses_are_limited_per_address_whatever_x_forwarded_for_claims(app, client, world):
    """No proxy is trusted by default (TRUSTED_PROXIES = 0): a guesser who rotates X-Forwarded-For is still
    one address. While limited, even the real code waits, and stays unspent; a new window lets it in."""
    app.config["ENROLL_ATTEMPTS_PER_WINDOW"] = 3
    window = app.config["ENROLL_WINDOW_SECONDS"]
    code = _issue(app, "reader")
    me = {"REMOTE_ADDR": "198.51.100.7"}
    for i in range(3):
        response = client.post(ENROLL, json=GUESS, environ_base=me, headers={"X-Forwarded-For": f"192.0.2.{i}"})
        assert_error(response, 401, "invalid_enrollment_code")
    forged = client.post(ENROLL, json=GUESS, environ_base=me, headers={"X-Forwarded-For": "192.0.2.99"})
    _assert_limited(forged, window)
    assert_error(forged, 429, "rate_limited")
    _assert_limited(client.post(ENROLL, json={"code": code, "device_name": "pda"}, environ_base=me), window)
    assert not _code_used(app)
    _end_windows(app, window)
    assert client.post(ENROLL, json={"code": code, "device_name": "pda"}, environ_base=me).status_code == 201


@pytest.fixture
def proxied_app(database_url: str, tmp_path) -> Iterator[Flask]:
    """The app as deployed behind one load balancer (FIELDSYNC_TRUSTED_PROXIES=1), with the world."""
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "test", "TRUSTED_PROXIES": 1}
    proxied = create_app(config, instance_path=str(tmp_path / "proxied"))
    with proxied.app_context():
        init_database()
        build_world()
    yield proxied
    with proxied.app_context():
        db.session.remove()
        db.engine.dispose()


def test_behind_a_trusted_proxy_each_client_has_its_own_limit_and_cannot_forge_its_address(proxied_app):
    """Behind the balancer every request comes from its address; the limit follows the client address it
    appends to X-Forwarded-For. A client's own X-Forwarded-For entry (in front of the balancer's) is ignored."""
    proxied_app.config["ENROLL_ATTEMPTS_PER_WINDOW"] = 3
    client = proxied_app.test_client()
    balancer = {"REMOTE_ADDR": "10.0.0.2"}

    def via_balancer(client_address: str, body: dict, forged: str = "") -> object:
        chain = f"{forged}, {client_address}" if forged else client_address
        return client.post(ENROLL, json=body, environ_base=balancer, headers={"X-Forwarded-For": chain})

    for _ in range(3):
        assert via_balancer("203.0.113.5", GUESS).status_code == 401
    _assert_limited(via_balancer("203.0.113.5", GUESS), proxied_app.config["ENROLL_WINDOW_SECONDS"])
    assert via_balancer("203.0.113.5", GUESS, forged="192.0.2.1").status_code == 429
    assert via_balancer("203.0.113.6", {"code": _issue(proxied_app, "reader"), "device_name": "pda"}).status_code == 201


# --- passwords ------------------------------------------------------------------------------------------


def _sign_in(client: FlaskClient, username: str, password: str, address: str):
    token = csrf_token(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


def _signed_in(client: FlaskClient, address: str) -> bool:
    return client.get("/", environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_guessing_one_accounts_password_from_one_address_is_limited(app, client, world):
    app.config.update(LOGIN_ATTEMPTS_PER_WINDOW=5, LOGIN_ATTEMPTS_PER_USER_WINDOW=100)
    window = app.config["LOGIN_WINDOW_SECONDS"]
    for i in range(5):
        assert _sign_in(client, "staff", f"guess-{i}", "198.51.100.7").status_code == 401
    right = _sign_in(client, "staff", "pw-staff", "198.51.100.7")
    _assert_limited(right, window)
    assert "Too many attempts" in right.get_data(as_text=True)
    assert not _signed_in(client, "198.51.100.7")
    _end_windows(app, window)
    assert _sign_in(client, "staff", "pw-staff", "198.51.100.7").status_code == 302
    assert _signed_in(client, "198.51.100.7")


def test_spraying_passwords_over_many_accounts_from_one_address_is_limited(app, client, world):
    app.config.update(LOGIN_ATTEMPTS_PER_WINDOW=5, LOGIN_ATTEMPTS_PER_USER_WINDOW=100)
    for username in ("staff", "admin", "reader", "ghost", "root"):
        assert _sign_in(client, username, "Summer2024!", "198.51.100.7").status_code == 401
    _assert_limited(_sign_in(client, "admin", "pw-admin", "198.51.100.7"), app.config["LOGIN_WINDOW_SECONDS"])
    assert _sign_in(client, "admin", "pw-admin", "198.51.100.8").status_code == 302  # the limit is this address's


def test_guessing_one_accounts_password_from_many_addresses_is_limited(app, client, world):
    """A botnet gets one guess per address: the per-account limit (LOGIN_ATTEMPTS_PER_USER_WINDOW) stops it,
    and holds the account shut until the window ends, right password or not. Other accounts are unaffected."""
    app.config.update(LOGIN_ATTEMPTS_PER_WINDOW=20, LOGIN_ATTEMPTS_PER_USER_WINDOW=5)
    window = app.config["LOGIN_WINDOW_SECONDS"]
    for i in range(5):
        assert _sign_in(client, "admin", f"guess-{i}", f"203.0.113.{i}").status_code == 401
    _assert_limited(_sign_in(client, "admin", "pw-admin", "203.0.113.200"), window)
    assert not _signed_in(client, "203.0.113.200")
    staff = client.application.test_client()
    assert _sign_in(staff, "staff", "pw-staff", "203.0.113.201").status_code == 302
    _end_windows(app, window)
    assert _sign_in(client, "admin", "pw-admin", "203.0.113.200").status_code == 302


def test_any_user_name_counts_against_a_bounded_key(app, client, world):
    """The per-account key is a hash: a user name of any length or alphabet (a NUL, which PostgreSQL text
    cannot hold, included) is a failed sign-in, not a 500 from a key longer than its column."""
    for username in ("x" * 5000, "名字' OR 1=1 --", "staff\x00"):
        assert _sign_in(client, username, "pw-staff", "198.51.100.7").status_code == 401
    with app.app_context():
        keys = db.session.execute(sa.select(RateLimitWindow.key)).scalars().all()
        db.session.rollback()
    assert keys and all(len(key) <= 120 for key in keys)


# --- bearer tokens ---------------------------------------------------------------------------------------


def test_wrong_bearer_tokens_are_refused_but_not_rate_limited(app, client, world: World):
    """Decision: no rate limit on invalid bearer tokens (device tokens on the sync API, staff API tokens).

    - Guessing is hopeless: both are 256-bit random secrets (secrets.token_urlsafe(32)), unlike a 60-bit
      enrolment code or a password chosen by a person, so a limit would protect nothing.
    - A refused token costs one indexed lookup of its SHA-256 and writes nothing; a limit would add a write
      per request to every sync call.
    - Handhelds of a depot share one carrier address: a limit per address would let one broken or hostile
      handheld lock all its neighbours out of syncing.
    Floods are the load balancer's business. This test pins the decision: many wrong tokens from one address
    are each refused with 401, and the right tokens from the same address still work.
    """
    handheld = device(app, client, "lineman")
    with app.app_context():
        row, api_token = apitokens.issue_token(db.session.get(User, world.users["staff"]), "integration")
        db.session.commit()
        assert db.session.get(ApiToken, row.id) is not None
    me = {"REMOTE_ADDR": "198.51.100.7"}
    sync_headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    for i in range(40):
        wrong_device = {**sync_headers, "Authorization": f"Bearer fs1.guess-{i:040d}"}
        assert_error(client.get("/api/v1/sync/hello", headers=wrong_device, environ_base=me), 401, "unauthorized")
        wrong_api = {"Authorization": f"Bearer fsk.guess-{i:040d}"}
        assert_error(client.get("/api/v1/staff/jobs", headers=wrong_api, environ_base=me), 401, "unauthorized")
    assert client.get("/api/v1/sync/hello", headers=handheld.headers, environ_base=me).status_code == 200
    right_api = {"Authorization": f"Bearer {api_token}"}
    assert client.get("/api/v1/staff/jobs", headers=right_api, environ_base=me).status_code == 200
    with app.app_context():
        keys = db.session.execute(sa.select(RateLimitWindow.key)).scalars().all()
        db.session.rollback()
    assert [key for key in keys if not key.startswith("enroll:")] == []  # the handheld's enrolment only
