"""Users: one place for creating them (administration commands and demo data alike)."""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from sync_protocol import ProtocolError

from ..extensions import db
from ..models import User
from .ids import new_id


def create_user(username: str, role: str, display_name: str, password: str | None = None) -> User:
    """A new active user; staff and admins sign in with `password` (stored hashed), field users enrol
    handhelds with codes. Refuses an unknown role or a taken username."""
    if role not in User.ROLES:
        raise ProtocolError("validation_error", f"role must be one of {', '.join(User.ROLES)}", {"role": ["Unknown."]})
    if db.session.execute(select(User.id).where(User.username == username)).scalar():
        raise ProtocolError("validation_error", f"user {username!r} exists", {"username": ["Taken."]})
    user = User(
        id=new_id("U"),
        username=username,
        display_name=display_name,
        role=role,
        password_hash=generate_password_hash(password) if password else None,
    )
    db.session.add(user)
    return user
