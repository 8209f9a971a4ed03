"""Settings of this database that sync depends on: its epoch and the change-log compaction watermark."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, func, select

from ..extensions import db
from ..models import ChangeLog, ServerState, SyncCounter

EPOCH = "epoch"
COMPACTED_BELOW = "compacted_below"


def _get(key: str) -> str | None:
    row = db.session.get(ServerState, key)
    return None if row is None else row.value


def _set(key: str, value: str) -> None:
    row = db.session.get(ServerState, key)
    if row is None:
        db.session.add(ServerState(key=key, value=value))
    else:
        row.value = value


def epoch() -> str:
    value = _get(EPOCH)
    if value is None:
        raise RuntimeError("database not initialised: run `flask --app server init-db`")
    return value


def compacted_below() -> int:
    return int(_get(COMPACTED_BELOW) or 0)


def initialise() -> bool:
    """Give a new database its epoch and sync counter; False when it already had them."""
    if _get(EPOCH) is not None:
        return False
    _set(EPOCH, secrets.token_hex(8))
    _set(COMPACTED_BELOW, "0")
    if db.session.get(SyncCounter, 1) is None:
        db.session.add(SyncCounter(id=1, value=0))
    return True


def rotate_epoch() -> str:
    """Start a new epoch: every device's next pull answers resync_required (use after a restore)."""
    value = secrets.token_hex(8)
    _set(EPOCH, value)
    return value


def compact(retention_days: int, now: dt.datetime | None = None) -> int:
    """Delete change-log rows older than the retention; cursors below the new watermark must resync.
    The newest row is always kept, so current cursors stay servable. Returns the rows deleted."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=retention_days)
    newest = db.session.execute(select(func.max(ChangeLog.seq))).scalar() or 0
    below = db.session.execute(
        select(func.max(ChangeLog.seq)).where(ChangeLog.created_at < cutoff, ChangeLog.seq < newest)
    ).scalar()
    if below is None:
        return 0
    deleted = db.session.execute(delete(ChangeLog).where(ChangeLog.seq <= below)).rowcount
    _set(COMPACTED_BELOW, str(below + 1))
    return deleted or 0
