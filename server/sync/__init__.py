"""The sync API: hello (version negotiation), push, pull. Thin: validation and logic live in services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import func, select

from sync_protocol import (
    PROTOCOL_HEADER,
    SUPPORTED,
    ProtocolError,
    UnsupportedVersion,
    VersionRange,
    negotiate,
)
from sync_protocol.schemas import MAX_BATCH_CHANGES

from ..auth import device_required
from ..database import best_effort_write
from ..extensions import db
from ..http import json_body
from ..models import ChangeReceipt, Device, utcnow
from ..services import pull, push, scope, state
from ..services.clock import now_hlc
from ..services.records import iso

bp = Blueprint("sync", __name__, url_prefix="/api/v1/sync")


def _int_arg(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ProtocolError("validation_error", fields={name: ["Not a valid integer."]}) from exc


def _require_version(version: int | None) -> int:
    """Push and pull carry the negotiated version; outside the supported range the app must update."""
    if version is None:
        raise ProtocolError("validation_error", f"Send the {PROTOCOL_HEADER} header.", {PROTOCOL_HEADER: ["Missing."]})
    try:
        return negotiate(VersionRange(version, version))
    except (UnsupportedVersion, ValueError) as exc:
        raise ProtocolError("upgrade_required", str(exc)) from exc


def _envelope(version: int, body: dict[str, Any]) -> Any:
    return jsonify({"protocol": version, "server_time": iso(utcnow()), **body})


def _check_last_acknowledged(user_id: str, change_id: str | None) -> None:
    """Restore detection: the device names the newest change this server acknowledged to it. If the
    server has no receipt of it, the database was restored from an older backup and lost acknowledged
    work: the device must re-send its journal and download its scope again (DESIGN.md invariant 8)."""
    if not change_id:
        return
    if len(change_id) > 64:
        raise ProtocolError("validation_error", fields={"last_ack": ["Not a valid change id."]})
    owner = db.session.execute(select(ChangeReceipt.user_id).where(ChangeReceipt.change_id == change_id)).scalar()
    if owner != user_id:
        raise ProtocolError(
            "resync_required",
            "The server no longer has changes it acknowledged to this device (restored backup): "
            "re-send them, then download the scope again.",
        )


@bp.get("/hello")
@device_required
def hello() -> Any:
    """Negotiate the protocol version; tell the device the server time, epoch, its scope and limits."""
    header = _int_arg(request.headers.get(PROTOCOL_HEADER), PROTOCOL_HEADER)
    # the header stands in only for a bound the query leaves out (an explicit 0 is invalid, not absent)
    oldest = _int_arg(request.args.get("protocol_min"), "protocol_min")
    newest = _int_arg(request.args.get("protocol_max"), "protocol_max")
    oldest = header if oldest is None else oldest
    newest = header if newest is None else newest
    if oldest is None or newest is None:
        raise ProtocolError(
            "validation_error",
            "Say which protocol versions the app speaks.",
            {"protocol_min": ["Missing."], "protocol_max": ["Missing."]},
        )
    try:
        version = negotiate(VersionRange(oldest, newest))
    except UnsupportedVersion as exc:
        raise ProtocolError("upgrade_required", str(exc)) from exc
    except ValueError as exc:
        raise ProtocolError("validation_error", str(exc), {"protocol_min": ["Invalid range."]}) from exc
    device, user = g.device, g.user
    device_time = _int_arg(request.args.get("device_time_ms"), "device_time_ms")
    _check_last_acknowledged(user.id, request.args.get("last_ack"))
    counts = {
        entity: db.session.execute(
            select(func.count()).select_from(scope.SCOPES[entity](user.id).subquery())
        ).scalar_one()
        for entity in ("job", "route", "meter")
    }

    def touch() -> None:
        row = db.session.get(Device, device.id)
        row.last_seen_at = utcnow()
        if device_time is not None:
            row.clock_offset_ms = device_time - int(row.last_seen_at.timestamp() * 1000)

    best_effort_write(touch)
    config = current_app.config
    return _envelope(
        version,
        {
            "supported": {"oldest": SUPPORTED.oldest, "newest": SUPPORTED.newest},
            "server_hlc": str(now_hlc()),
            "epoch": state.epoch(),
            "device": {"id": device.id, "name": device.name},
            "user": {"id": user.id, "name": user.display_name, "role": user.role},
            "scope": {"jobs": counts["job"], "routes": counts["route"], "meters": counts["meter"]},
            "limits": {
                "max_batch_changes": MAX_BATCH_CHANGES,
                "max_body_bytes": config["MAX_CONTENT_LENGTH"],
                "page_bytes": config["PULL_PAGE_BYTES"],
            },
        },
    )


@bp.post("/push")
@device_required
def push_changes() -> Any:
    """Apply a batch of changes; per-change results in the same order."""
    body = json_body()
    header = _int_arg(request.headers.get(PROTOCOL_HEADER), PROTOCOL_HEADER)
    in_body = body.get("protocol")
    if in_body is not None and (not isinstance(in_body, int) or isinstance(in_body, bool)):
        raise ProtocolError("validation_error", fields={"protocol": ["Not a valid integer."]})
    version = _require_version(header if header is not None else in_body)
    if isinstance(body.get("protocol"), int) and body["protocol"] != version:
        raise ProtocolError(
            "validation_error",
            "The header and body disagree on the protocol version.",
            {"protocol": ["Differs from the header."]},
        )
    return _envelope(version, push.push_batch(g.device, g.user, body))


@bp.get("/pull")
@device_required
def pull_changes() -> Any:
    """One page of the device's scope after the cursor (no cursor: start a snapshot)."""
    version = _require_version(_int_arg(request.headers.get(PROTOCOL_HEADER), PROTOCOL_HEADER))
    limit = _int_arg(request.args.get("limit"), "limit")
    if limit is not None and limit < 1:
        raise ProtocolError("validation_error", fields={"limit": ["Must be at least 1."]})
    device_id = g.device.id
    page = pull.pull_page(g.user, request.args.get("cursor") or None, limit, device_id=device_id)

    def touch() -> None:
        db.session.get(Device, device_id).last_pull_at = dt.datetime.now(dt.UTC)

    best_effort_write(touch)
    return _envelope(version, page)
