"""Every error code of the protocol, as the HTTP API returns it: the structured envelope, the right
status, and nothing written (DESIGN.md invariant 10). The last test checks that the tests above
exercised every code in sync_protocol.errors.ERRORS."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
import sqlalchemy as sa
from flask import abort

from server.extensions import db
from server.models import User
from server.services import enrollment, state
from sync_protocol import ERRORS, PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.server.helpers import assert_error, counts, device, rejected, table_dump

EXERCISED: set[str] = set()  # every code some test below saw the API return

PUSH = "/api/v1/sync/push"
PULL = "/api/v1/sync/pull"
HELLO = "/api/v1/sync/hello"
ENROLL = "/api/v1/devices/enroll"


def expect(response, status: int, code: str) -> dict:
    error = assert_error(response, status, code)
    EXERCISED.add(code)
    return error


def expect_rejected(result: dict, code: str) -> dict:
    error = rejected(result, code)
    EXERCISED.add(code)
    return error


def _push_body(handheld) -> dict:
    return {"protocol": PROTOCOL_VERSION, "batch_id": "b1", "changes": [handheld.reading("M1", 1300)]}


# --- request-level errors -------------------------------------------------------------------------

BAD_BODIES = {
    "invalid-json": (b'{"protocol": 1, "changes": [', {}),
    "invalid-gzip": (b"this is not gzip", {"Content-Encoding": "gzip"}),
    "truncated-gzip": (gzip.compress(b'{"protocol": 1}')[:-12], {"Content-Encoding": "gzip"}),
    "invalid-utf8": (b'{"protocol": 1, "batch_id": "\xff\xfe"}', {}),
}


@pytest.mark.parametrize(("data", "headers"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_unreadable_body_is_bad_request(app, client, world, data, headers):
    reader = device(app, client, "reader")
    before = table_dump(app)
    response = client.post(PUSH, data=data, headers={**reader.headers, **headers, "Content-Type": "application/json"})
    expect(response, 400, "bad_request")
    assert table_dump(app) == before


def test_unreadable_enrolment_body_is_bad_request(app, client, world):
    # every enrolment attempt counts towards the rate limit, failed ones too: that row is expected
    before = table_dump(app, exclude={"rate_limit_windows"})
    response = client.post(ENROLL, data=b"{code", headers={"Content-Type": "application/json"})
    expect(response, 400, "bad_request")
    assert table_dump(app, exclude={"rate_limit_windows"}) == before


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, {"code", "device_name"}),
        ({"code": "ABCD-EFGH-JKLM", "device_name": "x", "colour": "red"}, {"colour"}),
        ([1, 2], {"_schema"}),
    ],
    ids=["missing-fields", "unknown-field", "not-an-object"],
)
def test_invalid_enrolment_request_is_validation_error_with_field_paths(app, client, world, body, paths):
    before = table_dump(app, exclude={"rate_limit_windows"})
    error = expect(client.post(ENROLL, json=body), 422, "validation_error")
    assert set(error["fields"]) == paths
    assert table_dump(app, exclude={"rate_limit_windows"}) == before


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        (PULL, {"limit": "0"}, "limit"),
        (PULL, {"limit": "ten"}, "limit"),
        (HELLO, {"protocol_min": "0", "protocol_max": "1"}, "protocol_min"),
        (HELLO, {"protocol_min": "2", "protocol_max": "1"}, "protocol_min"),
        (HELLO, {"device_time_ms": "noon"}, "device_time_ms"),
    ],
    ids=["limit-zero", "limit-not-a-number", "range-from-zero", "range-reversed", "device-time"],
)
def test_invalid_query_is_validation_error_with_field_paths(app, client, world, path, query, field):
    reader = device(app, client, "reader")
    before = table_dump(app)
    error = expect(client.get(path, query_string=query, headers=reader.headers), 422, "validation_error")
    assert field in error["fields"]
    assert table_dump(app) == before


@pytest.mark.parametrize("path", [HELLO, PULL, PUSH, "/api/v1/openapi.json"])
def test_request_without_token_is_unauthorized(app, client, world, path):
    reader = device(app, client, "reader")
    before = table_dump(app)
    headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    if path == PUSH:
        response = client.post(path, json=_push_body(reader), headers=headers)
    else:
        response = client.get(path, headers=headers)
    expect(response, 401, "unauthorized")
    assert table_dump(app) == before


def test_unknown_enrolment_code_is_invalid_enrollment_code(app, client, world):
    before = table_dump(app, exclude={"rate_limit_windows"})
    response = client.post(ENROLL, json={"code": "ABCD-EFGH-JKLM", "device_name": "pda"})
    expect(response, 401, "invalid_enrollment_code")
    assert table_dump(app, exclude={"rate_limit_windows"}) == before


def test_office_account_is_forbidden_to_sync(app, client, world):
    with app.app_context():
        staff = db.session.get(User, world.users["staff"])
        code = enrollment.issue_code(staff, 1)
        db.session.commit()
    token = client.post(ENROLL, json={"code": code, "device_name": "pc"}).get_json()["token"]
    before = table_dump(app)
    headers = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    expect(client.get(PULL, headers=headers), 403, "forbidden")
    assert table_dump(app) == before


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v2/sync/pull", "/api/v1/sync/pull/extra"])
def test_unknown_api_path_is_not_found(app, client, world, path):
    before = table_dump(app)
    expect(client.get(path), 404, "not_found")
    assert table_dump(app) == before


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("get", PUSH, "POST"), ("post", PULL, "GET"), ("delete", ENROLL, "POST"), ("put", "/api/v1/health", "GET")],
)
def test_wrong_method_is_method_not_allowed(app, client, world, method, path, allowed):
    before = table_dump(app)
    response = getattr(client, method)(path)
    expect(response, 405, "method_not_allowed")
    assert allowed in response.headers.get("Allow", "")  # RFC 9110: a 405 names the allowed methods
    assert table_dump(app) == before


def test_cursor_of_another_epoch_is_resync_required(app, client, world):
    reader = device(app, client, "reader")
    reader.pull_all()
    with app.app_context():
        state.rotate_epoch()
        db.session.commit()
    before = table_dump(app)
    response = client.get(PULL, query_string={"cursor": reader.cursor}, headers=reader.headers)
    expect(response, 409, "resync_required")
    assert table_dump(app) == before


def test_body_over_the_size_limit_is_payload_too_large(app, client, world):
    reader = device(app, client, "reader")
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps({**_push_body(reader), "pad": " " * limit}).encode()
    assert len(body) > limit
    before = table_dump(app)
    response = client.post(PUSH, data=body, headers={**reader.headers, "Content-Type": "application/json"})
    expect(response, 413, "payload_too_large")
    assert table_dump(app) == before


def test_gzip_bomb_is_payload_too_large(app, client, world):
    reader = device(app, client, "reader")
    limit = app.config["MAX_DECODED_BODY_BYTES"]
    body = json.dumps(_push_body(reader)).encode()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = compressor.compress(b" " * (limit + 4096)) + compressor.compress(body) + compressor.flush()
    assert len(bomb) < app.config["MAX_CONTENT_LENGTH"]  # small on the wire, huge decoded
    before = table_dump(app)
    response = client.post(
        PUSH,
        data=bomb,
        headers={**reader.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    expect(response, 413, "payload_too_large")
    assert table_dump(app) == before


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [("text/plain", None), ("application/x-www-form-urlencoded", None), (None, None), ("application/json", "br")],
    ids=["text-plain", "form", "no-content-type", "brotli"],
)
def test_body_not_json_or_gzip_is_unsupported_media_type(app, client, world, content_type, encoding):
    reader = device(app, client, "reader")
    headers = dict(reader.headers)
    if content_type:
        headers["Content-Type"] = content_type
    if encoding:
        headers["Content-Encoding"] = encoding
    before = table_dump(app)
    response = client.post(PUSH, data=json.dumps(_push_body(reader)), headers=headers)
    expect(response, 415, "unsupported_media_type")
    assert table_dump(app) == before


@pytest.mark.parametrize("version", ["99", "0", "-1"])
@pytest.mark.parametrize("call", ["push", "pull"])
def test_protocol_version_outside_the_supported_range_is_upgrade_required(app, client, world, call, version):
    reader = device(app, client, "reader")
    headers = {**reader.headers, PROTOCOL_HEADER: version}
    before = table_dump(app)
    if call == "push":
        response = client.post(PUSH, json=_push_body(reader), headers=headers)
    else:
        response = client.get(PULL, headers=headers)
    expect(response, 426, "upgrade_required")
    assert table_dump(app) == before


def test_push_body_protocol_outside_the_range_is_upgrade_required(app, client, world):
    reader = device(app, client, "reader")
    before = table_dump(app)
    body = {**_push_body(reader), "protocol": 99}
    response = client.post(PUSH, json=body, headers={"Authorization": reader.headers["Authorization"]})
    expect(response, 426, "upgrade_required")
    assert table_dump(app) == before


def test_hello_with_no_common_version_is_upgrade_required(app, client, world):
    reader = device(app, client, "reader")
    before = table_dump(app)
    headers = {"Authorization": reader.headers["Authorization"]}
    response = client.get(HELLO, query_string={"protocol_min": 99, "protocol_max": 120}, headers=headers)
    error = expect(response, 426, "upgrade_required")
    assert "upgrade the server" in error["message"]  # the app is newer: the advice is for the office
    assert table_dump(app) == before


def test_too_many_enrolment_attempts_are_rate_limited(app, client, world):
    app.config["ENROLL_ATTEMPTS_PER_WINDOW"] = 3
    with app.app_context():
        code = enrollment.issue_code(db.session.get(User, world.users["reader"]), 1)
        db.session.commit()
    for _ in range(3):
        expect(client.post(ENROLL, json={"code": "ABCD-EFGH-JKLM", "device_name": "x"}), 401, "invalid_enrollment_code")
    before = table_dump(app, exclude={"rate_limit_windows"})
    response = client.post(ENROLL, json={"code": code, "device_name": "pda"})  # even a good code waits
    expect(response, 429, "rate_limited")
    assert 0 < int(response.headers["Retry-After"]) <= app.config["ENROLL_WINDOW_SECONDS"]
    assert table_dump(app, exclude={"rate_limit_windows"}) == before
    other = client.post(ENROLL, json={"code": code, "device_name": "pda"}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 201  # the limit is per client address


def test_unexpected_failure_is_internal_error_and_changes_nothing(app, client, world):
    def boom():
        db.session.add(User(id="U-ghost", username="ghost", display_name="Ghost", role="lineman"))
        db.session.flush()
        raise RuntimeError("simulated bug")

    app.add_url_rule("/api/v1/test-boom", "test_boom", boom, methods=["POST"])
    before = table_dump(app)
    error = expect(client.post("/api/v1/test-boom"), 500, "internal_error")
    assert "simulated bug" not in json.dumps(error)  # internals stay in the server log
    assert table_dump(app) == before


def test_http_error_raised_by_a_view_keeps_the_envelope(app, client, world):
    app.add_url_rule("/api/v1/test-abort", "test_abort", lambda: abort(404))
    expect(client.get("/api/v1/test-abort"), 404, "not_found")


def test_health_with_a_broken_database_is_unavailable(app, client, world):
    assert client.get("/api/v1/health").status_code == 200
    with app.app_context():
        db.session.execute(sa.text("DROP TABLE server_state"))
        db.session.commit()
    before = table_dump(app, exclude={"server_state"})
    response = client.get("/api/v1/health")
    error = expect(response, 503, "unavailable")
    assert "database" in error["fields"]
    assert table_dump(app, exclude={"server_state"}) == before


# --- per-change rejection reasons -----------------------------------------------------------------


def _id_reuse(handheld, world):
    first = handheld.reading("M1", 1300)
    assert handheld.push(first).get_json()["results"][0]["status"] == "applied"
    return {**first, "data": {**first["data"], "value": 1301}}


def _bad_data(handheld, world):
    change = handheld.reading("M1", 1300)
    change["data"]["read_at"] = "yesterday"
    return change


REJECTIONS = [
    ("unknown_entity", "reader", lambda h, w: h.change("spaceship", "S1", {"x": 1})),
    ("read_only_entity", "reader", lambda h, w: h.change("customer", "C1", {"name": "Mallory"})),
    ("server_owned_field", "lineman", lambda h, w: h.change("job", w.jobs["outage"], {"priority": 1})),
    ("not_in_scope", "reader", lambda h, w: h.reading("M5", 10)),
    ("not_in_scope", "lineman", lambda h, w: h.note(w.jobs["other"], "not mine")),
    ("not_found_record", "reader", lambda h, w: h.reading("M-nope", 10)),
    ("not_found_record", "lineman", lambda h, w: h.change("job", "J-nope", {"cause": "x"})),
    ("id_reuse", "reader", _id_reuse),
    ("transition_not_allowed", "lineman", lambda h, w: h.status(w.jobs["outage"], "cancelled")),
    ("unknown_round", "lineman", lambda h, w: h.status(w.jobs["outage"], "en_route", round_=3)),
    ("reading_invalid", "reader", lambda h, w: h.reading("M1", 100_000)),
    ("validation_error", "reader", _bad_data),
]


@pytest.mark.parametrize(("code", "username", "make"), REJECTIONS, ids=[f"{c}-{u}" for c, u, _ in REJECTIONS])
def test_per_change_rejection_reason(app, client, world, code, username, make):
    handheld = device(app, client, username)
    change = make(handheld, world)
    before = table_dump(app, exclude={"change_receipts", "devices"})
    receipts = counts(app, "change_receipts")["change_receipts"]
    response = handheld.push(change)
    assert response.status_code == 200, response.get_json()
    (result,) = response.get_json()["results"]
    assert result["change_id"] == change["change_id"]
    assert ERRORS[expect_rejected(result, code)["code"]].status == 422
    assert table_dump(app, exclude={"change_receipts", "devices"}) == before
    # the rejected change is kept (its payload, for staff), except a reused id, which has a receipt already
    assert counts(app, "change_receipts")["change_receipts"] == receipts + (code != "id_reuse")


# --- the whole table ------------------------------------------------------------------------------


def test_every_error_code_is_exercised():
    """Runs last: every code in ERRORS was returned by one of the tests above (run the whole module)."""
    assert set(ERRORS) - EXERCISED == set(), "codes no test exercised"
    assert EXERCISED - set(ERRORS) == set()
