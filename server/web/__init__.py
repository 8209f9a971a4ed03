"""Browser pages. For now the landing page; the service-centre pages (sign-in, jobs, readings, KPIs,
customer analysis) are planned (docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from sync_protocol import SUPPORTED

bp = Blueprint("web", __name__, template_folder="templates")


@bp.get("/")
def index() -> Any:
    return render_template("index.html", protocol=SUPPORTED)
