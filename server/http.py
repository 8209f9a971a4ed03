"""Request and response bodies of the JSON API: gzip both ways, size limits, strict JSON parsing."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from typing import Any

from flask import Flask, Response, current_app, request

from sync_protocol import ProtocolError

MIN_GZIP_BYTES = 1024  # smaller responses are not worth compressing
JSON_BODY_KEY = "fieldsync.json_body"


def _decompress(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body without ever holding more than `limit` decoded bytes (gzip bombs)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise ProtocolError("payload_too_large", f"The decoded body exceeds {limit} bytes.")
        if not inflater.eof:
            raise ProtocolError("bad_request", "The gzip body is truncated.")
    except zlib.error as exc:
        raise ProtocolError("bad_request", "The body is not valid gzip.") from exc
    return out


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
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding == "gzip":
        raw = _decompress(raw, current_app.config["MAX_DECODED_BODY_BYTES"])
    elif encoding != "identity":
        raise ProtocolError("unsupported_media_type", f"Content-Encoding {encoding!r} is not supported.")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_request", "The body is not valid UTF-8.") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("bad_request", "The body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise ProtocolError("validation_error", "The body must be a JSON object.", {"_schema": ["Expected an object."]})
    request.environ[JSON_BODY_KEY] = body
    return body


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


def init_http(app: Flask) -> None:
    app.after_request(_gzip_response)
