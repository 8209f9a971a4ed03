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


Pending = dict[tuple[str, str, str], tuple[str, str | None]]  # (user, entity, id) -> (op, origin device)


def emit(
    entity: str, entity_id: str, user_ids: Iterable[str | None], op: str = "upsert", origin: str | None = None
) -> None:
    """Record that `entity_id` changed for each user in `user_ids` (None entries are ignored).

    `origin` names the device whose pushed change alone caused this, stored exactly as it sent it: that
    device's pulls skip the row (its push answer told it everything). Leave it None for anything else."""
    pending: Pending = db.session.info.setdefault(PENDING_KEY, {})
    for user_id in user_ids:
        if user_id:
            key = (user_id, entity, entity_id)
            previous = pending.pop(key, None)  # keep the latest op, in emission order
            # two causes of one row in one transaction: it is the origin's own only if both are
            same_origin = previous is None or previous[1] == origin
            pending[key] = (op, origin if same_origin else None)


def _assign_sequence(session: Session) -> None:
    pending: Pending = session.info.pop(PENDING_KEY, {})
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
            "origin_device_id": origin,
        }
        for index, ((user_id, entity, entity_id), (op, origin)) in enumerate(pending.items())
    ]
    # Core insert: one executemany (the ORM's would split rows whose origin is None from the others)
    session.execute(insert(ChangeLog.__table__), rows)


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
