"""API tokens for integrations with the staff API (stored hashed, shown once)."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from ..extensions import db
from ..models import ApiToken, User, utcnow
from .enrollment import secret_hash
from .ids import new_id

PREFIX = "fsk."  # staff keys; device tokens start with "fs1." and live in another table


def issue_token(user: User, name: str) -> tuple[ApiToken, str]:
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(id=new_id("K"), user_id=user.id, name=name[:80], token_hash=secret_hash(token))
    db.session.add(row)
    return row, token


def authenticate(token: str) -> User | None:
    """The active staff user holding an unrevoked API token, or None."""
    if not token.startswith(PREFIX):
        return None
    row = db.session.execute(select(ApiToken).where(ApiToken.token_hash == secret_hash(token))).scalars().first()
    if row is None or row.revoked_at is not None:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or not user.active or not user.is_staff:
        return None
    row.last_used_at = utcnow()
    return user


def revoke(row: ApiToken) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
