"""The authorisation matrix: every route of the app x every kind of caller, with the outcome each must get.

TABLE has one row per route and method; a route that takes the id of a user's record has a row for a record
of field user A or B and one for another user's (staff must see both; a handheld neither, not even its own,
outside the sync API). `test_table_names_every_route` fails when the app has a
route the table does not classify, or the table names one the app no longer has: a new endpoint cannot
ship without someone deciding who may call it. The principals are described in tests/security/env.py.

Outcomes:
    "200", "201", "400", "401", "403", "409", "422"   that status (a JSON API's 401/403 in the error envelope)
    "login"      302 to the sign-in page (the pages ignore bearer tokens: a device or API token is nobody there)
    "302"        a redirect anywhere but the sign-in page (the action ran)
    "applied"    a push whose change was applied          } 200 either way: the push is judged
    "not_in_scope"  a push whose change was refused       } change by change (DESIGN.md invariant 6)
Where a principal is let in, a row's `check` looks at the content: a device pulls its own user's records
and nothing else, staff see everyone's. Where a principal is refused a request that could write, the whole
database is compared before and after.

The staff API also takes a signed-in staff session (the pages' live updates use it); it only answers GETs,
so a cross-site form cannot act through it. Case ids read `GET /jobs/<job_id> [lineman's] x lineman-device
-> login` (ASCII: pytest escapes other characters in ids).

Reading a row: `page()` (staff pages: staff and admin sessions in, everyone else to the sign-in page),
`admin_page()` (admin in, staff 403, the rest to sign-in), `staff_api()` (staff and admin sessions and live
API tokens in, the rest 401), `sync()` (the two live handhelds in, the rest 401), `everyone()` (the same for
all). Forms carry a valid CSRF token (the CSRF check has its own test in test_escaping_and_csrf.py).

Routes without authentication, and why (PUBLIC below):
    GET  /api/v1/health          load balancers and monitors (DESIGN.md: the only unauthenticated API)
    POST /api/v1/devices/enroll  the one-time code is the credential; rate-limited per address
    GET, POST /login             the way in; POST is rate-limited (test_brute_force.py)
    POST /logout                 ends whatever session the cookie holds; nothing to protect
    POST /language               a display preference kept in the caller's own session
    GET  /static/<path>          the pages' stylesheet and script, no data
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.test import TestResponse

from server.extensions import db
from server.models import Job, JobEvent, MeterReading, User
from server.services import enrollment
from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.security.env import (
    ADMIN,
    ADMIN_TOKEN,
    ANONYMOUS,
    LINEMAN,
    PRINCIPALS,
    READER,
    STAFF,
    STAFF_TOKEN,
    Env,
)
from tests.server.helpers import assert_error, table_dump

# --- expected outcomes by kind of route -------------------------------------------------------------------


def everyone(outcome: str) -> dict[str, str]:
    return dict.fromkeys(PRINCIPALS, outcome)


def sync(lineman: str = "200", reader: str = "200") -> dict[str, str]:
    """The sync API: only the two live handhelds (revoked, deactivated, sessions and API tokens: 401)."""
    return {**everyone("401"), LINEMAN: lineman, READER: reader}


def staff_api(outcome: str = "200") -> dict[str, str]:
    """The staff API: live staff/admin API tokens and signed-in staff sessions (the pages' live updates)."""
    return {**everyone("401"), **dict.fromkeys((STAFF, ADMIN, STAFF_TOKEN, ADMIN_TOKEN), outcome)}


def page(outcome: str = "200", admin: str | None = None) -> dict[str, str]:
    """A staff page: signed-in staff and admins; everyone else (bearer tokens included) to the sign-in page."""
    return {**everyone("login"), STAFF: outcome, ADMIN: admin or outcome}


def admin_page(outcome: str = "200") -> dict[str, str]:
    return page("403", admin=outcome)


def signed_out(outcome: str, signed_in: str) -> dict[str, str]:
    """A public page that sends a signed-in session elsewhere."""
    return {**everyone(outcome), STAFF: signed_in, ADMIN: signed_in}


# --- content checks -----------------------------------------------------------------------------------------

Check = Callable[[TestResponse, Env, str], None]


def contains(*needles: Callable[[Env], str]) -> Check:
    def check(response: TestResponse, env: Env, who: str) -> None:
        text = response.get_data(as_text=True)
        for needle in needles:
            assert needle(env) in text, needle(env)

    return check


def items(key: str, *expected: Callable[[Env], Any]) -> Check:
    """A staff API list holds these records (staff see every user's)."""

    def check(response: TestResponse, env: Env, who: str) -> None:
        got = {item[key] for item in response.get_json()["items"]}
        assert {value(env) for value in expected} <= got, got

    return check


def field(key: str, expected: Callable[[Env], Any]) -> Check:
    def check(response: TestResponse, env: Env, who: str) -> None:
        assert response.get_json()[key] == expected(env)

    return check


def hello(response: TestResponse, env: Env, who: str) -> None:
    body = response.get_json()
    principal = env.principals[who]
    assert body["device"]["id"] == principal.device_id and body["user"]["id"] == principal.user_id


SCOPES: Mapping[str, Mapping[str, set[str]]] = {
    LINEMAN: {
        "job": {"J-outage", "J-repair"},
        "customer": {"C1", "C2"},
        "premise": {"P1", "P2"},
        "route": set(),
        "meter": set(),
    },
    READER: {
        "job": set(),
        "customer": {"C1", "C2", "C3", "C4"},
        "premise": {"P1", "P2", "P3", "P4"},
        "route": {"R1"},
        "meter": {"M1", "M2", "M3", "M4"},
    },
}


def pulled(response: TestResponse, env: Env, who: str) -> None:
    """A fresh pull holds exactly the device user's scope: its jobs and their events, its route's meters
    and readings, its own open conflicts; nothing of lineman2's or reader2's."""
    records: list[dict[str, Any]] = []
    client = env.app.test_client()
    headers = {"Authorization": f"Bearer {env.principals[who].token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    body = response.get_json()
    records.extend(body["records"])
    while body["has_more"]:
        body = client.get("/api/v1/sync/pull", query_string={"cursor": body["cursor"]}, headers=headers).get_json()
        records.extend(body["records"])
    got: dict[str, set[str]] = {}
    for record in records:
        assert record["op"] == "upsert", record
        got.setdefault(record["entity"], set()).add(record["id"])
    scope = SCOPES[who]
    for entity, expected in scope.items():
        assert got.get(entity, set()) == expected, entity
    for record in records:
        if record["entity"] == "job_event":
            assert record["data"]["job_id"] in scope["job"], record
        if record["entity"] == "meter_reading":
            assert record["data"]["meter_id"] in scope["meter"], record
    own_conflicts = {str(env.conflicts["lineman"])} if who == LINEMAN else set()
    assert got.get("conflict", set()) == own_conflicts
    own_readings = {env.readings["reader"]} if who == READER else set()
    assert own_readings <= got.get("meter_reading", set())
    assert env.readings["reader2"] not in got.get("meter_reading", set())


# --- request builders ------------------------------------------------------------------------------------


def push_body(env: Env, kind: str, target: str) -> dict[str, Any]:
    """A one-change push: a note on job `target` or a reading of meter `target` (whoever sends it)."""
    handheld = env.handheld(LINEMAN)
    change = handheld.note(target, "matrix note") if kind == "note" else handheld.reading(target, 1400)
    return {"protocol": PROTOCOL_VERSION, "batch_id": uuid.uuid4().hex, "changes": [change]}


def valid_code(env: Env) -> dict[str, str]:
    """A fresh enrolment code of the enrolee (a real code: enrolling needs nothing else)."""
    with env.app.app_context():
        code = enrollment.issue_code(db.session.get(User, env.users["enrolee"]), 1)
        db.session.commit()
    return {"code": code, "device_name": "matrix pda"}


def other_spare(env: Env) -> dict[str, str]:
    """Reassign J-spare to whichever spare lineman does not hold it (a real change, every time)."""
    with env.app.app_context():
        holder = db.session.get(Job, "J-spare").assigned_to
        db.session.rollback()
    target = env.users["spare-b"] if holder == env.users["spare-a"] else env.users["spare-a"]
    return {"assigned_to": target}


# --- the table ------------------------------------------------------------------------------------------

Builder = Callable[[Env], Any]


@dataclass(frozen=True)
class Row:
    method: str
    rule: str
    expect: Mapping[str, str]
    path: str | Callable[[Env], str] = ""  # default: the rule itself
    label: str = ""  # which record, when the rule takes an id
    form: Builder | None = None
    json: Builder | None = None
    check: Check | None = None
    confirm: bool = False  # a GET that only asks for confirmation: must change nothing for anybody
    error: str = ""  # the error code of a JSON API's refusal, when not the status's usual one

    def url(self, env: Env) -> str:
        if callable(self.path):
            return self.path(env)
        return self.path or self.rule

    @property
    def name(self) -> str:
        return f"{self.method} {self.rule}" + (f" [{self.label}]" if self.label else "")


JOB = "/jobs/<job_id>"
STAFF_JOB = "/api/v1/staff/jobs/<job_id>"
PUSH = "/api/v1/sync/push"

TABLE: list[Row] = [
    # public: see the module docstring
    Row("GET", "/api/v1/health", everyone("200")),
    Row("POST", "/api/v1/devices/enroll", everyone("401"), label="unknown code", error="invalid_enrollment_code",
        json=lambda e: {"code": "ABCD-EFGH-JKLM", "device_name": "guess"}),
    Row("POST", "/api/v1/devices/enroll", everyone("201"), label="valid code", json=valid_code),
    Row("GET", "/static/<path:filename>", everyone("200"), path="/static/style.css"),
    Row("GET", "/login", signed_out("200", "302")),
    Row("POST", "/login", signed_out("401", "302"), label="wrong password",
        form=lambda e: {"username": "staff", "password": "not-the-password"}),
    Row("POST", "/logout", everyone("login"), form=lambda e: {}),
    Row("POST", "/language", everyone("302"), form=lambda e: {"lang": "en", "next": "/jobs"}),
    # the API description: handhelds, staff sessions and live API tokens
    Row("GET", "/api/v1/openapi.json", {**staff_api(), LINEMAN: "200", READER: "200"}),
    # sync API: live handhelds of active field users; a push is judged change by change
    Row("GET", "/api/v1/sync/hello", sync(), check=hello),
    Row("GET", "/api/v1/sync/pull", sync(), check=pulled),
    Row("POST", PUSH, sync("applied", "not_in_scope"), label="note on lineman's J-outage",
        json=lambda e: push_body(e, "note", "J-outage")),
    Row("POST", PUSH, sync("not_in_scope", "not_in_scope"), label="note on lineman2's J-other",
        json=lambda e: push_body(e, "note", "J-other")),
    Row("POST", PUSH, sync("not_in_scope", "applied"), label="reading of reader's M1",
        json=lambda e: push_body(e, "reading", "M1")),
    Row("POST", PUSH, sync("not_in_scope", "not_in_scope"), label="reading of reader2's M5",
        json=lambda e: push_body(e, "reading", "M5")),
    # staff API: read-only, every user's records
    Row("GET", "/api/v1/staff/jobs", staff_api(),
        check=items("id", lambda e: "J-outage", lambda e: "J-repair", lambda e: "J-other")),
    Row("GET", STAFF_JOB, staff_api(), path="/api/v1/staff/jobs/J-outage", label="lineman's",
        check=field("id", lambda e: "J-outage")),
    Row("GET", STAFF_JOB, staff_api(), path="/api/v1/staff/jobs/J-other", label="lineman2's",
        check=field("id", lambda e: "J-other")),
    Row("GET", "/api/v1/staff/conflicts", staff_api(),
        check=items("id", lambda e: e.conflicts["lineman"], lambda e: e.conflicts["lineman2"])),
    Row("GET", "/api/v1/staff/customers", staff_api(), check=items("id", lambda e: "C1", lambda e: "C6")),
    Row("GET", "/api/v1/staff/customers/<customer_id>", staff_api(), path="/api/v1/staff/customers/C1",
        label="C1, on the lineman's job and the reader's route", check=field("id", lambda e: "C1")),
    Row("GET", "/api/v1/staff/customers/<customer_id>", staff_api(), path="/api/v1/staff/customers/C6",
        label="C6, on reader2's route", check=field("id", lambda e: "C6")),
    Row("GET", "/api/v1/staff/readings", staff_api(),
        check=items("id", lambda e: e.readings["reader"], lambda e: e.readings["reader2"])),
    Row("GET", "/api/v1/staff/routes/progress", staff_api(), check=items("route_id", lambda e: "R1", lambda e: "R2")),
    Row("GET", "/api/v1/staff/kpis", staff_api()),
    Row("GET", "/api/v1/staff/analysis/abc", staff_api()),
    # staff pages: staff and admins see every user's records
    Row("GET", "/", page()),
    Row("GET", "/jobs", page(), check=contains(lambda e: "J-OUTAGE", lambda e: "J-OTHER")),
    Row("GET", JOB, page(), path="/jobs/J-outage", label="lineman's", check=contains(lambda e: "J-OUTAGE")),
    Row("GET", JOB, page(), path="/jobs/J-other", label="lineman2's", check=contains(lambda e: "J-OTHER")),
    Row("GET", "/jobs/new", page()),
    Row("POST", "/jobs/new", page("302"), form=lambda e: {
        "customer_id": "C4", "premise_id": "P4", "job_type": "outage", "priority": "3", "summary": "matrix job"}),
    Row("POST", "/jobs/<job_id>/assign", page("302"), path="/jobs/J-spare/assign", label="J-spare", form=other_spare),
    # return and close: the spare job is not completed, so the handler refuses (409) without changing it
    Row("POST", "/jobs/<job_id>/return", page("409"), path="/jobs/J-spare/return", label="J-spare",
        form=lambda e: {"assigned_to": e.users["spare-a"], "note": "again"}),
    Row("POST", "/jobs/<job_id>/cancel", page("422"), path="/jobs/J-spare/cancel", label="J-spare, no reason",
        form=lambda e: {}),
    Row("POST", "/jobs/<job_id>/close", page("409"), path="/jobs/J-spare/close", label="J-spare", form=lambda e: {}),
    Row("POST", "/jobs/<job_id>/note", page("302"), path="/jobs/J-spare/note", label="J-spare",
        form=lambda e: {"text": "matrix note"}),
    Row("POST", "/jobs/<job_id>/edit", page("302"), path="/jobs/J-spare/edit", label="J-spare",
        form=lambda e: {"priority": "3", "summary": e.unique("spare job v")}),
    Row("GET", "/readings", page(),
        check=contains(lambda e: f"/readings/{e.readings['reader']}", lambda e: f"/readings/{e.readings['reader2']}")),
    Row("GET", "/readings/<reading_id>", page(), path=lambda e: f"/readings/{e.readings['reader']}",
        label="reader's", check=contains(lambda e: "A0000001")),
    Row("GET", "/readings/<reading_id>", page(), path=lambda e: f"/readings/{e.readings['reader2']}",
        label="reader2's", check=contains(lambda e: "A0000005")),
    Row("GET", "/readings/routes", page(), check=contains(lambda e: "RT-1", lambda e: "RT-2")),
    Row("GET", "/customers", page(), check=contains(lambda e: "Customer 1", lambda e: "Customer 6")),
    Row("GET", "/customers/<customer_id>", page(), path="/customers/C1", label="C1",
        check=contains(lambda e: "Customer 1")),
    Row("GET", "/customers/<customer_id>", page(), path="/customers/C6", label="C6",
        check=contains(lambda e: "Customer 6")),
    Row("GET", "/kpis", page()),
    Row("GET", "/analysis", page()),
    Row("GET", "/conflicts", page(), check=contains(
        lambda e: f'id="conflict-{e.conflicts["lineman"]}"', lambda e: f'id="conflict-{e.conflicts["lineman2"]}"')),
    Row("POST", "/conflicts/<int:conflict_id>/review", page("302"),
        path=lambda e: f"/conflicts/{e.conflicts['spare']}/review", label="spare-a's", form=lambda e: {"note": "ok"}),
    # administration: administrators only (staff 403)
    Row("GET", "/admin/devices", admin_page(), check=contains(lambda e: e.principals[LINEMAN].device_id or "?")),
    Row("GET", "/admin/devices/<device_id>/revoke", admin_page(),
        path=lambda e: f"/admin/devices/{e.devices['spare']}/revoke", label="reader2's", confirm=True),
    Row("POST", "/admin/devices/<device_id>/revoke", admin_page("302"),
        path=lambda e: f"/admin/devices/{e.devices['spare']}/revoke", label="reader2's", form=lambda e: {}),
    Row("GET", "/admin/users", admin_page(), check=contains(lambda e: "lineman2")),
    Row("POST", "/admin/users", admin_page("302"), label="new field user",
        form=lambda e: {"username": e.unique("matrix-user-"), "display_name": "Matrix", "role": "lineman"}),
    Row("GET", "/admin/users/<user_id>/deactivate", admin_page(),
        path=lambda e: f"/admin/users/{e.users['spare-c']}/deactivate", label="spare-c", confirm=True),
    Row("POST", "/admin/users/<user_id>/deactivate", admin_page("302"),
        path=lambda e: f"/admin/users/{e.users['spare-c']}/deactivate", label="spare-c", form=lambda e: {}),
    Row("POST", "/admin/users/<user_id>/reactivate", admin_page("302"),
        path=lambda e: f"/admin/users/{e.users['spare-c']}/reactivate", label="spare-c", form=lambda e: {}),
    Row("POST", "/admin/users/<user_id>/enrollment-code", admin_page("200"),
        path=lambda e: f"/admin/users/{e.users['enrolee']}/enrollment-code", label="enrolee", form=lambda e: {}),
    Row("POST", "/admin/tokens", admin_page("200"), label="for staff",
        form=lambda e: {"user_id": e.users["staff"], "name": "matrix"}),
    Row("GET", "/admin/tokens/<token_id>/revoke", admin_page(),
        path=lambda e: f"/admin/tokens/{e.tokens['spare']}/revoke", label="spare", confirm=True),
    Row("POST", "/admin/tokens/<token_id>/revoke", admin_page("302"),
        path=lambda e: f"/admin/tokens/{e.tokens['spare']}/revoke", label="spare", form=lambda e: {}),
]  # fmt: skip

PUBLIC = {
    ("GET", "/api/v1/health"),
    ("POST", "/api/v1/devices/enroll"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/language"),
    ("GET", "/static/<path:filename>"),
}
GATE_REFUSALS = {"login", "401", "403"}
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}  # added by Flask to every GET route / every route


def app_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - IMPLICIT_METHODS
    }


def test_table_names_every_route(env: Env) -> None:
    table = {(row.method, row.rule) for row in TABLE}
    routes = app_routes(env.app)
    assert routes - table == set(), "routes nobody classified: add them to TABLE"
    assert table - routes == set(), "TABLE names routes the app does not have"


def test_only_the_documented_routes_let_anonymous_callers_in() -> None:
    for row in TABLE:
        if (row.method, row.rule) not in PUBLIC:
            assert row.expect[ANONYMOUS] in GATE_REFUSALS, row.name
            assert set(row.expect) == set(PRINCIPALS), row.name


CASES = [(row, who) for row in TABLE for who in PRINCIPALS]


def _case_id(case: tuple[Row, str]) -> str:
    row, who = case
    return f"{row.name} x {who} -> {row.expect[who]}"


def _assert_outcome(response: TestResponse, outcome: str, row: Row, path: str) -> None:
    status, location = response.status_code, response.headers.get("Location", "")
    detail = (status, location, response.get_data(as_text=True)[:300])
    if outcome == "login":
        assert status == 302 and urlsplit(location).path == "/login", detail
    elif outcome == "302":
        assert status == 302 and urlsplit(location).path != "/login", detail
    elif outcome in ("applied", "not_in_scope"):
        assert status == 200, detail
        (result,) = response.get_json()["results"]
        assert result["status"] == ("applied" if outcome == "applied" else "rejected"), result
        if outcome == "not_in_scope":
            assert result["error"]["code"] == "not_in_scope", result
    elif path.startswith("/api/") and outcome in ("401", "403"):
        assert_error(response, int(outcome), row.error or ("unauthorized" if outcome == "401" else "forbidden"))
    else:
        assert status == int(outcome), detail


def _pushed_effect(env: Env, body: dict[str, Any]) -> bool:
    (change,) = body["changes"]
    model = JobEvent if change["entity"] == "job_event" else MeterReading
    with env.app.app_context():
        found = db.session.get(model, change["entity_id"]) is not None
        db.session.rollback()
    return found


@pytest.mark.parametrize(("row", "who"), CASES, ids=[_case_id(case) for case in CASES])
def test_matrix(env: Env, row: Row, who: str) -> None:
    outcome = row.expect[who]
    path = row.url(env)
    form = row.form(env) if row.form else None
    body = row.json(env) if row.json else None
    watch = row.confirm or (row.method != "GET" and outcome in GATE_REFUSALS)
    before = table_dump(env.app, exclude={"rate_limit_windows"}) if watch else None
    response = env.call(who, row.method, path, form=form, json=body)
    _assert_outcome(response, outcome, row, path)
    if before is not None:
        assert table_dump(env.app, exclude={"rate_limit_windows"}) == before, "a refused request changed data"
    if outcome in ("applied", "not_in_scope"):
        assert _pushed_effect(env, body) is (outcome == "applied")
    if row.check is not None and outcome in ("200", "201", "applied"):
        row.check(response, env, who)
