"""The service centre's pages (server-rendered). Views are split by subject into modules of this
package; each registers its routes on `bp`. Every page needs a signed-in staff member."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from flask_babel import lazy_gettext as _l

from ..extensions import csrf

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static")


# The navigation: (endpoint, label, admin only). A page appears once its module registers the endpoint.
NAV: list[tuple[str, Any, bool]] = [
    ("web.jobs_list", _l("Jobs"), False),
    ("web.readings_list", _l("Readings"), False),
    ("web.customers_list", _l("Customers"), False),
    ("web.kpis", _l("KPIs"), False),
    ("web.value_analysis", _l("Value analysis"), False),
    ("web.conflicts_list", _l("Conflicts"), False),
    ("web.admin_devices", _l("Devices & users"), True),
]


@bp.before_request
def _check_csrf() -> None:
    """Every form a page posts carries the session's CSRF token (Flask-WTF); refused with 400 otherwise."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


@bp.app_context_processor
def _layout_context() -> dict:
    from flask import current_app
    from flask_babel import get_locale
    from flask_login import current_user

    from .auth import LANGUAGES

    is_admin = getattr(current_user, "role", None) == "admin"
    items = [
        (endpoint, str(label))
        for endpoint, label, admin_only in NAV
        if endpoint in current_app.view_functions and (is_admin or not admin_only)
    ]
    return {"nav_items": items, "languages": LANGUAGES, "current_locale": str(get_locale() or "en")}


from . import admin, analysis, auth, conflicts, customers, home, jobs, kpis, readings  # noqa: E402,F401 - register routes
