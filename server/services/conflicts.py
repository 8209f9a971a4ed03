"""Storing merge conflicts: kept for staff, sent to the handheld whose change lost or was flagged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sync_protocol import Conflict, ConflictKind

from ..extensions import db
from ..models import ConflictRecord, JobEvent, utcnow
from . import changefeed

WORK_AFTER_CANCEL_FLAG = "work_after_cancel"


def record_conflicts(
    conflicts: Iterable[Conflict],
    entity: str,
    *,
    user_id: str | None = None,
    device_id: str | None = None,
    at: dt.datetime | None = None,
) -> None:
    """Store each conflict. Its owner is `user_id` (the pushing user) or else the author of the flagged
    field event; field work on a cancelled job also gets a flag on the stored event itself."""
    for conflict in conflicts:
        owner = user_id
        if conflict.kind is ConflictKind.WORK_AFTER_CANCEL:
            event = db.session.get(JobEvent, conflict.change_id)
            if event is not None:
                owner = owner or event.author_id
                if WORK_AFTER_CANCEL_FLAG not in (event.flags or []):
                    event.flags = [*(event.flags or []), WORK_AFTER_CANCEL_FLAG]
                    changefeed.emit("job_event", event.id, [event.author_id])
        record = ConflictRecord(
            kind=conflict.kind.value,
            entity=entity,
            entity_id=conflict.entity_id,
            field=conflict.field,
            winner=conflict.winner,
            winner_hlc=str(conflict.winner_hlc),
            loser=conflict.loser,
            loser_hlc=str(conflict.loser_hlc),
            change_id=conflict.change_id,
            user_id=owner,
            device_id=device_id,
            created_at=at or utcnow(),
        )
        db.session.add(record)
        db.session.flush()
        changefeed.emit("conflict", str(record.id), [owner])
