"""Fixed-window rate limits shared by all server processes (the counts live in the database)."""

from __future__ import annotations

import datetime as dt
import math

from sync_protocol import ProtocolError

from ..database import write_transaction
from ..extensions import db
from ..models import RateLimitWindow, utcnow


def hit(key: str, limit: int, window_seconds: int) -> None:
    """Count one request for `key`; raise rate_limited (429, with retry_after) past `limit` per window.
    Committed on its own, so failed attempts count too."""

    def work() -> float | None:
        now = utcnow()
        row = db.session.get(RateLimitWindow, key, with_for_update=True)
        if row is None:
            db.session.add(RateLimitWindow(key=key, window_start=now, count=1))
            return None
        elapsed = (now - row.window_start).total_seconds()
        if elapsed >= window_seconds:
            row.window_start, row.count = now, 1
            return None
        row.count += 1
        return window_seconds - elapsed if row.count > limit else None

    retry_after = write_transaction(work)
    if retry_after is not None:
        raise ProtocolError(
            "rate_limited",
            f"Too many attempts: try again in {math.ceil(retry_after)} s.",
            {"retry_after": [str(math.ceil(retry_after))]},
        )


def purge(older_than: dt.timedelta) -> int:
    cutoff = utcnow() - older_than
    return db.session.query(RateLimitWindow).filter(RateLimitWindow.window_start < cutoff).delete()
