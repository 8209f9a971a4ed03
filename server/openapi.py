"""The OpenAPI description of the HTTP API, generated from the same marshmallow schemas that validate
the wire (sync_protocol.schemas). A test checks it against the app's real routes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify
from flask_login import current_user
from marshmallow import Schema

from sync_protocol import ERRORS, PROTOCOL_HEADER, PROTOCOL_VERSION, ProtocolError
from sync_protocol import schemas as s

from .auth import bearer_token, device_required
from .services import apitokens

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


@dataclass(frozen=True)
class StaffOperation:
    path: str
    method: str
    summary: str
    query: type[Schema] | None  # query parameters
    request: type[Schema] | None  # JSON body
    status: int
    response: type[Schema] | None
    errors: tuple[str, ...]


STAFF_OPERATIONS: list[StaffOperation] = []


def document_staff(
    path: str,
    method: str,
    summary: str,
    *,
    query: type[Schema] | None = None,
    request: type[Schema] | None = None,
    status: int = 200,
    response: type[Schema] | None = None,
    errors: tuple[str, ...] = ("unauthorized", "validation_error"),
) -> None:
    """Describe a staff-API operation (called by the module that defines it, next to its route)."""
    STAFF_OPERATIONS.append(StaffOperation(path, method, summary, query, request, status, response, errors))


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
    spec.components.security_scheme("staff", {"type": "http", "scheme": "bearer", "description": "fsk. API token"})
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
            # pull refuses a request without it; hello may give its range in the query, push in its body
            operation["parameters"] = [{**version_header, "required": path.endswith("/pull")}]
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
    paths: dict[str, dict[str, Any]] = {}
    for op in STAFF_OPERATIONS:
        operation = {"summary": op.summary, "security": [{"staff": []}], "responses": {}}
        if op.query is not None:
            operation["parameters"] = [{"in": "query", "schema": op.query}]
        if op.request is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.request}}}
        ok: dict[str, Any] = {"description": "Success"}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": op.response}}
        operation["responses"][str(op.status)] = ok
        for code in sorted({ERRORS[c].status for c in op.errors} | {500}):
            names = ", ".join(sorted(c for c in op.errors if ERRORS[c].status == code)) or "internal_error"
            operation["responses"][str(code)] = {
                "description": names,
                "content": {"application/json": {"schema": "Error"}},
            }
        paths.setdefault(op.path, {})[op.method] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return _json_numbers(spec.to_dict())


def _json_numbers(node: Any) -> Any:
    """apispec gives a Decimal field's bounds as Decimals, which Flask's JSON writes as strings
    ("minimum": "0"): not a number to OpenAPI. They become JSON numbers here."""
    if isinstance(node, dict):
        return {key: _json_numbers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_json_numbers(value) for value in node]
    if isinstance(node, Decimal):
        return int(node) if node == node.to_integral_value() else float(node)
    return node


@bp.get("/openapi.json")
def openapi_json() -> Any:
    """The description, for a device token, a staff API token or a signed-in staff session."""
    token = bearer_token()
    if token and token.startswith(apitokens.PREFIX):
        if apitokens.authenticate(token) is None:
            raise ProtocolError("unauthorized")
        return jsonify(build_spec())
    if token is None and current_user.is_authenticated and current_user.is_staff:
        return jsonify(build_spec())
    return _for_a_device()


@device_required
def _for_a_device() -> Any:
    return jsonify(build_spec())
