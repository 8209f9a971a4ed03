"""Enrolment codes, device tokens and who may push or pull what (DESIGN.md invariant 6)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Device, EnrollmentCode, Job, JobEvent, MeterReading, User
from server.services import enrollment
from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.server.helpers import assert_error, device, rejected, table_dump

ENROLL = "/api/v1/devices/enroll"
SYNC_CALLS = ("hello", "push", "pull")


def _issue(app, username: str, hours: int = 24) -> str:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one()
        code = enrollment.issue_code(user, hours)
        db.session.commit()
    return code


def _enroll(client, code: str, name: str = "pda"):
    return client.post(ENROLL, json={"code": code, "device_name": name})


def _devices(app) -> int:
    with app.app_context():
        return db.session.execute(sa.select(sa.func.count()).select_from(Device)).scalar_one()


def _call(client, what: str, headers: dict[str, str]):
    headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION), **headers}
    if what == "hello":
        return client.get("/api/v1/sync/hello", headers=headers)
    if what == "pull":
        return client.get("/api/v1/sync/pull", headers=headers)
    body = {
        "protocol": PROTOCOL_VERSION,
        "batch_id": "b1",
        "changes": [
            {
                "change_id": "c1",
                "entity": "job_event",
                "entity_id": "E-x",
                "hlc": "1700000000000-0000-dev",
                "data": {"job_id": "J-outage", "kind": "note", "text": "x", "recorded_at": "2024-01-01T00:00:00Z"},
            }
        ],
    }
    return client.post("/api/v1/sync/push", json=body, headers=headers)


# --- enrolment codes ------------------------------------------------------------------------------


def test_enrolment_returns_device_and_token(app, client, world):
    code = _issue(app, "reader")
    response = _enroll(client, code)
    assert response.status_code == 201
    body = response.get_json()
    assert body["user"] == {"id": world.users["reader"], "name": "Reader", "role": "meter_reader"}
    assert body["token"] and body["device_id"]
    assert response.headers["Cache-Control"] == "no-store"
    hello = client.get(
        "/api/v1/sync/hello",
        headers={"Authorization": f"Bearer {body['token']}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
    )
    assert hello.status_code == 200
    assert hello.get_json()["device"]["id"] == body["device_id"]


def test_enrolment_code_typed_without_dashes_in_lowercase_is_accepted(app, client, world):
    code = _issue(app, "reader")
    assert _enroll(client, code.replace("-", "").lower()).status_code == 201


def test_enrolment_code_is_single_use(app, client, world):
    code = _issue(app, "reader")
    assert _enroll(client, code).status_code == 201
    assert_error(_enroll(client, code, "second"), 401, "invalid_enrollment_code")
    assert _devices(app) == 1


def test_expired_enrolment_code_is_refused(app, client, world):
    code = _issue(app, "reader")
    with app.app_context():
        row = db.session.execute(sa.select(EnrollmentCode)).scalar_one()
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        db.session.commit()
    assert_error(_enroll(client, code), 401, "invalid_enrollment_code")
    assert _devices(app) == 0


def test_unknown_enrolment_code_is_refused(app, client, world):
    _issue(app, "reader")
    assert_error(_enroll(client, "ABCD-EFGH-JKLM"), 401, "invalid_enrollment_code")
    assert _devices(app) == 0


def test_code_of_a_user_deactivated_after_issue_is_refused(app, client, world):
    code = _issue(app, "reader")
    with app.app_context():
        db.session.get(User, world.users["reader"]).active = False
        db.session.commit()
    assert_error(_enroll(client, code), 401, "invalid_enrollment_code")
    assert _devices(app) == 0


def test_codes_and_tokens_are_stored_only_as_hashes(app, client, world):
    code = _issue(app, "lineman")
    response = _enroll(client, code)
    token = response.get_json()["token"]
    everything = repr(table_dump(app))
    for secret in (code, code.replace("-", ""), token):
        assert secret not in everything
    with app.app_context():
        stored = db.session.execute(sa.select(Device.token_hash)).scalar_one()
        code_hash = db.session.execute(sa.select(EnrollmentCode.code_hash)).scalar_one()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert code_hash == hashlib.sha256(code.replace("-", "").encode()).hexdigest()


# --- tokens ---------------------------------------------------------------------------------------


def test_revocation_takes_effect_on_the_next_request(app, client, world):
    handheld = device(app, client, "reader")
    assert handheld.hello().status_code == 200
    with app.app_context():
        enrollment.revoke(db.session.get(Device, handheld.device_id))
        db.session.commit()
    assert_error(handheld.hello(), 401, "unauthorized")
    assert_error(handheld.push(handheld.reading("M1", 1300)), 401, "unauthorized")
    assert_error(client.get("/api/v1/sync/pull", headers=handheld.headers), 401, "unauthorized")
    assert _devices(app) == 1


def test_revoking_one_device_leaves_the_users_other_device_working(app, client, world):
    first = device(app, client, "reader", "first")
    second = device(app, client, "reader", "second")
    with app.app_context():
        enrollment.revoke(db.session.get(Device, first.device_id))
        db.session.commit()
    assert_error(first.hello(), 401, "unauthorized")
    assert second.hello().status_code == 200


def test_deactivated_user_is_refused(app, client, world):
    handheld = device(app, client, "lineman")
    assert handheld.hello().status_code == 200
    with app.app_context():
        db.session.get(User, world.users["lineman"]).active = False
        db.session.commit()
    before = table_dump(app)
    assert_error(handheld.hello(), 401, "unauthorized")
    assert_error(handheld.push(handheld.note(world.jobs["outage"], "still here")), 401, "unauthorized")
    assert table_dump(app) == before


@pytest.mark.parametrize("username", ["staff", "admin"])
def test_office_accounts_devices_cannot_sync(app, client, world, username):
    response = _enroll(client, _issue(app, username))
    assert response.status_code == 201
    token = response.get_json()["token"]
    before = table_dump(app)
    for call in SYNC_CALLS:
        assert_error(_call(client, call, {"Authorization": f"Bearer {token}"}), 403, "forbidden")
    assert table_dump(app) == before


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic cmVhZGVyOnB3",
        "Token {token}",
        "{token}",
        "Bearer fs1.not-a-token-this-server-issued",
        "Bearer {token}x",
    ],
    ids=["missing", "empty", "scheme-only", "scheme-blank", "basic", "other-scheme", "no-scheme", "unknown", "altered"],
)
def test_missing_or_malformed_authorization_is_unauthorized(app, client, world, authorization):
    handheld = device(app, client, "lineman")
    headers = {} if authorization is None else {"Authorization": authorization.format(token=handheld.token)}
    before = table_dump(app)
    for call in SYNC_CALLS:
        assert_error(_call(client, call, headers), 401, "unauthorized")
    assert table_dump(app) == before


def test_bearer_scheme_is_case_insensitive(app, client, world):
    handheld = device(app, client, "lineman")
    response = _call(client, "hello", {"Authorization": f"bearer {handheld.token}"})
    assert response.status_code == 200


# --- authorisation matrix -------------------------------------------------------------------------

USERS = ("reader", "reader2", "lineman", "lineman2")
OWNER = {"M1": "reader", "M5": "reader2", "J-outage": "lineman", "J-other": "lineman2"}
ACTIONS = {
    "reading": ("M1", "M5"),
    "job_edit": ("J-outage", "J-other"),
    "job_status": ("J-outage", "J-other"),
}
MATRIX = [
    (user, action, target, "applied" if OWNER[target] == user else "not_in_scope")
    for user in USERS
    for action, targets in ACTIONS.items()
    for target in targets
]


def _change(handheld, action: str, target: str) -> dict:
    if action == "reading":
        return handheld.reading(target, 1300)
    if action == "job_edit":
        return handheld.change("job", target, {"cause": "tree on line"})
    return handheld.status(target, "en_route")


def _effect(app, action: str, change: dict) -> bool:
    """Whether the change's effect is in the database."""
    with app.app_context():
        if action == "reading":
            return db.session.get(MeterReading, change["entity_id"]) is not None
        if action == "job_edit":
            return db.session.get(Job, change["entity_id"]).cause == "tree on line"
        event = db.session.get(JobEvent, change["entity_id"])
        job = db.session.get(Job, change["data"]["job_id"])
        assert (event is not None) == (job.status == "en_route")
        return event is not None


@pytest.mark.parametrize(
    ("username", "action", "target", "expected"), MATRIX, ids=[f"{u}-{a}-{t}" for u, a, t, _ in MATRIX]
)
def test_authorisation_matrix(app, client, world, username, action, target, expected):
    handheld = device(app, client, username)
    change = _change(handheld, action, target)
    response = handheld.push(change)
    assert response.status_code == 200, response.get_json()
    (result,) = response.get_json()["results"]
    if expected == "applied":
        assert result["status"] == "applied", result
        assert result["error"] is None
    else:
        rejected(result, "not_in_scope")
    assert _effect(app, action, change) is (expected == "applied")


# --- pull scope -----------------------------------------------------------------------------------


JOB_PLACE = {"J-outage": 1, "J-repair": 2, "J-other": 3}  # world.py: job -> its customer and premise


def _expected_scope(app, world, username: str, readings: dict[str, str]) -> dict[str, set[str]]:
    jobs = {"lineman": {"J-outage", "J-repair"}, "lineman2": {"J-other"}}.get(username, set())
    with app.app_context():
        events = set(db.session.execute(sa.select(JobEvent.id).where(JobEvent.job_id.in_(jobs))).scalars())
    if username == "reader":
        places = {1, 2, 3, 4}
        meters, routes = set(world.meters), {"R1"}
    elif username == "reader2":
        places = {5, 6}
        meters, routes = set(world.other_meters), {"R2"}
    else:
        places = {JOB_PLACE[job] for job in jobs}
        meters, routes = set(), set()
    return {
        "route": routes,
        "meter": meters,
        "premise": {f"P{i}" for i in places},
        "customer": {f"C{i}" for i in places},
        "job": jobs,
        "job_event": events,
        "meter_reading": {readings[username]} if username in readings else set(),
        "conflict": set(),
    }


@pytest.mark.parametrize("username", USERS)
def test_pull_never_returns_another_users_records(app, client, world, username):
    handhelds = {name: device(app, client, name, f"pda-{name}") for name in USERS}
    readings = {}
    for name, meter in (("reader", "M1"), ("reader2", "M5")):
        change = handhelds[name].reading(meter, 1300)
        assert handhelds[name].push(change).get_json()["results"][0]["status"] == "applied"
        readings[name] = change["entity_id"]
    for name, job in (("lineman", "J-outage"), ("lineman2", "J-other")):
        result = handhelds[name].push(handhelds[name].note(job, f"note by {name}")).get_json()["results"][0]
        assert result["status"] == "applied"
    records = handhelds[username].pull_all(limit=5)
    got: dict[str, set[str]] = {entity: set() for entity in _expected_scope(app, world, username, readings)}
    for record in records:
        assert record["op"] == "upsert", record
        got[record["entity"]].add(record["id"])
    assert got == _expected_scope(app, world, username, readings)
