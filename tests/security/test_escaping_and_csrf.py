"""What people type reaches the staff pages as text, never as markup; forms need the session's CSRF token;
every response carries the security headers.

Escaping: handhelds (through the sync API) and office users (through the forms) fill every free-text field
with payloads: a <script> element, an attribute break-out with an event handler, a javascript: URL and
template syntax ({{7*7}}), each payload marked with the field it went into. Imported reference data
(customer, premise, route, meter) gets them too, written straight to the database as an import would.
Every staff page that shows those records is then parsed: it holds no element, attribute or URL that
did not come from the templates, and the payloads of the fields it shows appear escaped, literally (the
template syntax unevaluated). Query parameters that pages echo back (searches) are payloads too.
CSV exports: a cell that a spreadsheet would run as a formula is neutralised, in every export.

CSRF: every POST route of the pages' blueprint (enumerated from the app's url_map) refuses a form without
the token, with a forged one or with another session's (400), and changes nothing.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from markupsafe import escape

from server.database import write_transaction
from server.extensions import db
from server.models import ApiToken, Customer, Job, Meter, Premise, Route, User
from server.services import enrollment, office
from server.web import bp as web_bp
from sync_protocol import HLC
from tests.security.env import ADMIN, STAFF, Env
from tests.security.test_authorization_matrix import TABLE, Row
from tests.server.helpers import table_dump
from tests.server.world import Handheld

TEMPLATES = Path(web_bp.root_path) / str(web_bp.template_folder)
LANGUAGE_SWITCH = ("select", "onchange", "this.form.submit()")  # base.html's one inline handler


def payload(tag: str) -> str:
    """Every trick at once, marked with `tag` (at most 80 characters for a 3-letter tag)."""
    return f'<script>{tag}()</script>"><img src=x onerror={tag}()>javascript:{tag}(){{{{7*7}}}}'


def short_payload(tag: str) -> str:
    """For fields of 40 characters."""
    return f'"><img src=x onerror={tag}()>{{{{7*7}}}}'


def tiny_payload(tag: str) -> str:
    """For the 16 characters of a material's unit."""
    return f"<i>{tag}</i>{{{{7*7}}}}"


# --- the payload world --------------------------------------------------------------------------------------


@dataclass
class Payloads:
    env: Env
    values: dict[str, str] = field(default_factory=dict)  # tag -> the payload stored under it
    ids: dict[str, str] = field(default_factory=dict)  # records the pages are opened for

    def put(self, tag: str, value: str) -> str:
        self.values[tag] = value
        return value


def _enrol(env: Env, username: str, p: Payloads, tag: str) -> Handheld:
    with env.app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one()
        code, user_id = enrollment.issue_code(user, 1), user.id
        db.session.commit()
    body = {
        "code": code,
        "device_name": p.put(f"d{tag}", payload(f"d{tag}")),
        "platform": p.put(f"p{tag}", short_payload(f"p{tag}")),
        "app_version": p.put(f"v{tag}", short_payload(f"v{tag}")),
    }
    response = env.app.test_client().post("/api/v1/devices/enroll", json=body)
    assert response.status_code == 201, response.get_json()
    enrolled = response.get_json()
    return Handheld(env.app.test_client(), enrolled["device_id"], enrolled["token"], user_id)


def _applied(handheld: Handheld, *changes: dict[str, Any]) -> None:
    results = handheld.push(*changes).get_json()["results"]
    assert [r["status"] for r in results] == ["applied"] * len(changes), results


def _office(env: Env, who: str, path: str, form: dict[str, str], status: int = 302) -> Any:
    response = env.call(who, "POST", path, form=form)
    assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:500])
    return response


def build_payloads(env: Env) -> Payloads:
    p = Payloads(env)
    app = env.app
    # imported reference data
    with app.app_context():
        db.session.get(Customer, "C3").name = p.put("cus", payload("cus"))
        db.session.get(Premise, "P3").address = p.put("adr", payload("adr"))
        db.session.get(Premise, "P1").access_notes = p.put("acc", payload("acc"))
        db.session.get(Route, "R1").name = p.put("rte", payload("rte"))
        db.session.get(Meter, "M2").number = p.put("mtr", short_payload("mtr"))
        # formulas for the CSV exports
        db.session.get(Customer, "C5").name = p.put("=cu", '=HYPERLINK("http://evil.example","x")')
        db.session.get(Route, "R2").name = p.put("@rt", "@SUM(1+1)*cmd|' /C calc'!A0")
        db.session.commit()
    # field input through the sync API: a lineman's handheld on J-outage, a reader's on M2 and M5
    crew = _enrol(env, "lineman", p, "ln")
    _applied(
        crew,
        crew.note("J-outage", p.put("nte", payload("nte"))),
        crew.change(
            "job_event",
            "E-material-payload",
            {
                "job_id": "J-outage",
                "kind": "material",
                "material_code": p.put("mat", short_payload("mat")),
                "quantity": 2,
                "unit": p.put("u1", tiny_payload("u1")),
                "recorded_at": "2024-01-01T00:00:00Z",
            },
        ),
        crew.change(
            "job",
            "J-outage",
            {
                "cause": p.put("cau", payload("cau")),
                "resolution_note": p.put("res", payload("res")),
                "contact_name": p.put("con", payload("con")),
            },
            base={"cause": None, "resolution_note": None, "contact_name": None},
        ),
    )
    # a conflict whose losing value is the crew's payload (the office changed the same field since)
    with app.app_context():
        write_transaction(lambda: office.edit_job(db.session.get(Job, "J-repair"), {"resolution_note": "office fix"}))
        office_stamp = HLC.parse(db.session.get(Job, "J-repair").field_hlc["resolution_note"])
        db.session.rollback()
    losing = crew.change(
        "job", "J-repair", {"resolution_note": p.put("los", payload("los"))}, base={"resolution_note": None}
    )
    losing["hlc"] = str(HLC(office_stamp.wall_ms - 5000, 0, crew.clock.node))
    assert crew.push(losing).get_json()["results"][0]["status"] == "conflict"
    reader = _enrol(env, "reader", p, "rd")
    reading = reader.reading("M2", 1300, note=p.put("rdn", payload("rdn")))
    _applied(reader, reading)
    p.ids["reading"] = reading["entity_id"]
    reader2 = _enrol(env, "reader2", p, "r2")
    formula_reading = reader2.reading("M5", 1300, note=p.put("-rn", "-2+3+cmd|' /C calc'!A0"))
    _applied(reader2, formula_reading)
    p.ids["device"] = crew.device_id
    # office input through the forms
    _office(
        env,
        ADMIN,
        "/admin/users",
        {"username": "evil-crew", "display_name": p.put("dsp", payload("dsp")), "role": "lineman"},
    )
    with app.app_context():
        p.ids["user"] = db.session.execute(sa.select(User.id).where(User.username == "evil-crew")).scalar_one()
    _office(env, ADMIN, "/admin/tokens", {"user_id": env.users["staff"], "name": p.put("tkn", payload("tkn"))}, 200)
    with app.app_context():
        p.ids["token"] = db.session.execute(sa.select(ApiToken.id).where(ApiToken.name == p.values["tkn"])).scalar_one()
    created = _office(
        env,
        STAFF,
        "/jobs/new",
        {
            "customer_id": "C3",
            "premise_id": "P3",
            "job_type": "outage",
            "priority": "2",
            "summary": p.put("sum", payload("sum")),
            "assigned_to": p.ids["user"],
        },
    )
    p.ids["job"] = created.headers["Location"].rsplit("/", 1)[1]
    _office(
        env,
        STAFF,
        "/jobs/new",
        {
            "customer_id": "C4",
            "premise_id": "P4",
            "job_type": "outage",
            "priority": "3",
            "summary": p.put("+js", "+1+cmd|' /C calc'!A0"),
        },
    )
    _office(env, STAFF, "/jobs/J-outage/note", {"text": p.put("ofn", payload("ofn"))})
    _office(env, STAFF, "/jobs/J-other/cancel", {"reason": p.put("rsn", payload("rsn"))})
    _office(env, STAFF, f"/conflicts/{env.conflicts['lineman']}/review", {"note": p.put("rvn", payload("rvn"))})
    return p


@pytest.fixture(scope="module")
def payloads(env: Env) -> Payloads:
    return build_payloads(env)


# --- parsing a page ----------------------------------------------------------------------------------------


class PageParser(HTMLParser):
    """Collects what would run or load: script elements, event-handler attributes, URLs in attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[tuple[str, str, str | None]] = []
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script":
            self.scripts.append(dict(attrs))
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name, value))
            if name in ("href", "src", "action", "formaction", "xlink:href") and value:
                self.urls.append(value)


def assert_no_injected_markup(html: str, where: str) -> None:
    parsed = PageParser()
    parsed.feed(html)
    assert all(s.get("src") == "/static/live.js" for s in parsed.scripts), (where, parsed.scripts)
    assert all(h == LANGUAGE_SWITCH for h in parsed.handlers), (where, parsed.handlers)
    assert "img" not in parsed.tags and "i" not in parsed.tags, where
    assert not [u for u in parsed.urls if u.strip().lower().startswith(("javascript:", "data:"))], where


# (page, the payload tags it must show): every page that shows a record a payload went into
PAGES: list[tuple[str, set[str]]] = [
    ("/jobs", {"cus", "adr", "dsp", "sum"}),
    ("/jobs?fragment=1", {"cus", "adr", "dsp", "sum"}),  # live.js's fragment
    ("/jobs/J-outage", {"acc", "dln", "nte", "mat", "u1", "cau", "res", "con", "ofn", "rvn"}),
    ("/jobs/J-repair", {"dln", "los", "dsp"}),
    ("/jobs/J-other", {"cus", "adr", "rsn"}),
    ("/jobs/{job}", {"cus", "adr", "dsp", "sum"}),
    ("/jobs/new?customer_id=C3", {"cus", "adr", "dsp"}),
    ("/readings", {"rte", "mtr", "rdn"}),
    ("/readings/{reading}", {"mtr", "rdn"}),
    ("/readings/routes", {"rte"}),
    ("/customers", {"cus", "adr"}),
    ("/customers/C3", {"cus", "adr", "sum"}),
    ("/customers/C1", {"acc"}),
    ("/kpis", {"rte", "dsp"}),
    ("/analysis", {"cus"}),
    ("/conflicts?state=all", {"dln", "los", "dsp", "rvn"}),
    ("/admin/devices", {"dln", "pln", "vln", "drd", "prd", "vrd"}),
    ("/admin/users", {"dsp", "tkn"}),
    ("/admin/devices/{device}/revoke", {"dln", "pln"}),
    ("/admin/tokens/{token}/revoke", {"tkn"}),
    ("/admin/users/{user}/deactivate", {"dsp"}),
    ("/", set()),
]
# query parameters a page may echo back (a search box keeps what was typed): reflected, not stored; True
# where the page does show it (escaped), False where it is refused or dropped as invalid
ECHOED = {
    "/jobs?q={}": True,
    "/customers?q={}": True,
    "/jobs/new?q={}": True,
    "/admin/devices?q={}": True,
    "/admin/users?q={}": True,
    "/readings?meter={}": False,
    "/conflicts?job={}": False,
    "/kpis?start={}": False,
    "/analysis?start={}": False,
}


@pytest.mark.parametrize(("path", "tags"), PAGES, ids=[path for path, _ in PAGES])
def test_stored_field_input_is_shown_escaped(payloads: Payloads, path: str, tags: set[str]) -> None:
    path = path.format(**payloads.ids)
    response = payloads.env.call(ADMIN, "GET", path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert_no_injected_markup(html, path)
    for tag, value in payloads.values.items():
        assert f"{tag}()49" not in html and f"<script>{tag}" not in html, tag  # no template evaluated, no tag made
        if tag in tags:
            assert str(escape(value)) in html, f"{path} should show {tag} escaped"


@pytest.mark.parametrize(("path", "echoed"), ECHOED.items(), ids=list(ECHOED))
def test_echoed_query_parameters_are_escaped(env: Env, path: str, echoed: bool) -> None:
    text = payload("qry")
    response = env.call(ADMIN, "GET", path.format(quote(text)))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert_no_injected_markup(html, path)
    assert text not in html and "qry()49" not in html
    assert (str(escape(text)) in html) is echoed


def test_an_id_in_the_path_is_not_echoed_raw(env: Env) -> None:
    for path in ("/jobs/{}", "/customers/{}", "/readings/{}", "/api/v1/staff/jobs/{}"):
        response = env.call(STAFF, "GET", path.format(quote(payload("pth"))))
        assert response.status_code == 404
        assert "<script>pth()" not in response.get_data(as_text=True)


# --- CSV exports -----------------------------------------------------------------------------------------

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_exports(env: Env) -> list[str]:
    """Every list page whose ?format=csv answers with CSV (found by asking each GET page of the blueprint)."""
    found = []
    for rule in env.app.url_map.iter_rules():
        if rule.endpoint.startswith("web.") and "GET" in (rule.methods or ()) and not rule.arguments:
            response = env.call(ADMIN, "GET", f"{rule.rule}?format=csv&state=all")
            if response.mimetype == "text/csv":
                found.append(rule.rule)
    return found


def test_every_csv_export_neutralises_formulas(payloads: Payloads) -> None:
    """A value a spreadsheet would run (=, +, -, @, tab, CR first) leaves with a ' in front: typed in the
    field (a reading's note), by the office (a job's summary) or imported (a customer's, a route's name)."""
    env = payloads.env
    exports = _csv_exports(env)
    assert {"/jobs", "/readings", "/readings/routes", "/customers", "/conflicts", "/analysis"} <= set(exports)
    formulas = {tag: value for tag, value in payloads.values.items() if value.startswith(FORMULA_START)}
    seen: set[str] = set()
    for path in exports:
        text = env.call(ADMIN, "GET", f"{path}?format=csv&state=all").get_data(as_text=True)
        for cell in (cell for row in csv.reader(io.StringIO(text)) for cell in row):
            if cell.startswith(FORMULA_START):
                assert re.fullmatch(r"-\d+(\.\d+)?", cell), f"{path}: formula cell {cell!r}"
            for tag, value in formulas.items():
                if cell.endswith(value):
                    assert cell == "'" + value, (path, cell)
                    seen.add(tag)
    assert seen == set(formulas), "every formula payload must reach some export"


# --- CSRF --------------------------------------------------------------------------------------------------


def _web_posts(app: Any) -> list[str]:
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("web.") and "POST" in (rule.methods or ())
    )


def _row_for(rule: str) -> Row:
    return next(row for row in TABLE if row.method == "POST" and row.rule == rule and row.form is not None)


FORGERIES = ["without token", "forged token", "another session's token"]


def test_every_page_form_is_in_the_matrix(env: Env) -> None:
    """The CSRF test below posts each form the way the matrix does: every POST route needs a form row."""
    assert _web_posts(env.app)
    for rule in _web_posts(env.app):
        _row_for(rule)


@pytest.mark.parametrize("forgery", FORGERIES)
def test_page_forms_without_the_sessions_csrf_token_are_refused_and_change_nothing(env: Env, forgery: str) -> None:
    """Each POST route of the pages (from the url_map), signed in as the administrator (allowed everything),
    with the form the matrix shows succeeding, but the CSRF token missing, made up, or another signed-in
    session's: 400 and the database unchanged."""
    other = env.principals[STAFF].csrf
    token = {"without token": "", "forged token": "IjAwMDAi.forged.token", "another session's token": other}[forgery]
    for rule in _web_posts(env.app):
        row = _row_for(rule)
        before = table_dump(env.app, exclude={"rate_limit_windows"})
        response = env.call(ADMIN, "POST", row.url(env), form=row.form(env) if row.form else {}, csrf=token)
        assert response.status_code == 400, (rule, response.status_code)
        assert "CSRF" in response.get_data(as_text=True), rule
        assert table_dump(env.app, exclude={"rate_limit_windows"}) == before, rule


# --- security headers -------------------------------------------------------------------------------------


HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@pytest.mark.parametrize(
    ("who", "path"),
    [
        (ADMIN, "/jobs"),
        (ADMIN, "/admin/users"),
        ("anonymous", "/login"),
        ("anonymous", "/jobs"),  # the redirect to sign in
        (ADMIN, "/jobs/no-such-job"),  # an error page
        (STAFF, "/admin/users"),  # 403
        ("anonymous", "/static/style.css"),
        ("anonymous", "/api/v1/health"),
        ("lineman-device", "/api/v1/sync/hello"),
        ("anonymous", "/api/v1/staff/jobs"),  # a JSON error
    ],
)
def test_every_response_carries_the_security_headers(env: Env, who: str, path: str) -> None:
    response = env.call(who, "GET", path)
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (path, name)
    csp = response.headers["Content-Security-Policy"]
    policy = dict(directive.strip().partition(" ")[::2] for directive in csp.split(";"))
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["script-src-elem"] == "'self'" and policy["default-src"] == "'self'"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'self'"


def test_the_templates_need_nothing_the_policy_forbids() -> None:
    """The pages keep working under the policy (tests/browser runs them in Chromium): no inline <script>
    element, no <style> element or style attribute, nothing loaded from another site, no javascript: URL.
    The language switch's onchange attribute is the one inline handler (see server/http.py)."""
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text()
        for script in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in script, (template.name, script)
        assert "<style" not in text and not re.search(r"\sstyle\s*=", text), template.name
        assert not re.search(r"(src|href)=\"(https?:)?//", text), template.name
        assert "javascript:" not in text, template.name
        handlers = re.findall(r"\s(on[a-z]+)\s*=", text)
        assert handlers == (["onchange"] if template.name == "base.html" else []), template.name
