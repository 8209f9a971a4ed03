"""Request and response bodies of the JSON API: gzip both ways, size limits, strict JSON parsing; the
security headers every response carries."""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zlib
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import BadRequest, NotFound

from sync_protocol import ProtocolError

MIN_GZIP_BYTES = 1024  # smaller responses are not worth compressing
JSON_BODY_KEY = "fieldsync.json_body"
# The deepest message of the protocol nests 5 levels (push > changes > change > data > gps). Deeper
# bodies are refused before anything recurses over them (validation, hashing, storing as JSON).
MAX_JSON_DEPTH = 32
# NUL cannot be stored in a PostgreSQL text column, and an unpaired surrogate (JSON can spell one as a
# \ud800 escape) has no UTF-8 form at all: text holding either is refused, never passed to the database.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "Contains a NUL character or an unpaired surrogate, which cannot be stored."


def _decompress(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body without ever holding more than `limit` decoded bytes (gzip bombs)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise ProtocolError("payload_too_large", f"The decoded body exceeds {limit} bytes.")
        if not inflater.eof:
            raise ProtocolError("bad_request", "The gzip body is truncated.")
        if inflater.unused_data:  # another gzip member or junk: a standard decoder would read it as more body
            raise ProtocolError("bad_request", "The body has data after the end of its gzip stream.")
    except zlib.error as exc:
        raise ProtocolError("bad_request", "The body is not valid gzip.") from exc
    return out


class _NotStrictJson(ValueError):
    """Text Python's json module accepts but JSON (RFC 8259) does not, or that means two things."""


def _not_json(name: str) -> Any:
    raise _NotStrictJson(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotStrictJson(f"the number {text[:40]} is out of range.")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object; a repeated key is refused (parsers disagree on which value wins)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _NotStrictJson(f"the key {key[:40]!r} appears twice in one object.")
        obj[key] = value
    return obj


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests containers more than `limit` deep (iterative: never recurses itself)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def unstorable_text(value: Any, prefix: str = "") -> dict[str, list[str]]:
    """{field path: [message]} for every string or key in a decoded body that no database can store."""
    found: dict[str, list[str]] = {}
    if isinstance(value, str):
        if UNSTORABLE.search(value):
            found[prefix or "_schema"] = [UNSTORABLE_MESSAGE]
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            if UNSTORABLE.search(key):
                found[path] = [UNSTORABLE_MESSAGE]
            else:
                found.update(unstorable_text(item, path))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.update(unstorable_text(item, f"{prefix}.{index}" if prefix else str(index)))
    return found


def json_body() -> dict[str, Any]:
    """The request's JSON object, decoded (and gunzipped) once; errors are ProtocolErrors."""
    # cached in the request's environ, not on `g`: g lives as long as the app context, which can
    # outlive one request (a test client called inside an app context), and would serve a stale body
    if JSON_BODY_KEY in request.environ:
        return request.environ[JSON_BODY_KEY]
    mimetype = request.mimetype
    if mimetype != "application/json":
        raise ProtocolError("unsupported_media_type", "Send Content-Type: application/json.")
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    # werkzeug cuts a streamed (chunked) body at the limit instead of refusing it: one more byte means it was over
    streamed = request.content_length is None and limit is not None and len(raw) >= limit
    if streamed and request.environ["wsgi.input"].read(1):
        raise ProtocolError("payload_too_large", f"The body exceeds {limit} bytes.")
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding == "gzip":
        raw = _decompress(raw, current_app.config["MAX_DECODED_BODY_BYTES"])
    elif encoding != "identity":
        raise ProtocolError("unsupported_media_type", f"Content-Encoding {encoding!r} is not supported.")
    try:
        body = json.loads(
            raw.decode("utf-8"),
            parse_constant=_not_json,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_request", "The body is not valid UTF-8.") from exc
    except _NotStrictJson as exc:
        raise ProtocolError("bad_request", f"The body is not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, an integer of > 4300 digits
        raise ProtocolError("bad_request", "The body is not valid JSON.") from exc
    if _depth_exceeds(body, MAX_JSON_DEPTH):
        raise ProtocolError("bad_request", f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    if not isinstance(body, dict):
        raise ProtocolError("validation_error", "The body must be a JSON object.", {"_schema": ["Expected an object."]})
    request.environ[JSON_BODY_KEY] = body
    return body


def _refuse_unstorable_url() -> None:
    """NUL in a query parameter or path segment (%00) would reach a database query, where PostgreSQL fails
    on it (a 500): refused first. No id can hold one (not found); no filter either (invalid)."""
    api = request.path.startswith("/api/")
    if any(UNSTORABLE.search(str(value)) for value in (request.view_args or {}).values()):
        raise ProtocolError("not_found", "No such resource.") if api else NotFound()
    bad = {
        name: [UNSTORABLE_MESSAGE]
        for name, value in request.args.items(multi=True)
        if UNSTORABLE.search(name) or UNSTORABLE.search(value)
    }
    if bad:
        raise ProtocolError("validation_error", "Some query parameters are invalid.", bad) if api else BadRequest()


def _gzip_response(response: Response) -> Response:
    if (
        not request.path.startswith("/api/")
        or response.direct_passthrough
        or response.status_code < 200
        or "Content-Encoding" in response.headers
        or request.accept_encodings.quality("gzip") <= 0
    ):
        return response
    data = response.get_data()
    if len(data) < MIN_GZIP_BYTES:
        return response
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=5, mtime=0) as zipped:
        zipped.write(data)
    response.set_data(buffer.getvalue())
    response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    return response


# Sent with every response (views may set their own). The pages load only their own stylesheet and scripts
# and are framed by nobody. Scripts: `script-src-elem 'self'` lets no <script> element run but the pages'
# own files, nor a javascript: URL. Inline event-handler attributes still fall back to `script-src`, which
# allows them, because base.html's language switch is one (onchange="this.form.submit()"): hashing it
# needs 'unsafe-hashes', which older browsers lack, and they would lose the switch. Moving that handler to
# a static file would let `'unsafe-inline'` go. Browsers without script-src-elem fall back to script-src.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "script-src-elem 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "same-origin",  # page URLs carry searches (names, addresses): not for other sites
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_http(app: Flask) -> None:
    app.before_request(_refuse_unstorable_url)
    app.after_request(_gzip_response)
    app.after_request(_security_headers)
