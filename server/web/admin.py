"""Administration pages: handhelds (who holds which, their last sync, clock and conflicts; revocation) and
people (users and their roles, one-time enrolment codes, staff API tokens). Administrators only.

Every change runs in one write transaction (server/database.py) and flashes what it did. Secrets (an
enrolment code, an API token) are stored hashed by their services and shown once, on a page that no
cache keeps (Cache-Control: no-store); they never travel in a URL, a redirect or the session cookie.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import Select, func, or_, select

from sync_protocol import ProtocolError

from ..database import write_transaction
from ..extensions import db
from ..models import ApiToken, ConflictRecord, Device, EnrollmentCode, User, utcnow
from ..services import apitokens, enrollment, users
from . import bp
from .access import admin_required
from .listing import paginate

MIN_PASSWORD_LENGTH = 10
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,79}\Z")
MAX_DISPLAY_NAME = 200
MAX_TOKEN_NAME = 80
MAX_CODE_HOURS = 24 * 30
ROLE_LABELS: Mapping[str, Any] = {
    "lineman": _l("Lineman"),
    "meter_reader": _l("Meter reader"),
    "staff": _l("Service-centre staff"),
    "admin": _l("Administrator"),
}
DEVICE_STATES = ("active", "revoked", "all")
DATETIME_FORMAT = "yyyy-MM-dd HH:mm"  # tables show UTC (the servers' and handhelds' common clock)
USER_STATES = ("active", "inactive", "all")


# --- handhelds ----------------------------------------------------------------------------------------


@bp.get("/admin/devices")
@admin_required
def admin_devices() -> Any:
    """Enrolled handhelds, most recently seen first, with their user, last sync, clock offset and
    unresolved conflicts."""
    state = _choice(request.args.get("state"), DEVICE_STATES)
    query = request.args.get("q", "").strip()
    statement = select(Device).join(User, User.id == Device.user_id)
    if state == "active":
        statement = statement.where(Device.revoked_at.is_(None))
    elif state == "revoked":
        statement = statement.where(Device.revoked_at.is_not(None))
    if query:
        like = f"%{_escape_like(query)}%"
        statement = statement.where(
            or_(
                Device.id == query,
                Device.name.ilike(like, escape="\\"),
                User.username.ilike(like, escape="\\"),
                User.display_name.ilike(like, escape="\\"),
            )
        )
    statement = statement.order_by(Device.last_seen_at.is_(None), Device.last_seen_at.desc(), Device.id)
    page = paginate(statement)
    ids = [device.id for device in page.items]
    owners = _by_id(User, {device.user_id for device in page.items})
    conflicts: dict[str, int] = {}
    if ids:
        conflicts = dict(
            db.session.execute(
                select(ConflictRecord.device_id, func.count())
                .where(ConflictRecord.device_id.in_(ids), ConflictRecord.resolved_at.is_(None))
                .group_by(ConflictRecord.device_id)
            ).all()
        )
    skew_ms = current_app.config["MAX_CLOCK_SKEW_MS"]
    rows = [
        {
            "device": device,
            "user": owners.get(device.user_id),
            "conflicts": conflicts.get(device.id, 0),
            "offset": offset_text(device.clock_offset_ms),
            "offset_flagged": device.clock_offset_ms is not None and abs(device.clock_offset_ms) > skew_ms,
        }
        for device in page.items
    ]
    return render_template(
        "admin_devices.html",
        rows=rows,
        page=page,
        state=state,
        states=DEVICE_STATES,
        query=query,
        skew_minutes=skew_ms // 60_000,
        roles=ROLE_LABELS,
        now=utcnow(),
    )


@bp.route("/admin/devices/<device_id>/revoke", methods=["GET", "POST"])
@admin_required
def admin_revoke_device(device_id: str) -> Any:
    """GET asks for confirmation; POST revokes the handheld's token (refused from its next request)."""
    device = _get_or_404(Device, device_id)
    owner = db.session.get(User, device.user_id)
    if request.method == "GET":
        return render_template(
            "admin_confirm.html",
            title=_("Revoke handheld %(name)s?", name=device.name),
            message=_(
                "%(user)s's handheld will be refused from its next request. Work it has not synced stays "
                "on the handheld; enrol it again with a new code to recover it.",
                user=owner.display_name if owner else "?",
            ),
            details=[(_("Device id"), device.id), (_("Platform"), device.platform or "-")],
            action=url_for("web.admin_revoke_device", device_id=device.id),
            button=_("Revoke handheld"),
            cancel=url_for("web.admin_devices"),
        )

    def work() -> Device:
        row = _get_or_404(Device, device_id)
        enrollment.revoke(row)
        return row

    write_transaction(work)
    flash(_("Handheld %(name)s revoked: its next sync will be refused.", name=device.name))
    return redirect(url_for("web.admin_devices"))


# --- users ----------------------------------------------------------------------------------------------


@bp.get("/admin/users")
@admin_required
def admin_users() -> Any:
    return _users_page()


@bp.post("/admin/users")
@admin_required
def admin_create_user() -> Any:
    """Create a user: field users get no password (they enrol handhelds with codes); staff and
    administrators sign in with a password of at least MIN_PASSWORD_LENGTH characters."""
    form = {name: request.form.get(name, "").strip() for name in ("username", "display_name", "role")}
    password, repeat = request.form.get("password", ""), request.form.get("password_repeat", "")
    errors: dict[str, str] = {}
    if not USERNAME.match(form["username"]):
        errors["username"] = _("2 to 80 letters, digits, dots, dashes or underscores, starting with a letter or digit.")
    if len(form["display_name"]) > MAX_DISPLAY_NAME:
        errors["display_name"] = _("At most %(n)d characters.", n=MAX_DISPLAY_NAME)
    if form["role"] not in User.ROLES:
        errors["role"] = _("Choose a role.")
    elif form["role"] in User.STAFF_ROLES:
        if len(password) < MIN_PASSWORD_LENGTH:
            errors["password"] = _("At least %(n)d characters.", n=MIN_PASSWORD_LENGTH)
        elif password != repeat:
            errors["password_repeat"] = _("The two passwords differ.")
    elif password:
        errors["password"] = _("Field users have no password: they enrol a handheld with a one-time code.")
    if not errors:
        try:
            user = write_transaction(
                lambda: users.create_user(
                    form["username"],
                    form["role"],
                    form["display_name"] or form["username"],
                    password if form["role"] in User.STAFF_ROLES else None,
                )
            )
        except ProtocolError as exc:
            if "username" not in exc.fields:
                raise
            errors["username"] = _("This user name is taken.")
        else:
            if user.is_field:
                flash(
                    _(
                        "User %(username)s created. Issue an enrolment code to set up their handheld.",
                        username=user.username,
                    )
                )
            else:
                flash(_("User %(username)s created: they can sign in now.", username=user.username))
            return redirect(url_for("web.admin_users"))
    return _users_page(form=form, errors=errors, status=400)


@bp.route("/admin/users/<user_id>/deactivate", methods=["GET", "POST"])
@admin_required
def admin_deactivate_user(user_id: str) -> Any:
    """GET asks for confirmation; POST deactivates: the user can no longer sign in, their handhelds and
    API tokens are refused (until reactivated). An administrator cannot deactivate themselves."""
    user = _get_or_404(User, user_id)
    if user.id == current_user.id:
        return _users_page(page_error=_("You cannot deactivate your own account."), status=400)
    if request.method == "GET":
        return render_template(
            "admin_confirm.html",
            title=_("Deactivate %(username)s?", username=user.username),
            message=_(
                "%(name)s will no longer be able to sign in; their handhelds and API tokens are refused until "
                "the account is reactivated. Nothing they recorded is deleted.",
                name=user.display_name,
            ),
            details=[(_("Role"), ROLE_LABELS[user.role])],
            action=url_for("web.admin_deactivate_user", user_id=user.id),
            button=_("Deactivate"),
            cancel=url_for("web.admin_users"),
        )
    _set_active(user_id, False)
    flash(_("User %(username)s deactivated.", username=user.username))
    return redirect(url_for("web.admin_users"))


@bp.post("/admin/users/<user_id>/reactivate")
@admin_required
def admin_reactivate_user(user_id: str) -> Any:
    user = _get_or_404(User, user_id)
    _set_active(user_id, True)
    flash(_("User %(username)s reactivated.", username=user.username))
    return redirect(url_for("web.admin_users"))


def _set_active(user_id: str, active: bool) -> None:
    def work() -> None:
        _get_or_404(User, user_id).active = active

    write_transaction(work)


@bp.post("/admin/users/<user_id>/enrollment-code")
@admin_required
def admin_issue_code(user_id: str) -> Any:
    """A one-time enrolment code for a field user's handheld, shown once on the page this returns."""
    user = _get_or_404(User, user_id)
    default_hours = current_app.config["ENROLL_CODE_TTL_HOURS"]
    hours = _int(request.form.get("hours"), default_hours)
    error = None
    if not user.is_field:
        error = _("Only linemen and meter readers enrol handhelds.")
    elif not user.active:
        error = _("%(username)s is deactivated: reactivate the account first.", username=user.username)
    elif not 1 <= hours <= MAX_CODE_HOURS:
        error = _("A code is valid for 1 to %(n)d hours.", n=MAX_CODE_HOURS)
    if error:
        return _users_page(page_error=error, status=400)

    def work() -> tuple[str, dt.datetime]:
        code = enrollment.issue_code(_get_or_404(User, user_id), hours)
        row = db.session.execute(
            select(EnrollmentCode).where(
                EnrollmentCode.code_hash == enrollment.secret_hash(enrollment.normalise_code(code))
            )
        ).scalar_one()
        return code, row.expires_at

    code, expires_at = write_transaction(work)
    flash(_("Enrolment code issued for %(username)s.", username=user.username))
    return _secret_page(
        title=_("Enrolment code for %(name)s", name=user.display_name),
        secret=code,
        lines=[
            _("Type it into the handheld's enrolment screen (or `python -m pda_client enroll --code ...`)."),
            _("It works once and expires %(at)s.", at=_datetime(expires_at)),
        ],
        back=url_for("web.admin_users"),
    )


# --- staff API tokens ------------------------------------------------------------------------------------


@bp.post("/admin/tokens")
@admin_required
def admin_issue_token() -> Any:
    """A staff API token for an active staff member or administrator, shown once."""
    owner_id = request.form.get("user_id", "")
    name = request.form.get("name", "").strip()
    owner = db.session.get(User, owner_id) if owner_id else None
    errors: dict[str, str] = {}
    if owner is None or not owner.is_staff or not owner.active:
        errors["token_user"] = _("Choose an active staff member or administrator.")
    if not name or len(name) > MAX_TOKEN_NAME:
        errors["token_name"] = _(
            "Name the integration that will use the token (at most %(n)d characters).", n=MAX_TOKEN_NAME
        )
    if errors:
        form = {"token_user": owner_id, "token_name": name}
        return _users_page(form=form, errors=errors, status=400)
    assert owner is not None

    def work() -> str:
        _row, token = apitokens.issue_token(_get_or_404(User, owner.id), name)
        return token

    token = write_transaction(work)
    flash(_("API token %(name)s issued for %(username)s.", name=name, username=owner.username))
    return _secret_page(
        title=_("API token %(name)s", name=name),
        secret=token,
        lines=[
            _("Send it as `Authorization: Bearer <token>` to the staff API (/api/v1/staff/...)."),
            _("It acts as %(username)s and works until it is revoked here.", username=owner.username),
        ],
        back=url_for("web.admin_users") + "#tokens",
    )


@bp.route("/admin/tokens/<token_id>/revoke", methods=["GET", "POST"])
@admin_required
def admin_revoke_token(token_id: str) -> Any:
    row = _get_or_404(ApiToken, token_id)
    owner = db.session.get(User, row.user_id)
    if request.method == "GET":
        return render_template(
            "admin_confirm.html",
            title=_("Revoke API token %(name)s?", name=row.name),
            message=_("Integrations using this token are refused from their next request."),
            details=[(_("Owner"), owner.username if owner else "?"), (_("Last used"), _datetime(row.last_used_at))],
            action=url_for("web.admin_revoke_token", token_id=row.id),
            button=_("Revoke token"),
            cancel=url_for("web.admin_users") + "#tokens",
        )

    def work() -> None:
        apitokens.revoke(_get_or_404(ApiToken, token_id))

    write_transaction(work)
    flash(_("API token %(name)s revoked.", name=row.name))
    return redirect(url_for("web.admin_users") + "#tokens")


# --- helpers ----------------------------------------------------------------------------------------------


def _users_page(
    form: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    page_error: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    state = _choice(request.args.get("state"), USER_STATES)
    role = request.args.get("role", "")
    query = request.args.get("q", "").strip()
    statement: Select = select(User)
    if state != "all":
        statement = statement.where(User.active.is_(state == "active"))
    if role in User.ROLES:
        statement = statement.where(User.role == role)
    if query:
        like = f"%{_escape_like(query)}%"
        statement = statement.where(
            or_(User.username.ilike(like, escape="\\"), User.display_name.ilike(like, escape="\\"))
        )
    page = paginate(statement.order_by(User.role, User.username))
    ids = [user.id for user in page.items]
    devices: dict[str, int] = {}
    if ids:
        devices = dict(
            db.session.execute(
                select(Device.user_id, func.count())
                .where(Device.user_id.in_(ids), Device.revoked_at.is_(None))
                .group_by(Device.user_id)
            ).all()
        )
    tokens = db.session.execute(
        select(ApiToken, User.username)
        .join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc())
    ).all()
    owners = db.session.execute(
        select(User).where(User.role.in_(User.STAFF_ROLES), User.active.is_(True)).order_by(User.username)
    ).scalars()
    body = render_template(
        "admin_users.html",
        page=page,
        devices=devices,
        tokens=tokens,
        token_owners=list(owners),
        roles=ROLE_LABELS,
        role=role,
        state=state,
        states=USER_STATES,
        query=query,
        form=form or {},
        errors=errors or {},
        page_error=page_error,
        min_password=MIN_PASSWORD_LENGTH,
        code_hours=current_app.config["ENROLL_CODE_TTL_HOURS"],
        max_code_hours=MAX_CODE_HOURS,
    )
    return body, status


def _secret_page(*, title: str, secret: str, lines: list[str], back: str) -> Any:
    response = make_response(render_template("admin_secret.html", title=title, secret=secret, lines=lines, back=back))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def offset_text(ms: int | None) -> str:
    """A clock offset as people read it: "+7 min 5 s" (the handheld is ahead), "-3 s" (behind)."""
    if ms is None:
        return "-"
    seconds = abs(ms) // 1000
    sign = "" if seconds == 0 else "+" if ms > 0 else "-"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{sign}{hours} h {minutes} min"
    if minutes:
        return f"{sign}{minutes} min {seconds} s"
    return f"{sign}{seconds} s"


def _datetime(value: dt.datetime | None) -> str:
    return "-" if value is None else format_datetime(value, DATETIME_FORMAT) + " UTC"


def _choice(value: str | None, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else allowed[0]


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return -1


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _get_or_404(model: type, key: str) -> Any:
    row = db.session.get(model, key)
    if row is None:
        abort(404)
    return row


def _by_id(model: Any, ids: set[str]) -> dict[str, Any]:
    if not ids:
        return {}
    return {row.id: row for row in db.session.execute(select(model).where(model.id.in_(ids))).scalars()}

