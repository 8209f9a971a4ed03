"""The change log that feeds pulls.

Services call `emit(...)` while they change data; just before the transaction commits, the pending
entries get sequence numbers from the single counter row, whose lock is held until commit. Sequence
order is therefore commit order on SQLite and PostgreSQL alike, and a pull cursor (the last sequence
number a device has seen) can never skip a transaction that took its number earlier but committed
later (DESIGN.md invariant 3). Only the last moments of a write transaction are serialised.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import ChangeLog, SyncCounter, utcnow

PENDING_KEY = "fieldsync_changefeed"


def emit(entity: str, entity_id: str, user_ids: Iterable[str | None], op: str = "upsert") -> None:
    """Record that `entity_id` changed for each user in `user_ids` (None entries are ignored)."""
    pending: dict[tuple[str, str, str], str] = db.session.info.setdefault(PENDING_KEY, {})
    for user_id in user_ids:
        if user_id:
            key = (user_id, entity, entity_id)
            pending.pop(key, None)  # keep the latest op, in emission order
            pending[key] = op


def _assign_sequence(session: Session) -> None:
    pending: dict[tuple[str, str, str], str] = session.info.pop(PENDING_KEY, {})
    if not pending:
        return
    count = len(pending)
    # UPDATE takes the counter row's lock, held until this transaction ends.
    last = session.execute(
        update(SyncCounter)
        .where(SyncCounter.id == 1)
        .values(value=SyncCounter.value + count)
        .returning(SyncCounter.value)
    ).scalar_one_or_none()
    if last is None:
        raise RuntimeError("sync counter missing: run `flask init-db`")
    first = last - count + 1
    now = utcnow()
    rows = [
        {
            "seq": first + index,
            "uid": secrets.token_hex(8),
            "user_id": user_id,
            "entity": entity,
            "entity_id": entity_id,
            "op": op,
            "created_at": now,
        }
        for index, ((user_id, entity, entity_id), op) in enumerate(pending.items())
    ]
    session.execute(insert(ChangeLog), rows)


def discard_pending(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


def install(session_class: type[Session]) -> None:
    if not event.contains(session_class, "before_commit", _assign_sequence):
        event.listen(session_class, "before_commit", _assign_sequence)
        event.listen(session_class, "after_rollback", discard_pending)


def head() -> tuple[int, str]:
    """The newest committed sequence number and its row's uid ((0, "") on an empty log)."""
    row = db.session.execute(select(ChangeLog.seq, ChangeLog.uid).order_by(ChangeLog.seq.desc()).limit(1)).first()
    return (row.seq, row.uid) if row else (0, "")
