"""Error codes of the wire protocol: one table, read by the server (HTTP status) and the client (advice).

Every error travels in the same envelope: {"error": {"code", "message", "fields"}}. `fields` maps dotted
field paths ("changes.3.data.value") to messages. The same codes name per-change rejection reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ErrorKind:
    status: int  # HTTP status when the error ends a whole request
    message: str  # default text a person can act on


ERRORS: Mapping[str, ErrorKind] = {
    # request-level
    "bad_request": ErrorKind(400, "The request body is not valid JSON (or gzip)."),
    "validation_error": ErrorKind(422, "Some fields are missing or invalid."),
    "unauthorized": ErrorKind(401, "Sign in again: the device token is missing, unknown or revoked."),
    "invalid_enrollment_code": ErrorKind(401, "The enrolment code is unknown, used or expired."),
    "forbidden": ErrorKind(403, "This account may not use this endpoint."),
    "not_found": ErrorKind(404, "No such resource."),
    "method_not_allowed": ErrorKind(405, "This endpoint does not accept that method."),
    "resync_required": ErrorKind(
        409, "The server cannot continue from this cursor: push the outbox, then download the scope again."
    ),
    "payload_too_large": ErrorKind(413, "The request is too large: send fewer changes per batch."),
    "unsupported_media_type": ErrorKind(415, "Send JSON (optionally gzip-encoded)."),
    "upgrade_required": ErrorKind(426, "Update the app: this protocol version is no longer supported."),
    "rate_limited": ErrorKind(429, "Too many requests: wait and try again."),
    "internal_error": ErrorKind(500, "The server failed; the request changed nothing. Try again later."),
    "unavailable": ErrorKind(503, "The server is not ready; try again shortly."),
    # per-change rejection reasons (status 422 if ever used for a whole request)
    "unknown_entity": ErrorKind(422, "This kind of record cannot be sent by a device."),
    "read_only_entity": ErrorKind(422, "Reference data is changed only at the service centre."),
    "server_owned_field": ErrorKind(422, "This field is changed only at the service centre."),
    "not_in_scope": ErrorKind(422, "The record is not assigned to this user."),
    "not_found_record": ErrorKind(422, "The record this change refers to does not exist."),
    "id_reuse": ErrorKind(422, "This id was already used for different content."),
    "transition_not_allowed": ErrorKind(422, "This status change is not allowed from the field."),
    "unknown_round": ErrorKind(422, "The job round this change refers to does not exist."),
    "reading_invalid": ErrorKind(422, "The reading breaks a meter-reading rule."),
}


@dataclass(frozen=True)
class ProtocolError(Exception):
    """An error as a value: code from ERRORS, a message for people, optional field paths."""

    code: str
    message: str = ""
    fields: Mapping[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ERRORS:
            raise ValueError(f"unknown error code {self.code!r}")
        if not self.message:
            object.__setattr__(self, "message", ERRORS[self.code].message)

    @property
    def status(self) -> int:
        return ERRORS[self.code].status

    def to_wire(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "fields": dict(self.fields)}}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten marshmallow's nested error dict into {"a.0.b": ["msg", ...]}."""
    if isinstance(messages, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_messages(value, path))
        return flat
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "_schema": list(messages)}
    if isinstance(messages, list):
        flat = {}
        for index, value in enumerate(messages):
            flat.update(flatten_messages(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix or "_schema": [str(messages)]}
