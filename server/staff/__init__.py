"""The staff JSON API (/api/v1/staff/...): the service centre's queries for integrations.

Authentication: an API token (`Authorization: Bearer fsk....`, issued on the admin page) or a signed-in
staff session (the pages' own live updates). A device token is refused here, as an API token is on the
sync API."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, g
from flask_login import current_user

from sync_protocol import ProtocolError

from ..auth import bearer_token
from ..services import apitokens

bp = Blueprint("staff", __name__, url_prefix="/api/v1/staff")


def staff_api_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """An API token of an active staff member, or a signed-in staff session; sets g.staff_user."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = bearer_token()
        user = apitokens.authenticate(token) if token else None
        if user is None and token is None and current_user.is_authenticated and current_user.is_staff:
            user = current_user._get_current_object()
        if user is None:
            raise ProtocolError("unauthorized", "Send a staff API token (Authorization: Bearer fsk....).")
        g.staff_user = user
        return view(*args, **kwargs)

    return wrapped


from . import analysis, customers, jobs, readings  # noqa: E402,F401 - the modules register their routes on bp
