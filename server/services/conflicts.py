"""Storing merge conflicts: kept for staff, sent to the handheld whose change lost or was flagged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select

from sync_protocol import Conflict, ConflictKind, ProtocolError

from ..extensions import db
from ..models import ConflictRecord, Job, JobEvent, utcnow
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


# --- review by the service centre ------------------------------------------------------------------

# A reviewer's note goes on the job's timeline as an office note (the crew sees it too), marked with the
# conflict's id so the conflicts page can show it beside the conflict.
REVIEW_NOTE_START = "[conflict "


def review_note_text(conflict_id: int, note: str) -> str:
    return f"{REVIEW_NOTE_START}{conflict_id}] {note}"


def parse_review_note(text: str | None) -> tuple[int, str] | None:
    """(conflict id, note) of an office note written by `mark_reviewed`, else None."""
    if not text or not text.startswith(REVIEW_NOTE_START):
        return None
    number, _, note = text[len(REVIEW_NOTE_START) :].partition("] ")
    return (int(number), note) if number.isascii() and number.isdigit() else None


def mark_reviewed(conflict_id: int, *, user_id: str, note: str | None = None) -> ConflictRecord:
    """Staff reviewed a conflict: it is resolved (the winner is what the record holds), the reviewer's
    note goes on the job's timeline, and the device that owns the conflict drops it on its next pull
    (scope excludes resolved conflicts, so the upsert reaches it as a removal)."""
    from .office import add_note  # office imports this module: imported when needed

    record = (
        db.session.execute(select(ConflictRecord).where(ConflictRecord.id == conflict_id).with_for_update())
        .scalars()
        .first()
    )
    if record is None:
        raise ProtocolError("not_found", f"no conflict {conflict_id}")
    if record.resolved_at is not None:
        raise ProtocolError(
            "validation_error", "this conflict was already reviewed", {"conflict": ["Already reviewed."]}
        )
    record.resolved_at = utcnow()
    record.resolved_by = user_id
    if note and record.entity == "job":
        job = db.session.get(Job, record.entity_id)
        if job is not None:
            add_note(job, review_note_text(record.id, note), user_id)
    changefeed.emit("conflict", str(record.id), [record.user_id])
    return record
