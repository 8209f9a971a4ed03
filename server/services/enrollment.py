"""Enrolling handhelds: one-time codes (single use, expiring) exchanged for a device bearer token.

Codes and tokens are stored only as SHA-256 hashes: they are long random secrets, so a fast hash is
enough (unlike passwords), and a leaked database reveals neither.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select

from sync_protocol import ProtocolError

from ..extensions import db
from ..models import Device, EnrollmentCode, User, utcnow
from .ids import new_id

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: typed on a handheld with gloves
CODE_LENGTH = 12  # 60 bits of entropy


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalise_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


def issue_code(user: User, ttl_hours: int) -> str:
    """A new one-time enrolment code for `user`, shown once (formatted XXXX-XXXX-XXXX)."""
    if not user.active:
        raise ProtocolError("validation_error", "the user is deactivated", {"user": ["Inactive."]})
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    db.session.add(
        EnrollmentCode(
            code_hash=secret_hash(code), user_id=user.id, expires_at=utcnow() + dt.timedelta(hours=ttl_hours)
        )
    )
    return "-".join(code[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def enroll(code: str, device_name: str, platform: str, app_version: str) -> tuple[Device, User, str]:
    """Spend a code: create the device and return it with its user and its bearer token (shown once)."""
    now = utcnow()
    row = (
        db.session.execute(
            select(EnrollmentCode)
            .where(EnrollmentCode.code_hash == secret_hash(normalise_code(code)))
            .with_for_update()
        )
        .scalars()
        .first()
    )
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise ProtocolError("invalid_enrollment_code")
    user = db.session.get(User, row.user_id)
    if user is None or not user.active:
        raise ProtocolError("invalid_enrollment_code")
    token = "fs1." + secrets.token_urlsafe(32)
    device = Device(
        id=new_id("D"),
        user_id=user.id,
        name=device_name,
        platform=platform,
        app_version=app_version,
        token_hash=secret_hash(token),
        created_at=now,
    )
    db.session.add(device)
    row.used_at, row.device_id = now, device.id
    return device, user, token


def authenticate(token: str) -> Device | None:
    """The active device holding `token`, or None (unknown or revoked)."""
    device = db.session.execute(select(Device).where(Device.token_hash == secret_hash(token))).scalars().first()
    if device is None or device.revoked_at is not None:
        return None
    return device


def revoke(device: Device) -> None:
    if device.revoked_at is None:
        device.revoked_at = utcnow()
