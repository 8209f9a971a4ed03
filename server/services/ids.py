"""Server-side identifiers."""

from __future__ import annotations

import secrets
import uuid


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def job_number(today_ymd: str) -> str:
    """A job number staff can read out on the phone: J<yymmdd>-<6 hex>."""
    return f"J{today_ymd}-{secrets.token_hex(3).upper()}"
