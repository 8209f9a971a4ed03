"""Every kind of caller the server meets, set up once on one app (see conftest.py's `env`).

Principals (the columns of the authorisation matrix):

    anonymous                  no credentials at all
    lineman-device             field user A (lineman) on an enrolled handheld: jobs J-outage and J-repair
    reader-device              field user B (meter reader) on an enrolled handheld: route R1 (meters M1-M4)
    revoked-device             a handheld of the lineman that an administrator revoked
    deactivated-user-device    a handheld whose user was deactivated afterwards
    staff-session              service-centre staff signed in to the pages (session cookie)
    admin-session              an administrator signed in
    deactivated-staff-session  the cookie of a staff member deactivated after signing in
    staff-token                a staff API token (fsk....) of the staff member
    admin-token                an API token of the administrator
    revoked-token              a staff API token that was revoked
    deactivated-staff-token    an API token of the deactivated staff member

Every principal also holds a session cookie with a CSRF token (an anonymous session for the bearer-token
principals), so that a form post is refused for who sends it, never for a missing CSRF token.

Besides the world of tests/server/world.py there are records that the matrix may change without
disturbing what the other cases look at: job J-spare (assigned to spare-a or spare-b), field user spare-c
(deactivated and reactivated), field user enrolee (enrolment codes), reader2's handheld and a spare API
token (revoked), and a conflict of spare-a (reviewed). The lineman's, the readers' and lineman2's records
stay as they are, so a pull can be checked record by record.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from server.extensions import db
from server.models import ApiToken, ConflictRecord, Device, User
from server.services import apitokens, enrollment, office, users
from sync_protocol import HLC, PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.server.world import Handheld, World, build_world, enrol
from tests.web.conftest import csrf_token, sign_in

ANONYMOUS = "anonymous"
LINEMAN = "lineman-device"
READER = "reader-device"
REVOKED_DEVICE = "revoked-device"
GONE_DEVICE = "deactivated-user-device"
STAFF = "staff-session"
ADMIN = "admin-session"
GONE_SESSION = "deactivated-staff-session"
STAFF_TOKEN = "staff-token"
ADMIN_TOKEN = "admin-token"
REVOKED_TOKEN = "revoked-token"
GONE_TOKEN = "deactivated-staff-token"

PRINCIPALS = (
    ANONYMOUS,
    LINEMAN,
    READER,
    REVOKED_DEVICE,
    GONE_DEVICE,
    STAFF,
    ADMIN,
    GONE_SESSION,
    STAFF_TOKEN,
    ADMIN_TOKEN,
    REVOKED_TOKEN,
    GONE_TOKEN,
)


@dataclass(frozen=True)
class Principal:
    name: str
    cookie: str  # the session cookie's value
    csrf: str  # the CSRF token that goes with that session
    token: str | None = None  # a bearer token (device or staff API)
    user_id: str | None = None
    device_id: str | None = None


@dataclass
class Env:
    app: Flask
    world: World
    principals: dict[str, Principal]
    users: dict[str, str]  # username -> id, the world's and the spares
    devices: dict[str, str]  # "spare" -> reader2's handheld (revoked by the matrix)
    readings: dict[str, str]  # "reader" / "reader2" -> a reading each pushed on its route
    conflicts: dict[str, int]  # "lineman" / "lineman2" / "spare" -> an open conflict of that user
    tokens: dict[str, str]  # "spare" -> an API token id (revoked by the matrix)
    serial: itertools.count = field(default_factory=itertools.count)

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self.serial)}"

    def call(
        self,
        who: str,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        json: Any = None,
        csrf: str | None = None,
    ) -> TestResponse:
        """One request as `who`, from a fresh client holding only that principal's credentials; a form
        carries the session's CSRF token unless `csrf` names another value ("" leaves it out)."""
        principal = self.principals[who]
        client = self.app.test_client()
        client.set_cookie("session", principal.cookie)
        headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
        if principal.token:
            headers["Authorization"] = f"Bearer {principal.token}"
        data = None
        if form is not None:
            token = principal.csrf if csrf is None else csrf
            data = {**form, **({"csrf_token": token} if token else {})}
        response = client.open(path, method=method, headers=headers, data=data, json=json)
        response.get_data()  # buffered, so the response (a static file's handle) can be closed at once
        response.close()
        return response

    def handheld(self, who: str) -> Handheld:
        """A handheld object for building changes as a device principal."""
        principal = self.principals[who]
        assert principal.token and principal.device_id and principal.user_id
        return Handheld(self.app.test_client(), principal.device_id, principal.token, principal.user_id)


def _session(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def _conflict(job_id: str, user_id: str, device_id: str | None, field: str, loser: str) -> int:
    stamp = dt.datetime.now(dt.UTC)
    ms = int(stamp.timestamp() * 1000)
    row = ConflictRecord(
        kind="concurrent_edit",
        entity="job",
        entity_id=job_id,
        field=field,
        winner="office value",
        winner_hlc=str(HLC(ms, 0, "office")),
        loser=loser,
        loser_hlc=str(HLC(ms - 5000, 0, "dev-x")),
        change_id=f"chg-{job_id}-{user_id}",
        user_id=user_id,
        device_id=device_id,
        created_at=stamp,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def build_env(app: Flask) -> Env:
    """The world, the spares, and one credential of every kind (see the module docstring)."""
    with app.app_context():
        world = build_world()
        ids = dict(world.users)
        for username, role in (
            ("spare-a", "lineman"),
            ("spare-b", "lineman"),
            ("spare-c", "lineman"),
            ("enrolee", "meter_reader"),
            ("gone", "lineman"),
        ):
            ids[username] = users.create_user(username, role, username.title()).id
        ids["former"] = users.create_user("former", "staff", "Former", password="pw-former").id
        office.create_job(
            customer_id="C4",
            premise_id="P4",
            job_type="outage",
            summary="spare job",
            priority=3,
            assigned_to=ids["spare-a"],
            job_id="J-spare",
            number="J-SPARE",
        )
        db.session.commit()

    anonymous_client = app.test_client()
    anonymous_csrf = csrf_token(anonymous_client)
    anonymous = Principal(ANONYMOUS, _session(anonymous_client), anonymous_csrf)

    with app.app_context():
        client = app.test_client()
        lineman = enrol(client, "lineman", "lineman pda")
        reader = enrol(client, "reader", "reader pda")
        reader2 = enrol(client, "reader2", "reader2 pda")
        revoked = enrol(client, "lineman", "lost pda")
        gone = enrol(client, "gone", "gone pda")
    readings = {}
    for name, handheld, meter in (("reader", reader, "M1"), ("reader2", reader2, "M5")):
        change = handheld.reading(meter, 1300)
        assert handheld.push(change).get_json()["results"][0]["status"] == "applied"
        readings[name] = change["entity_id"]

    sessions = {}
    for name, username in ((STAFF, "staff"), (ADMIN, "admin"), (GONE_SESSION, "former")):
        browser = app.test_client()
        csrf = sign_in(browser, username)
        sessions[name] = Principal(name, _session(browser), csrf, user_id=ids[username])

    with app.app_context():
        tokens: dict[str, tuple[ApiToken, str]] = {
            name: apitokens.issue_token(db.session.get(User, ids[owner]), name)
            for name, owner in (
                ("staff", "staff"),
                ("admin", "admin"),
                ("revoked", "staff"),
                ("former", "former"),
                ("spare", "admin"),
            )
        }
        apitokens.revoke(tokens["revoked"][0])
        enrollment.revoke(db.session.get(Device, revoked.device_id))
        db.session.get(User, ids["gone"]).active = False
        db.session.get(User, ids["former"]).active = False
        conflicts = {
            "lineman": _conflict("J-outage", ids["lineman"], lineman.device_id, "cause", "lineman's cause"),
            "lineman2": _conflict("J-other", ids["lineman2"], None, "cause", "lineman2's cause"),
            "spare": _conflict("J-spare", ids["spare-a"], None, "cause", "spare's cause"),
        }
        db.session.commit()
        token_ids = {name: row.id for name, (row, _) in tokens.items()}
        token_values = {name: value for name, (_, value) in tokens.items()}

    def device(name: str, handheld: Handheld) -> Principal:
        return Principal(name, anonymous.cookie, anonymous.csrf, handheld.token, handheld.user_id, handheld.device_id)

    def api(name: str, token: str) -> Principal:
        return Principal(name, anonymous.cookie, anonymous.csrf, token)

    principals = {
        ANONYMOUS: anonymous,
        LINEMAN: device(LINEMAN, lineman),
        READER: device(READER, reader),
        REVOKED_DEVICE: device(REVOKED_DEVICE, revoked),
        GONE_DEVICE: device(GONE_DEVICE, gone),
        **sessions,
        STAFF_TOKEN: api(STAFF_TOKEN, token_values["staff"]),
        ADMIN_TOKEN: api(ADMIN_TOKEN, token_values["admin"]),
        REVOKED_TOKEN: api(REVOKED_TOKEN, token_values["revoked"]),
        GONE_TOKEN: api(GONE_TOKEN, token_values["former"]),
    }
    assert set(principals) == set(PRINCIPALS)
    return Env(
        app=app,
        world=world,
        principals=principals,
        users=ids,
        devices={"spare": reader2.device_id},
        readings=readings,
        conflicts=conflicts,
        tokens={"spare": token_ids["spare"]},
    )
