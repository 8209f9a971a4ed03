"""Liveness and readiness, without authentication (for load balancers and monitors)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from sync_protocol import SUPPORTED, ProtocolError

from ..extensions import db
from ..services import state

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__, url_prefix="/api/v1")


@bp.get("/health")
def health() -> Any:
    """200 with the status when the database answers and is initialised; otherwise 503 with the
    protocol's error envelope (code `unavailable`, the failing part under `fields`), like every API error."""
    try:
        db.session.execute(text("SELECT 1"))
        state.epoch()
    except Exception as exc:  # any failure means "not ready"; details stay in the server log
        db.session.rollback()
        log.warning("health check failed: %s", exc)
        raise ProtocolError(
            "unavailable", fields={"database": ["Not answering, or not initialised (flask init-db)."]}
        ) from exc
    body = {
        "status": "ok",
        "database": "ok",
        "protocol": {"oldest": SUPPORTED.oldest, "newest": SUPPORTED.newest},
    }
    return jsonify(body)
