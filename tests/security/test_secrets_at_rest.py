"""Secrets at rest: passwords, enrolment codes, device tokens and staff API tokens are kept only as hashes,
and never reach the database, the session cookie or the log in plaintext.

Each test hands out every kind of secret through the paths people use (the admin pages, the enrolment API,
the sign-in form), uses them, and then looks everywhere: every column of every table in the database
(found by inspecting it, so a table added later is scanned too), the decoded session cookie, and every log
record at DEBUG, SQLAlchemy's statements and parameters included.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from server.extensions import db
from server.models import User
from server.services import enrollment, users
from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.server.world import Handheld, World, build_world
from tests.web.conftest import sign_in

SECRET_ON_PAGE = re.compile(r'<code id="secret">([^<]+)</code>')
STAFF_PASSWORD = "Correct-Horse-Battery-7"
# werkzeug's slow key-derivation functions, and the least work each must be asked for
MIN_SCRYPT_N = 2**14
MIN_PBKDF2_ITERATIONS = 600_000


@dataclass
class Handed:
    """Every plaintext secret handed out, in every form it could be stored in."""

    secrets: set[str] = field(default_factory=set)

    def password(self, password: str) -> None:
        # an unsalted fast hash of a password is as good as the password: it must not be stored either
        self.secrets |= {password, hashlib.sha256(password.encode()).hexdigest()}

    def code(self, code: str) -> None:
        plain = enrollment.normalise_code(code)
        self.secrets |= {code, plain, plain.lower()}

    def token(self, token: str) -> None:
        self.secrets |= {token, token.split(".", 1)[1]}  # with and without its fs1./fsk. prefix

    def found_in(self, text: str) -> list[str]:
        return sorted(secret for secret in self.secrets if secret in text)


def _secret_page(response: Any) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    match = SECRET_ON_PAGE.search(response.get_data(as_text=True))
    assert match
    return match.group(1)


def _enrol(client: FlaskClient, code: str, user_id: str) -> Handheld:
    response = client.post("/api/v1/devices/enroll", json={"code": code, "device_name": "pda"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return Handheld(client, body["device_id"], body["token"], user_id)


def _hand_out_and_use_everything(app: Flask, client: FlaskClient, world: World) -> Handed:
    """Passwords (sign-in form, admin form, service), enrolment codes (admin page, service; one spent, one
    not), device tokens (enrolment API) and API tokens (admin page), each used the way it is meant to be."""
    handed = Handed()
    for username in ("staff", "admin"):
        handed.password(f"pw-{username}")
    admin_csrf = sign_in(client, "admin")
    form = {"username": "clerk", "display_name": "Clerk", "role": "staff", "csrf_token": admin_csrf}
    response = client.post("/admin/users", data={**form, "password": STAFF_PASSWORD, "password_repeat": STAFF_PASSWORD})
    assert response.status_code == 302
    handed.password(STAFF_PASSWORD)
    with app.app_context():
        users.create_user("clerk2", "admin", "Clerk Two", password="Another-Long-Secret-9")
        db.session.commit()
    handed.password("Another-Long-Secret-9")
    clerk = app.test_client()
    sign_in(clerk, "clerk", STAFF_PASSWORD)

    spent = _secret_page(
        client.post(f"/admin/users/{world.users['lineman']}/enrollment-code", data={"csrf_token": admin_csrf})
    )
    unspent = _secret_page(
        client.post(f"/admin/users/{world.users['reader']}/enrollment-code", data={"csrf_token": admin_csrf})
    )
    with app.app_context():
        by_service = enrollment.issue_code(db.session.get(User, world.users["reader2"]), 24)
        db.session.commit()
    for code in (spent, unspent, by_service):
        handed.code(code)
    lineman = _enrol(app.test_client(), spent, world.users["lineman"])
    reader2 = _enrol(app.test_client(), by_service, world.users["reader2"])
    for handheld in (lineman, reader2):
        handed.token(handheld.token)
    assert lineman.hello().status_code == 200
    assert lineman.push(lineman.note("J-outage", "on my way")).status_code == 200
    lineman.pull_all()
    assert reader2.push(reader2.reading("M5", 1300)).status_code == 200

    api_token = _secret_page(
        client.post(
            "/admin/tokens", data={"csrf_token": admin_csrf, "user_id": world.users["staff"], "name": "billing"}
        )
    )
    handed.token(api_token)
    api = {"Authorization": f"Bearer {api_token}"}
    assert app.test_client().get("/api/v1/staff/jobs", headers=api).status_code == 200
    return handed


def _every_value(app: Flask) -> dict[str, list[str]]:
    """Every value of every column of every table the database holds (reflected, not the models), as text."""
    values: dict[str, list[str]] = {}
    with app.app_context():
        meta = sa.MetaData()
        meta.reflect(bind=db.engine)
        with db.engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(sa.select(table)).mappings():
                    for column, value in row.items():
                        text = value if isinstance(value, str) else json.dumps(value, default=str)
                        values.setdefault(f"{table.name}.{column}", []).append(text)
    return values


@dataclass(frozen=True)
class HandedOut:
    app: Flask
    admin: FlaskClient  # the administrator's browser that handed the codes and tokens out
    handed: Handed


@pytest.fixture(scope="module")
def handed_out(shared_app: Flask) -> HandedOut:
    """One round of handing out and using every secret per backend, for the tests that only look."""
    with shared_app.app_context():
        world = build_world()
    admin = shared_app.test_client()
    return HandedOut(shared_app, admin, _hand_out_and_use_everything(shared_app, admin, world))


def test_no_plaintext_secret_is_stored_in_any_column(handed_out: HandedOut) -> None:
    values = _every_value(handed_out.app)
    hashed = {"users.password_hash", "enrollment_codes.code_hash", "devices.token_hash", "api_tokens.token_hash"}
    assert hashed <= set(values), "the scan must reach the columns that hold the hashes"
    for column, texts in values.items():
        for text in texts:
            assert not handed_out.handed.found_in(text), f"{column} holds a secret: {text[:80]}"


def test_token_and_code_hashes_are_digests_not_the_secrets(handed_out: HandedOut) -> None:
    values = _every_value(handed_out.app)
    for column in ("enrollment_codes.code_hash", "devices.token_hash", "api_tokens.token_hash"):
        assert values[column]
        for digest in values[column]:
            assert re.fullmatch(r"[0-9a-f]{64}", digest), (column, digest)
            assert digest not in handed_out.handed.secrets


def test_passwords_are_hashed_with_a_slow_salted_kdf(handed_out: HandedOut) -> None:
    app = handed_out.app
    with app.app_context():
        for username in ("same-1", "same-2"):
            users.create_user(username, "staff", username, password="the same password")
        db.session.commit()
        hashes = dict(db.session.execute(sa.select(User.username, User.password_hash)).all())
        db.session.rollback()
    assert hashes["same-1"] != hashes["same-2"], "salted: one password, two hashes"
    assert len([stored for stored in hashes.values() if stored]) >= 6
    for username, stored in hashes.items():
        if stored is None:
            assert username in ("reader", "reader2", "lineman", "lineman2")  # field users have no password
            continue
        method = stored.split("$", 1)[0].split(":")
        if method[0] == "scrypt":
            assert int(method[1]) >= MIN_SCRYPT_N, stored
        else:
            assert method[:2] == ["pbkdf2", "sha256"] and int(method[2]) >= MIN_PBKDF2_ITERATIONS, stored


def test_the_session_cookie_never_carries_a_secret(handed_out: HandedOut) -> None:
    """Codes and tokens are shown once on a page, never put in the session (flash messages included)."""
    app = handed_out.app
    cookie = handed_out.admin.get_cookie("session")
    assert cookie is not None
    session = app.session_interface.get_signing_serializer(app).loads(cookie.value)  # type: ignore[attr-defined]
    assert "_user_id" in session  # it is the admin's session
    assert not handed_out.handed.found_in(json.dumps(session, default=str))


def test_no_secret_reaches_the_log(app, client, world, caplog):
    """Everything logged while secrets are handed out and used, failed attempts included: every logger at
    DEBUG, and SQLAlchemy's statements with their parameters (as when someone debugs a production issue)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    handed = _hand_out_and_use_everything(app, client, world)
    near_miss = STAFF_PASSWORD + "!"  # a typo of a real password says much about it
    handed.password(near_miss)
    browser = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").get_data(as_text=True))
    assert token
    response = browser.post("/login", data={"username": "clerk", "password": near_miss, "csrf_token": token.group(1)})
    assert response.status_code == 401
    wrong = {"Authorization": "Bearer fs1." + "x" * 43, PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    assert app.test_client().get("/api/v1/sync/hello", headers=wrong).status_code == 401
    assert caplog.records, "the test must see the log it checks"
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    assert not handed.found_in(logged)
