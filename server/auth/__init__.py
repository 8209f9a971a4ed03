"""Device enrolment and bearer-token authentication of the sync API."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError

from sync_protocol import ProtocolError
from sync_protocol.schemas import EnrollRequestSchema

from ..database import write_transaction
from ..errors import validation_error
from ..extensions import db
from ..http import json_body, unstorable_text
from ..models import User, utcnow
from ..services import enrollment, ratelimit
from ..services.records import iso

bp = Blueprint("auth", __name__, url_prefix="/api/v1")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def device_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only an enrolled, unrevoked handheld of an active field user; sets g.device and g.user.
    Revocation takes effect on the very next request (the token is looked up every time)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = bearer_token()
        device = enrollment.authenticate(token) if token else None
        if device is None:
            raise ProtocolError("unauthorized")
        user = db.session.get(User, device.user_id)
        if user is None or not user.active:
            raise ProtocolError("unauthorized", "This account is deactivated.")
        if not user.is_field:
            raise ProtocolError("forbidden", "Only field accounts (linemen, meter readers) can sync.")
        g.device, g.user = device, user
        return view(*args, **kwargs)

    return wrapped


@bp.post("/devices/enroll")
def enroll() -> Any:
    """Exchange a one-time enrolment code for a device id and bearer token."""
    config = current_app.config
    ratelimit.hit(
        f"enroll:{request.remote_addr}", config["ENROLL_ATTEMPTS_PER_WINDOW"], config["ENROLL_WINDOW_SECONDS"]
    )
    raw = json_body()
    unstorable = unstorable_text(raw)
    if unstorable:
        raise ProtocolError("validation_error", fields=unstorable)
    try:
        body = EnrollRequestSchema().load(raw)
    except ValidationError as exc:
        raise validation_error(exc) from exc

    def work() -> tuple[Any, Any, str]:
        return enrollment.enroll(body["code"], body["device_name"], body["platform"], body["app_version"])

    device, user, token = write_transaction(work)
    response = jsonify(
        {
            "device_id": device.id,
            "token": token,
            "user": {"id": user.id, "name": user.display_name, "role": user.role},
            "server_time": iso(utcnow()),
        }
    )
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response
