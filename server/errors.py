"""Every API error leaves as the protocol's JSON envelope: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from sync_protocol import ProtocolError, flatten_messages

log = logging.getLogger(__name__)

# werkzeug's HTTP errors, in protocol codes
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(error: ProtocolError, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(error.to_wire())
    response.status_code = error.status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_error(exc: ValidationError, prefix: str = "") -> ProtocolError:
    fields = flatten_messages(exc.messages, prefix)
    return ProtocolError("validation_error", "Some fields are missing or invalid.", fields)


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ProtocolError)
    def _protocol_error(error: ProtocolError) -> Response:
        retry_after = error.fields.get("retry_after") if error.code == "rate_limited" else None
        return error_response(error, {"Retry-After": retry_after[0]} if retry_after else None)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        return error_response(validation_error(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response | HTTPException:
        if not _wants_json():
            return exc
        code = HTTP_CODES.get(exc.code or 500, "bad_request" if (exc.code or 500) < 500 else "internal_error")
        # keep the headers the status requires (Allow on a 405), not werkzeug's HTML content type
        headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
        response = error_response(ProtocolError(code), headers)
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ProtocolError("internal_error"))
