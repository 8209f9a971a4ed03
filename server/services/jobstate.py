"""Bridge between stored jobs and sync_protocol's merge state, used by device pushes and office actions."""

from __future__ import annotations

from sqlalchemy import select

from sync_protocol import HLC, Actor, JobState, Status
from sync_protocol.merge import Stamped, StatusMark

from ..extensions import db
from ..models import Job, JobEvent
from .records import FIELD_EDITABLE


def load_state(job: Job) -> JobState:
    fields = {
        name: Stamped(getattr(job, name), HLC.parse(stamp))
        for name, stamp in (job.field_hlc or {}).items()
        if name in FIELD_EDITABLE
    }
    events = db.session.execute(
        select(JobEvent.id, JobEvent.status, JobEvent.round, JobEvent.hlc, JobEvent.source).where(
            JobEvent.job_id == job.id, JobEvent.kind == "status"
        )
    )
    marks = frozenset(
        StatusMark.of(Status(status), round_, HLC.parse(hlc), Actor(source), event_id)
        for event_id, status, round_, hlc, source in events
    )
    return JobState(job.id, fields, marks)


def store_state(job: Job, state: JobState) -> bool:
    """Write the merged state back; True when the job row changed."""
    changed = False
    current = state.current
    if current is not None:
        for name, value in (
            ("status", current.status.value),
            ("round", current.round),
            ("status_hlc", str(current.hlc)),
        ):
            if getattr(job, name) != value:
                setattr(job, name, value)
                changed = True
    stamps = dict(job.field_hlc or {})
    for name, stamped in state.fields.items():
        if stamps.get(name) != str(stamped.hlc) or getattr(job, name) != stamped.value:
            setattr(job, name, stamped.value)
            stamps[name] = str(stamped.hlc)
            changed = True
    if stamps != (job.field_hlc or {}):
        job.field_hlc = stamps
    return changed


def lock_job(job_id: str) -> Job | None:
    """The job, row-locked until commit (PostgreSQL), so concurrent merges on it serialise."""
    return db.session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalars().first()
