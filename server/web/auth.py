"""Sign-in, sign-out and the language switch."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash

from sync_protocol import ProtocolError

from ..extensions import db, login_manager
from ..models import User
from ..services import ratelimit
from ..services.enrollment import secret_hash
from . import bp

LANGUAGES = {"en": "English", "zh": "中文"}
# compared when the username is unknown, so a failed sign-in takes as long either way
_DUMMY_HASH = "scrypt:32768:8:1$sQ4pV6b1mK0aH3fG$" + "0" * 128


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The session's user; a deactivated account's session ends with its next request."""
    user = db.session.get(User, user_id)
    return user if user is not None and user.active else None


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no open redirect to another host)."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("web.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("web.index"))
    error = None
    if request.method == "POST":
        config = current_app.config
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        window = config["LOGIN_WINDOW_SECONDS"]
        try:
            ratelimit.hit(f"login:{request.remote_addr}", config["LOGIN_ATTEMPTS_PER_WINDOW"], window)
            # per account as well (config.py); hashed: any text may be typed here, a key has 120 characters
            ratelimit.hit(f"login-user:{secret_hash(username)}", config["LOGIN_ATTEMPTS_PER_USER_WINDOW"], window)
        except ProtocolError as exc:
            return render_template("login.html", error=exc.message), 429, {"Retry-After": exc.fields["retry_after"][0]}
        # PostgreSQL text cannot hold NUL: such a name matches nobody (a failed sign-in, not a 500)
        found = select(User).where(User.username == username)
        user = None if "\x00" in username else db.session.execute(found).scalar()
        valid = check_password_hash(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        if user is not None and valid and user.active and user.is_staff:
            session.clear()  # a fresh session on sign-in (no fixation)
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        error = _("Unknown user name or wrong password.")
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout() -> Any:
    logout_user()
    session.clear()
    flash(_("Signed out."))
    return redirect(url_for("web.login"))


@bp.post("/language")
def set_language() -> Any:
    lang = request.form.get("lang", "en")
    if lang in LANGUAGES:
        session["lang"] = lang
    return redirect(_safe_next(request.form.get("next")))


def select_locale() -> str:
    """The language a page is shown in: the user's switch, else the browser's preference."""
    return session.get("lang") or request.accept_languages.best_match(list(LANGUAGES)) or "en"
