"""Raw transport abuse of the two endpoints that take a body (push and enrolment): each case is refused
with the JSON error envelope and a 4xx, and writes nothing; the enrolment body carries a real unused code,
which a refused request must not spend. tests/server/test_errors.py already covers, for push: a body over
Content-Length, a gzip bomb, invalid and truncated gzip, \\xff\\xfe, text/plain, a form, no Content-Type
and br; those are not repeated here.

The cases of one kind run as subtests of one test, on one app: building an app and its world costs
about a second (more on PostgreSQL), a refused case costs milliseconds and leaves the database as it was.
"""

from __future__ import annotations

import gzip
import io
import json
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.extensions import db
from server.models import User
from server.services import enrollment
from sync_protocol import PROTOCOL_VERSION
from sync_protocol.schemas import MAX_BATCH_CHANGES
from tests.fuzz.conftest import assert_refused_cleanly, column_values, fingerprint
from tests.server.world import Handheld, World

PUSH = "/api/v1/sync/push"
ENROLL = "/api/v1/devices/enroll"

Body = dict[str, Any]


class Endpoint:
    """A body-taking endpoint: where, with which headers, and a body it would accept."""

    def __init__(self, path: str, headers: dict[str, str], body: Callable[[], Body]) -> None:
        self.path, self.headers, self.body = path, headers, body

    def post(self, client: FlaskClient, data: bytes, headers: dict[str, str] | None = None, **options: Any) -> Any:
        merged = {**self.headers, "Content-Type": "application/json", **(headers or {})}
        return client.post(self.path, data=data, headers=merged, **options)


def push_body(reader: Handheld, changes: list[Body] | None = None) -> Body:
    changes = changes or [reader.reading("M1", 1300)]
    return {"protocol": PROTOCOL_VERSION, "batch_id": uuid.uuid4().hex, "changes": changes}


def issue_code(app: Flask, world: World) -> str:
    with app.app_context():
        code = enrollment.issue_code(db.session.get(User, world.users["lineman"]), 24)
        db.session.commit()
    return code


@pytest.fixture
def endpoints(app: Flask, reader: Handheld, world: World) -> dict[str, Endpoint]:
    app.config["ENROLL_ATTEMPTS_PER_WINDOW"] = 10**9  # these tests are about bodies, not the rate limit
    code = issue_code(app, world)
    return {
        "push": Endpoint(PUSH, reader.headers, lambda: push_body(reader)),
        "enroll": Endpoint(ENROLL, {}, lambda: {"code": code, "device_name": "pda"}),
    }


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def refused(app: Flask, response: Any, status: int, code: str, before: dict) -> dict[str, Any]:
    error = assert_refused_cleanly(app, response, before)
    assert (response.status_code, error["code"]) == (status, code), error
    return error


# --- size and compression --------------------------------------------------------------------------


def _bomb(body: bytes, padding: int) -> bytes:
    """`body` with `padding` spaces inside its JSON object, gzipped: tiny on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(body[:-1] + b" " * padding + body[-1:]) + compressor.flush()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


# name: (gzip body from a valid body and the app, expected status, code); "bomb" and "truncated" are
# covered for push in tests/server/test_errors.py
GZIP_CASES: dict[str, tuple[Callable[[bytes, Flask], bytes], int, str]] = {
    "bomb": (lambda body, app: _bomb(body, app.config["MAX_DECODED_BODY_BYTES"] + 1), 413, "payload_too_large"),
    "bomb-by-one-byte": (
        lambda body, app: _bomb(body, app.config["MAX_DECODED_BODY_BYTES"] - len(body) + 1),
        413,
        "payload_too_large",
    ),
    "crc-mismatch": (lambda body, app: _flip(gzip.compress(body), -6), 400, "bad_request"),
    "corrupt-deflate-data": (lambda body, app: _flip(gzip.compress(body), 12), 400, "bad_request"),
    "truncated": (lambda body, app: gzip.compress(body)[:-12], 400, "bad_request"),
    "header-only": (lambda body, app: gzip.compress(body)[:10], 400, "bad_request"),
    "empty": (lambda body, app: b"", 400, "bad_request"),
    # a standard decoder reads a second member (or fails on junk): the body is not what we would decode
    "second-member": (lambda body, app: gzip.compress(body) + gzip.compress(b'{"x": 1}'), 400, "bad_request"),
    "trailing-junk": (lambda body, app: gzip.compress(body) + b"junk", 400, "bad_request"),
    "gzip-inside-gzip": (lambda body, app: gzip.compress(gzip.compress(body)), 400, "bad_request"),
    "invalid-utf8-inside": (lambda body, app: gzip.compress(body[:-1] + b', "x": "\xff"}'), 400, "bad_request"),
    "deep-json-inside": (lambda body, app: gzip.compress(b"[" * 100_000), 400, "bad_request"),
    "nan-inside": (lambda body, app: gzip.compress(body[:-1] + b', "x": NaN}'), 400, "bad_request"),
    "duplicate-key-inside": (lambda body, app: gzip.compress(body[:-1] + b', "x": 1, "x": 2}'), 400, "bad_request"),
}
PUSH_COVERED = {"bomb", "truncated"}
ENCODINGS = ["deflate", "compress", "zstd", "x-gzip", "gzip, br", "gzip, gzip", "x-unknown"]
MEDIA_TYPES = ["application/xml", "multipart/form-data; boundary=x", "application/json-seq", "text/json"]


def test_bodies_that_cannot_be_read_are_refused(app, client, endpoints, subtests):
    """Over the size limit while streaming, bad gzip, unknown encodings and media types."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    for name, endpoint in endpoints.items():
        body = encode(endpoint.body())
        with subtests.test(msg=f"{name} streamed over the size limit"):
            # no Content-Length (chunked transfer): the limit holds while reading, not only from a header
            data = json.dumps({**endpoint.body(), "pad": " " * limit}).encode()
            before = fingerprint(app)
            response = client.post(
                endpoint.path,
                input_stream=io.BytesIO(data),
                headers={**endpoint.headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                environ_base={"wsgi.input_terminated": True},  # as gunicorn sets it
            )
            refused(app, response, 413, "payload_too_large", before)
        if name == "enroll":  # push: tests/server/test_errors.py
            with subtests.test(msg="enroll over Content-Length"):
                before = fingerprint(app)
                data = json.dumps({**endpoint.body(), "pad": " " * limit}).encode()
                refused(app, endpoint.post(client, data), 413, "payload_too_large", before)
        for case, (make, status, code) in GZIP_CASES.items():
            if name == "push" and case in PUSH_COVERED:
                continue
            with subtests.test(msg=f"{name} gzip {case}"):
                before = fingerprint(app)
                response = endpoint.post(client, make(body, app), headers={"Content-Encoding": "gzip"})
                refused(app, response, status, code, before)
        for encoding in ENCODINGS:
            with subtests.test(msg=f"{name} Content-Encoding {encoding}"):
                before = fingerprint(app)
                response = endpoint.post(client, gzip.compress(body), headers={"Content-Encoding": encoding})
                refused(app, response, 415, "unsupported_media_type", before)
        for media_type in MEDIA_TYPES:
            with subtests.test(msg=f"{name} Content-Type {media_type}"):
                before = fingerprint(app)
                refused(
                    app,
                    endpoint.post(client, body, {"Content-Type": media_type}),
                    415,
                    "unsupported_media_type",
                    before,
                )


# --- JSON text -------------------------------------------------------------------------------------

DEEP = 100_000


def _with(body: Body, text: str) -> bytes:
    """`body` with one more member, written as raw JSON text (json.dumps cannot write most of these)."""
    return (encode(body).decode()[:-1] + ', "extra": ' + text + "}").encode()


def _deep_change(body: Body, depth: int) -> bytes:
    """A push whose change (or an enrolment body whose field) holds a value nested `depth` deep: parsed fine,
    deep enough to break code that recurses over it afterwards (validation, hashing, storing as JSON)."""
    value = "[" * depth + "]" * depth
    if "changes" in body:
        change = encode(body["changes"][0]).decode()
        return encode(body).decode().replace(change, change[:-1] + ', "deep": ' + value + "}").encode()
    return _with(body, value)


JSON_CASES: dict[str, Callable[[Body], bytes]] = {
    "deep-arrays": lambda body: b"[" * DEEP + b"]" * DEEP,
    "deep-objects": lambda body: b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep-unclosed": lambda body: b"[" * DEEP,
    "deep-inside-a-valid-body": lambda body: _with(body, "[" * DEEP + "]" * DEEP),
    "nested-33-levels": lambda body: _deep_change(body, 33),
    "nested-500-levels": lambda body: _deep_change(body, 500),
    "nested-900-levels": lambda body: _deep_change(body, 900),
    "nested-990-levels": lambda body: _deep_change(body, 990),
    "utf8-bom": lambda body: b"\xef\xbb\xbf" + encode(body),
    "utf16": lambda body: json.dumps(body).encode("utf-16"),
    "overlong-utf8": lambda body: encode(body)[:-1] + b', "x": "\xc0\xaf"}',
    "utf8-encoded-surrogate": lambda body: encode(body)[:-1] + b', "x": "\xed\xa0\x80"}',
    "truncated-utf8-sequence": lambda body: encode(body)[:-1] + b', "x": "\xe2\x82"}',
    "lone-continuation-byte": lambda body: encode(body)[:-1] + b', "x": "\x80"}',
    "duplicate-key": lambda body: encode(body)[:-1] + b", " + encode(body)[1:],
    "duplicate-key-nested": lambda body: _with(body, '{"a": 1, "a": 2}'),
    "number-overflow": lambda body: _with(body, "1e999"),
    "negative-overflow": lambda body: _with(body, "-1e999"),
    "nan": lambda body: _with(body, "NaN"),
    "infinity": lambda body: _with(body, "Infinity"),
    "minus-infinity": lambda body: _with(body, "-Infinity"),
    "integer-of-5000-digits": lambda body: _with(body, "9" * 5000),
    "trailing-text": lambda body: encode(body) + b" x",
    "two-documents": lambda body: encode(body) + encode(body),
    "empty": lambda body: b"",
    "whitespace-only": lambda body: b" \n\t ",
    "nul-byte-after": lambda body: encode(body) + b"\x00",
    "single-quotes": lambda body: encode(body).replace(b'"', b"'"),
    "comment": lambda body: b"/* hi */" + encode(body),
}


def test_json_that_is_not_strict_json_is_bad_request(app, client, endpoints, subtests):
    for name, endpoint in endpoints.items():
        for case, make in JSON_CASES.items():
            with subtests.test(msg=f"{name} {case}"):
                data = make(endpoint.body())
                before = fingerprint(app)
                refused(app, endpoint.post(client, data), 400, "bad_request", before)


# Text no database can store: NUL (PostgreSQL text) and unpaired surrogates (no UTF-8 form), sent as JSON
# escapes, which are valid JSON; as raw bytes they would be invalid UTF-8 (the cases above).
UNSTORABLE = {"nul": "\\u0000", "high-surrogate": "\\ud800", "low-surrogate": "\\udc00", "reversed": "\\udc00\\ud800"}


def _inject(data: bytes, marker: str, text: str) -> bytes:
    """Put the JSON escape `text` at the start of the string `"<marker>..."`."""
    assert data.count(f'"{marker}'.encode()) == 1, data
    return data.replace(f'"{marker}'.encode(), f'"{text}{marker}'.encode())


def test_enrolment_with_unstorable_text_is_refused(app, client, world, subtests):
    app.config["ENROLL_ATTEMPTS_PER_WINDOW"] = 10**9
    code = issue_code(app, world)
    body = {"code": code, "device_name": "pda", "platform": "android", "app_version": "1.0", "@": 1}
    for field, marker in (("device_name", "pda"), ("platform", "android"), ("app_version", "1.0"), ("code", code)):
        for kind, text in UNSTORABLE.items():
            with subtests.test(msg=f"{field} {kind}"):
                before = fingerprint(app)
                data = _inject(encode({k: v for k, v in body.items() if k != "@"}), marker, text)
                response = client.post(ENROLL, data=data, headers={"Content-Type": "application/json"})
                error = refused(app, response, 422, "validation_error", before)
                assert field in error["fields"], error
    for kind, text in UNSTORABLE.items():
        with subtests.test(msg=f"field name {kind}"):
            before = fingerprint(app)
            response = client.post(
                ENROLL, data=_inject(encode(body), "@", text), headers={"Content-Type": "application/json"}
            )
            refused(app, response, 422, "validation_error", before)


# change builder, the marker string to put the text in front of, the field path the rejection names
UNSTORABLE_PLACES: dict[str, tuple[Callable[[Handheld], Body], str, str]] = {
    "reading note": (lambda h: h.reading("M1", 1300, note="@"), "@", "data.note"),
    "unknown entity": (lambda h: h.change("@", "X1", {}), "@", "entity"),
    "entity id": (lambda h: h.change("meter_reading", "@", {}), "@", "entity_id"),
    "field name": (lambda h: h.reading("M1", 1300, **{"@": 1}), "@", "data."),
    "skip code": (lambda h: h.reading("M1", None, skip_code="@"), "@", "data.skip_code"),
    "job note": (lambda h: h.note("J-outage", "@"), "@", "data.text"),
    "job field": (lambda h: h.change("job", "J-outage", {"cause": "@"}), "@", "data.cause"),
}


def test_change_with_unstorable_text_is_rejected_alone(app, client, world, reader, lineman, subtests):
    """Such a change is rejected with its reason (validation_error naming the field): it must not fail the
    batch, which would block the device's queue for ever, nor stop the valid change beside it."""
    for place, (make, marker, path) in UNSTORABLE_PLACES.items():
        for kind, text in UNSTORABLE.items():
            with subtests.test(msg=f"{place} {kind}"):
                handheld = lineman if place.startswith("job") else reader
                bad = make(handheld)
                good = handheld.note("J-outage", "fine") if handheld is lineman else reader.reading("M2", 1300)
                data = _inject(encode(push_body(handheld, [bad, good])), marker, text)
                facts = {t: column_values(app, t, "id") for t in ("meter_readings", "job_events")}
                response = client.post(
                    PUSH, data=data, headers={**handheld.headers, "Content-Type": "application/json"}
                )
                assert response.status_code == 200, (response.status_code, response.get_json())
                first, second = response.get_json()["results"]
                assert first["status"] == "rejected", first
                assert first["error"]["code"] == "validation_error", first
                assert any(name.startswith(path) for name in first["error"]["fields"]), first
                assert second["status"] == "applied", second
                table = "job_events" if handheld is lineman else "meter_readings"
                assert column_values(app, table, "id") == facts[table] | {good["entity_id"]}
                assert {bad["change_id"], good["change_id"]} <= column_values(app, "change_receipts", "change_id")


# --- batches ---------------------------------------------------------------------------------------

BREAKS: list[Callable[[Body], Body]] = [
    lambda c: {**c, "hlc": "not a stamp"},
    lambda c: {**c, "entity": "customer"},
    lambda c: {**c, "data": {**c["data"], "value": -1}},
    lambda c: {**c, "data": {**c["data"], "note": "x" * 1001}},
    lambda c: {**c, "data": {**c["data"], "meter_id": "M5"}},  # valid, but not on this reader's route
]


def test_batches_at_and_over_the_maximum(app, client, reader, subtests):
    with subtests.test(msg="one change over the maximum: refused whole"):
        changes = [reader.reading("M1", 1300) for _ in range(MAX_BATCH_CHANGES + 1)]
        before = fingerprint(app)
        response = client.post(PUSH, json=push_body(reader, changes), headers=reader.headers)
        error = refused(app, response, 422, "validation_error", before)
        assert "changes" in error["fields"], error
    with subtests.test(msg="the maximum with one id repeated: refused whole"):
        before = fingerprint(app)
        changes = [reader.reading("M1", 1300)] * MAX_BATCH_CHANGES
        refused(
            app,
            client.post(PUSH, json=push_body(reader, changes), headers=reader.headers),
            422,
            "validation_error",
            before,
        )
    with subtests.test(msg="the maximum, every change invalid: only receipts written"):
        changes = [BREAKS[i % len(BREAKS)](reader.reading("M1", 1300)) for i in range(MAX_BATCH_CHANGES)]
        options: dict[str, Any] = {
            "ignore_tables": {"change_receipts"},
            "ignore_columns": {"devices": {"last_push_at"}},
        }
        before = fingerprint(app, **options)
        receipts = column_values(app, "change_receipts", "change_id")
        response = client.post(PUSH, json=push_body(reader, changes), headers=reader.headers)
        assert response.status_code == 200, response.get_json()
        results = response.get_json()["results"]
        assert [r["change_id"] for r in results] == [c["change_id"] for c in changes]
        assert all(r["status"] == "rejected" and r["error"]["code"] for r in results)
        assert fingerprint(app, **options) == before
        assert column_values(app, "change_receipts", "change_id") - receipts == {c["change_id"] for c in changes}
