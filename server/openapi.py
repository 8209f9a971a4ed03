"""The OpenAPI description of the HTTP API, generated from the same marshmallow schemas that validate
the wire (sync_protocol.schemas). A test checks it against the app's real routes."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify

from sync_protocol import ERRORS, PROTOCOL_HEADER, PROTOCOL_VERSION
from sync_protocol import schemas as s

from .auth import device_required

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

# (path, method, summary, request schema or None, success status, response schema, error codes, auth)
OPERATIONS: list[tuple[str, str, str, str | None, int, str | None, tuple[str, ...], bool]] = [
    ("/api/v1/health", "get", "Liveness and readiness", None, 200, None, ("unavailable",), False),
    (
        "/api/v1/devices/enroll",
        "post",
        "Exchange a one-time code for a device token",
        "EnrollRequest",
        201,
        "EnrollResponse",
        (
            "bad_request",
            "validation_error",
            "invalid_enrollment_code",
            "payload_too_large",
            "unsupported_media_type",
            "rate_limited",
        ),
        False,
    ),
    (
        "/api/v1/sync/hello",
        "get",
        "Negotiate the protocol version; server time, epoch, scope, limits",
        None,
        200,
        "HelloResponse",
        ("unauthorized", "forbidden", "validation_error", "upgrade_required", "resync_required"),
        True,
    ),
    (
        "/api/v1/sync/push",
        "post",
        "Apply a batch of changes (idempotent per change id)",
        "PushRequest",
        200,
        "PushResponse",
        (
            "bad_request",
            "unauthorized",
            "forbidden",
            "validation_error",
            "payload_too_large",
            "unsupported_media_type",
            "upgrade_required",
        ),
        True,
    ),
    (
        "/api/v1/sync/pull",
        "get",
        "A page of the device's scope after a cursor",
        None,
        200,
        "PullResponse",
        ("unauthorized", "forbidden", "validation_error", "resync_required", "upgrade_required"),
        True,
    ),
    ("/api/v1/openapi.json", "get", "This description", None, 200, None, ("unauthorized", "forbidden"), True),
]

SCHEMAS = {
    "EnrollRequest": s.EnrollRequestSchema,
    "EnrollResponse": s.EnrollResponseSchema,
    "HelloResponse": s.HelloResponseSchema,
    "PushRequest": s.PushRequestSchema,
    "PushResponse": s.PushResponseSchema,
    "PullResponse": s.PullResponseSchema,
    "Error": s.ErrorEnvelopeSchema,
    "Change": s.ChangeEnvelopeSchema,
    **{f"{entity.title().replace('_', '')}Data": schema for entity, schema in s.RECORD_SCHEMAS.items()},
}


def build_spec() -> dict[str, Any]:
    spec = APISpec(
        title="FieldSync API",
        version=f"protocol {PROTOCOL_VERSION}",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Sync API for handhelds; normative text in docs/protocol.md."},
    )
    spec.components.security_scheme("device", {"type": "http", "scheme": "bearer"})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    version_header = {
        "name": PROTOCOL_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "integer"},
    }
    for path, method, summary, request, status, response, errors, auth in OPERATIONS:
        operation: dict[str, Any] = {"summary": summary, "responses": {}}
        if auth:
            operation["security"] = [{"device": []}]
        if path.startswith("/api/v1/sync/"):
            operation["parameters"] = [version_header]
        if path.endswith("/pull"):
            operation["parameters"] += [
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ]
        if path.endswith("/hello"):
            operation["parameters"] += [
                {"name": "protocol_min", "in": "query", "schema": {"type": "integer"}},
                {"name": "protocol_max", "in": "query", "schema": {"type": "integer"}},
                {"name": "device_time_ms", "in": "query", "schema": {"type": "integer"}},
                {"name": "last_ack", "in": "query", "schema": {"type": "string", "maxLength": 64}},
            ]
        if request:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": request}},
            }
        ok: dict[str, Any] = {"description": "Success"}
        if response:
            ok["content"] = {"application/json": {"schema": response}}
        operation["responses"][str(status)] = ok
        for code in sorted({ERRORS[c].status for c in errors} | {500}):
            names = ", ".join(sorted(c for c in errors if ERRORS[c].status == code)) or "internal_error"
            operation["responses"][str(code)] = {
                "description": names,
                "content": {"application/json": {"schema": "Error"}},
            }
        spec.path(path=path, operations={method: operation})
    return spec.to_dict()


@bp.get("/openapi.json")
@device_required
def openapi_json() -> Any:
    return jsonify(build_spec())
