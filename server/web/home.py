"""The start page after sign-in."""

from __future__ import annotations

from typing import Any

from flask import render_template

from sync_protocol import SUPPORTED

from . import bp
from .access import staff_required


@bp.get("/")
@staff_required
def index() -> Any:
    return render_template("home.html", protocol=SUPPORTED)
