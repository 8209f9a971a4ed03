"""Generated request bodies and query strings for every endpoint of the sync API, the enrolment endpoint
and the staff API (DESIGN.md invariant 10): never a 5xx, always JSON, every refusal the error envelope
with a known code and nothing written, and a push that is answered 200 wrote exactly what its per-change
results report."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from typing import Any

from flask import Flask
from hypothesis import example, given
from hypothesis import strategies as st

from server.extensions import db
from server.models import ChangeReceipt, User
from server.services import enrollment
from sync_protocol import ERRORS, PROTOCOL_HEADER, Outcome
from tests.fuzz.conftest import (
    assert_clean,
    assert_refused_cleanly,
    column_values,
    error_of,
    fingerprint,
    fuzz_settings,
    seed_activity,
)
from tests.fuzz.strategies import (
    JSON_VALUES,
    ODD_TEXT,
    OUT_OF_RANGE_TIMES,
    json_bytes,
    mutated,
    push_body,
    valid_change,
)
from tests.server.world import Handheld

PUSH = "/api/v1/sync/push"
PULL = "/api/v1/sync/pull"
HELLO = "/api/v1/sync/hello"
ENROLL = "/api/v1/devices/enroll"
JSON_TYPE = {"Content-Type": "application/json"}

# What a push may change when it applies something; everything else (users, devices, codes, reference
# data, server state, API tokens) it must never touch.
PUSH_EFFECT_TABLES = frozenset({"jobs", "job_events", "meter_readings", "conflicts", "change_log", "sync_counter"})
# A push records when the device last pushed: bookkeeping of an accepted batch only.
PUSH_BOOKKEEPING = {"devices": {"last_push_at"}}


def receipt_statuses(app: Flask) -> dict[str, str]:
    with app.app_context():
        rows = db.session.execute(db.select(ChangeReceipt.change_id, ChangeReceipt.status)).all()
        db.session.rollback()
    return dict(rows)


def post_push(app: Flask, handheld: Handheld, data: bytes) -> tuple[Any, dict[str, Any] | None]:
    """POST raw bytes as a push and check the answer against the database. Returns the response and, for
    a 200, {"changes": sent, "results": answered, "accepted": the changes not rejected}."""
    receipts_before = receipt_statuses(app)
    pushed_before = column_values(app, "devices", "last_push_at")
    before = fingerprint(app, ignore_tables={"change_receipts"}, ignore_columns=PUSH_BOOKKEEPING)
    response = handheld.client.post(PUSH, data=data, headers={**handheld.headers, **JSON_TYPE})
    body = assert_clean(response)
    if response.status_code >= 400:
        assert_refused_cleanly(
            app, response, before, ignore_tables={"change_receipts"}, ignore_columns=PUSH_BOOKKEEPING
        )
        assert receipt_statuses(app) == receipts_before
        assert column_values(app, "devices", "last_push_at") == pushed_before
        return response, None
    assert response.status_code == 200, response.status_code
    sent = json.loads(data)
    changes = sent["changes"]
    results = body["results"]
    assert body["batch_id"] == sent["batch_id"]
    assert [r["change_id"] for r in results] == [c["change_id"] for c in changes]
    for result in results:
        assert result["status"] in {o.value for o in Outcome}, result
        if result["status"] == Outcome.REJECTED:
            assert ERRORS[result["error"]["code"]].status == 422, result
            assert set(result["error"]) == {"code", "message", "fields"}, result
        else:
            assert result["error"] is None, result
    # one receipt per change id the server had not seen, with the status it answered; old ones untouched
    receipts_after = receipt_statuses(app)
    new = {cid: status for cid, status in receipts_after.items() if cid not in receipts_before}
    assert new == {r["change_id"]: r["status"] for r in results if r["change_id"] not in receipts_before}
    assert {cid: receipts_after[cid] for cid in receipts_before} == receipts_before
    # effects only from changes reported as accepted
    after = fingerprint(app, ignore_tables={"change_receipts"}, ignore_columns=PUSH_BOOKKEEPING)
    changed = {name for name in before if before[name] != after[name]}
    assert changed <= PUSH_EFFECT_TABLES, changed
    accepted = [c for c, r in zip(changes, results, strict=True) if r["status"] != Outcome.REJECTED]
    if not accepted:
        assert not changed, ("a batch with every change rejected wrote", changed)
    return response, {"changes": changes, "results": results, "accepted": accepted}


def new_rows_belong_to_accepted(app: Flask, before: dict[str, set], outcome: dict[str, Any]) -> None:
    """Facts created by a push are exactly those of changes it reported as accepted (no partial write)."""
    accepted_ids = {(c["entity"], c["entity_id"]) for c in outcome["accepted"]}
    for entity, table in (("job_event", "job_events"), ("meter_reading", "meter_readings")):
        created = column_values(app, table, "id") - before[table]
        assert {(entity, i) for i in created} <= accepted_ids, (table, created)


# --- push ------------------------------------------------------------------------------------------


def _envelope_with(changes: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(push_body, changes)


RANDOM_CHANGE = st.one_of(
    JSON_VALUES,
    # a well-formed change id, so the batch passes and each change is judged (and rejected) on its own
    st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=6).map(lambda d: {**d, "change_id": uuid.uuid4().hex}),
)


@fuzz_settings()
@given(data=json_bytes(st.one_of(JSON_VALUES, _envelope_with(st.lists(RANDOM_CHANGE, min_size=1, max_size=5)))))
@example(data=b'{"protocol": NaN, "batch_id": "b", "changes": []}')
@example(data=b'{"protocol": 1, "batch_id": "b", "changes": [{"change_id": "c", "entity": "\\u0000"}]}')
def test_random_json_push_is_refused_or_answered_per_change(app, client, reader, data: bytes):
    post_push(app, reader, data)


@fuzz_settings(1.5)
@given(data=st.data(), role=st.sampled_from(["reader", "lineman"]))
def test_push_of_valid_changes_with_one_field_broken(app, client, world, reader, lineman, data, role):
    """Mixed batches: valid changes from the world around one mutated change (sometimes a duplicate id)."""
    handheld = reader if role == "reader" else lineman
    changes = data.draw(st.lists(valid_change(handheld, world, role), min_size=1, max_size=4), label="valid")
    index = data.draw(st.integers(0, len(changes) - 1), label="index")
    how = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "duplicate_id", "valid"]), label="how")
    if how == "mutate":
        changes[index] = data.draw(mutated(changes[index]), label="mutated")
    elif how == "duplicate_id":
        changes.append({**changes[index], "data": {**changes[index]["data"]}})
    facts_before = {t: column_values(app, t, "id") for t in ("job_events", "meter_readings")}
    body = push_body(changes)
    response, outcome = post_push(app, handheld, json.dumps(body).encode())
    if how == "duplicate_id":
        assert error_of(response)["code"] == "validation_error"
    if outcome is not None:
        new_rows_belong_to_accepted(app, facts_before, outcome)
        # exactly-once: the same batch again answers the same and writes nothing
        before = fingerprint(app, ignore_columns=PUSH_BOOKKEEPING)
        again = handheld.client.post(PUSH, json=body, headers=handheld.headers)
        assert again.status_code == 200 and again.get_json()["results"] == outcome["results"]
        assert fingerprint(app, ignore_columns=PUSH_BOOKKEEPING) == before


@fuzz_settings(0.5)
@given(data=st.data())
def test_reused_change_id_with_other_content_is_rejected_and_writes_nothing(app, client, world, reader, data):
    first = data.draw(valid_change(reader, world, "reader"))
    _, answered = post_push(app, reader, json.dumps(push_body([first])).encode())
    assert answered is not None
    other = data.draw(mutated(first).filter(lambda c: c.get("change_id") == first["change_id"] and c != first))
    facts_before = {t: column_values(app, t, "id") for t in ("job_events", "meter_readings")}
    _, outcome = post_push(app, reader, json.dumps(push_body([other])).encode())
    if outcome is not None:
        (result,) = outcome["results"]
        # a spelling of the same change (5 vs 5.0, an equal value) is a retry: the first answer again
        if result != answered["results"][0]:
            assert result["status"] == Outcome.REJECTED and result["error"]["code"] == "id_reuse", result
        assert column_values(app, "meter_readings", "id") == facts_before["meter_readings"]


# --- hello and pull query strings ------------------------------------------------------------------

QUERY_VALUES = st.one_of(
    ODD_TEXT,
    st.integers().map(str),
    st.sampled_from(["", "0", "-1", "1", "2", " 1", "1.0", "1e3", "NaN", "0x10", "\u0661", "9" * 30, "-" + "9" * 30]),
)
HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20),
    st.sampled_from(["1", "0", "2", "-1", "1 ", "01", "9" * 30]),
)


@st.composite
def cursors(draw: st.DrawFn, real: str) -> str:
    """Random text, or a real cursor of this server truncated, extended or with one character changed."""
    how = draw(st.sampled_from(["random", "truncate", "extend", "flip"]))
    if how == "random":
        return draw(ODD_TEXT)
    if how == "truncate":
        return real[: draw(st.integers(0, max(0, len(real) - 1)))]
    if how == "extend":
        return real + draw(ODD_TEXT)
    at = draw(st.integers(0, len(real) - 1))
    return real[:at] + draw(st.characters(exclude_categories=("Cs",))) + real[at + 1 :]


@fuzz_settings()
@given(data=st.data())
def test_pull_query_strings(app, client, reader, data):
    if reader.cursor is None:  # a real cursor to mutate, once per test
        reader.pull_all()
    assert reader.cursor
    optional = {"cursor": cursors(reader.cursor), "limit": QUERY_VALUES, "junk": QUERY_VALUES}
    query = data.draw(st.fixed_dictionaries({}, optional=optional))
    headers = dict(reader.headers)
    version = data.draw(st.none() | HEADER_VALUES, label="version")
    if version is None:
        del headers[PROTOCOL_HEADER]
    else:
        headers[PROTOCOL_HEADER] = version
    before = fingerprint(app)
    response = client.get(PULL, query_string=query, headers=headers)
    assert_clean(response)
    if response.status_code >= 400:
        assert_refused_cleanly(app, response, before)
    else:
        assert fingerprint(app) == before  # a pull reads; only its last-pull time is written


@fuzz_settings()
@given(
    query=st.dictionaries(
        st.sampled_from(["protocol_min", "protocol_max", "device_time_ms", "last_ack", "junk"]), QUERY_VALUES
    ),
    version=st.none() | HEADER_VALUES,
)
@example(query={"device_time_ms": "9" * 30}, version="1")
@example(query={"last_ack": "\x00"}, version="1")  # NUL reached a PostgreSQL query: a 500
def test_hello_query_strings(app, client, reader, query, version):
    headers = {"Authorization": reader.headers["Authorization"]}
    if version is not None:
        headers[PROTOCOL_HEADER] = version
    before = fingerprint(app)
    response = client.get(HELLO, query_string=query, headers=headers)
    assert_clean(response)
    if response.status_code >= 400:
        assert_refused_cleanly(app, response, before)
    else:
        assert fingerprint(app) == before  # hello writes only the device's last-seen time and clock offset


# --- enrolment -------------------------------------------------------------------------------------


@st.composite
def enrolment_bodies(draw: st.DrawFn, real_code: str) -> bytes:
    """Random JSON, or an enrolment request (sometimes with a real unused code) with one field broken."""
    if draw(st.booleans()):
        return draw(json_bytes())
    body: dict[str, Any] = {
        "code": draw(st.sampled_from([real_code, real_code.lower().replace("-", " ")]) | ODD_TEXT),
        "device_name": "pda",
        "platform": "android",
        "app_version": "1.0",
    }
    field = draw(st.sampled_from([*sorted(body), "extra"]))
    if field in ("code", "device_name") and draw(st.booleans()):
        del body[field]  # required
    else:
        too_long = {"code": 65, "device_name": 81}.get(field, 41)
        wrong_type = JSON_VALUES.filter(lambda v: not isinstance(v, str))
        body[field] = draw(wrong_type | st.sampled_from(["x" * too_long]) if field != "extra" else JSON_VALUES)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


@fuzz_settings()
@given(data=st.data())
def test_enrolment_bodies_are_refused_and_spend_no_code(app, client, world, data):
    app.config["ENROLL_ATTEMPTS_PER_WINDOW"] = 10**9  # here we fuzz the body, not the rate limit
    with app.app_context():
        code = enrollment.issue_code(db.session.get(User, world.users["reader"]), 24)
        db.session.commit()
    body = data.draw(enrolment_bodies(code))
    before = fingerprint(app)
    response = client.post(ENROLL, data=body, headers=JSON_TYPE)
    assert_clean(response)
    assert_refused_cleanly(app, response, before)


# --- the staff API ---------------------------------------------------------------------------------

STAFF_LISTS = {
    "/api/v1/staff/jobs": [
        "page", "per_page", "q", "status", "assignee", "customer", "priority", "created_from", "created_to",
        "segment", "vip", "sort",
    ],
    "/api/v1/staff/conflicts": ["page", "per_page", "state", "kind", "user", "job"],
    "/api/v1/staff/readings": [
        "page", "per_page", "route_id", "reader_id", "meter", "date_from", "date_to", "reading_type",
        "exceptions_only", "exception", "current_only",
    ],
    "/api/v1/staff/routes/progress": ["page", "per_page", "reader_id"],
    "/api/v1/staff/customers": ["page", "per_page", "q", "segment", "vip"],
    "/api/v1/staff/kpis": ["preset", "start", "end", "group"],
    "/api/v1/staff/analysis/abc": ["start", "end", "variant", "a", "b", "class", "segment", "vip", "page", "per_page"],
}  # fmt: skip
STAFF_VALUES = st.one_of(
    QUERY_VALUES,
    st.dates().map(str),
    st.sampled_from(
        [
            "0001-01-01", "9999-12-31", "2024-02-30", "true", "false", "yes", "0", "1/3", "1/0", "0/0", "-1/2",
            "0.95", "1e-400", "1e400", "inf", "nan", "100", "-created", "priority", "open", "all", "A", "week",
            "month", "today", "last_30_days", "new,assigned", ",,,", "2" * 25,
        ]
    ),
)  # fmt: skip


@fuzz_settings(1.5)
@given(data=st.data(), path=st.sampled_from(sorted(STAFF_LISTS)))
def test_staff_list_query_strings(app, client, world, reader, lineman, staff_headers, data, path):
    if not column_values(app, "meter_readings", "id"):  # rows to list, once per test
        seed_activity(reader, lineman, world)
    names = st.sampled_from(STAFF_LISTS[path]) | st.sampled_from(["junk", "PAGE", ""])
    query = data.draw(st.lists(st.tuples(names, STAFF_VALUES), max_size=5), label="query")
    before = fingerprint(app)
    response = client.get(path, query_string=query, headers=staff_headers)
    assert_clean(response)
    assert response.status_code in (200, 422), (response.status_code, response.get_json())
    assert fingerprint(app) == before


@fuzz_settings(0.5)
@given(path=st.sampled_from(["/api/v1/staff/jobs/", "/api/v1/staff/customers/"]), ident=ODD_TEXT)
@example(path="/api/v1/staff/jobs/", ident="/0")
def test_staff_record_paths(app, client, world, staff_headers, path, ident):
    before = fingerprint(app)
    response = client.get(path + urllib.parse.quote(ident, safe=""), headers=staff_headers)
    if response.status_code == 308:
        # an id starting with "/" (%2F) makes "jobs//0": werkzeug redirects to the merged path, as on every route
        assert urllib.parse.urlsplit(response.location).path.startswith(path), response.location
    else:
        assert_clean(response)
        assert response.status_code in (200, 404), (response.status_code, response.get_json())
    assert fingerprint(app) == before


# --- regression cases found by the generators above ------------------------------------------------

# NUL in a query value or a path segment reached PostgreSQL (a 500); a page number so large that its
# offset overflowed the databases' 64-bit integers (a 500 on both backends).
URL_CASES: list[tuple[str, str, dict[str, str], int]] = [
    ("device", HELLO, {"last_ack": "\x00"}, 422),
    ("device", PULL, {"cursor": "a\x00"}, 422),
    ("staff", "/api/v1/staff/jobs", {"q": "\x00"}, 422),
    ("staff", "/api/v1/staff/customers", {"q": "x\x00"}, 422),
    ("staff", "/api/v1/staff/readings", {"meter": "\x00"}, 422),
    ("staff", "/api/v1/staff/conflicts", {"user": "\x00"}, 422),
    ("staff", "/api/v1/staff/jobs/%00", {}, 404),
    ("staff", "/api/v1/staff/customers/C1%00", {}, 404),
    ("staff", "/api/v1/staff/jobs", {"page": "9" * 25}, 422),
    ("staff", "/api/v1/staff/conflicts", {"page": str(2**63)}, 422),
    ("staff", "/api/v1/staff/readings", {"page": "9" * 25}, 422),
    ("staff", "/api/v1/staff/customers", {"page": "9" * 25}, 422),
    ("staff", "/api/v1/staff/routes/progress", {"page": "9" * 25}, 422),
]


def test_nul_and_huge_pages_in_urls_are_refused(app, client, world, reader, staff_headers, subtests):
    for who, path, query, status in URL_CASES:
        with subtests.test(msg=f"{path} {query}"):
            headers = staff_headers if who == "staff" else reader.headers
            before = fingerprint(app)
            response = client.get(path, query_string=query, headers=headers)
            assert response.status_code == status, (response.status_code, response.get_json())
            assert_refused_cleanly(app, response, before)


def test_time_outside_the_datetime_range_is_rejected_alone(app, client, world, reader):
    changes = [reader.reading("M1", 1300) for _ in OUT_OF_RANGE_TIMES]
    for change, moment in zip(changes, OUT_OF_RANGE_TIMES, strict=True):
        change["data"]["read_at"] = moment
    _, outcome = post_push(app, reader, json.dumps(push_body(changes)).encode())
    assert outcome is not None
    assert [r["error"]["code"] for r in outcome["results"]] == ["validation_error"] * len(changes)
