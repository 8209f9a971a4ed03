"""Liveness and readiness, without authentication (for load balancers and monitors)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from sync_protocol import SUPPORTED

from ..extensions import db
from ..services import state

bp = Blueprint("health", __name__, url_prefix="/api/v1")


@bp.get("/health")
def health() -> Any:
    """200 when the database answers and is initialised; 503 otherwise."""
    try:
        db.session.execute(text("SELECT 1"))
        state.epoch()
        database = "ok"
    except Exception:  # any failure means "not ready"; details stay in the server log
        db.session.rollback()
        database = "unavailable"
    body = {
        "status": "ok" if database == "ok" else "unavailable",
        "database": database,
        "protocol": {"oldest": SUPPORTED.oldest, "newest": SUPPORTED.newest},
    }
    response = jsonify(body)
    response.status_code = 200 if database == "ok" else 503
    return response
