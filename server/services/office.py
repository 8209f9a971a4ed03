"""What the service centre does to jobs and routes. Every change is merged with the same rules as the
field's (sync_protocol.merge) and fed to the affected handhelds' next pull."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from sync_protocol import Actor, FieldEdit, ProtocolError, Status, merge_field_edit, merge_status
from sync_protocol.lifecycle import allowed_next, next_round
from sync_protocol.merge import StatusChange
from sync_protocol.ownership import FIELD_EDITABLE_JOB_FIELDS, SERVER_OWNED_JOB_FIELDS
from sync_protocol.readings import ACTUAL_TYPES

from ..extensions import db
from ..models import Job, JobEvent, Meter, MeterReading, Route, User, utcnow
from . import changefeed, scope
from .clock import now_hlc
from .conflicts import record_conflicts
from .ids import job_number, new_id
from .jobstate import load_state, store_state


def _field_user(user_id: str | None) -> User | None:
    if user_id is None:
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.active or not user.is_field:
        raise ProtocolError(
            "validation_error", "assign to an active field user", {"assigned_to": ["Not a field user."]}
        )
    return user


def create_job(
    *,
    customer_id: str,
    premise_id: str,
    job_type: str,
    summary: str,
    priority: int = 3,
    assigned_to: str | None = None,
    scheduled_start: dt.datetime | None = None,
    scheduled_end: dt.datetime | None = None,
    requires_signature: bool = False,
    actor_id: str | None = None,
    created_at: dt.datetime | None = None,
    job_id: str | None = None,
    number: str | None = None,
) -> Job:
    created = created_at or utcnow()
    job = Job(
        id=job_id or new_id("J"),
        number=number or free_job_number(created),
        customer_id=customer_id,
        premise_id=premise_id,
        job_type=job_type,
        summary=summary,
        priority=priority,
        scheduled_start=scheduled_start,
        scheduled_end=scheduled_end,
        requires_signature=requires_signature,
        created_at=created,
        status=Status.NEW.value,
        round=1,
        field_hlc={},
    )
    db.session.add(job)
    db.session.flush()
    _office_status(job, Status.NEW, 1, actor_id, at=created)
    if assigned_to:
        assign_job(job, assigned_to, actor_id=actor_id)
    return job


NUMBER_ATTEMPTS = 20


def free_job_number(created: dt.datetime) -> str:
    """A readable job number not yet taken: six random hex digits a day collide (the birthday bound) once
    a day's jobs reach the thousands, so a taken one is drawn again rather than failing the insert."""
    for _ in range(NUMBER_ATTEMPTS):
        number = job_number(created.strftime("%y%m%d"))
        if db.session.scalar(select(Job.id).where(Job.number == number)) is None:
            return number
    raise RuntimeError(f"no free job number for {created:%Y-%m-%d} after {NUMBER_ATTEMPTS} draws")


def _office_status(
    job: Job,
    status: Status,
    round_: int,
    actor_id: str | None,
    at: dt.datetime | None = None,
) -> JobEvent:
    hlc = now_hlc()
    state = load_state(job)  # before the new event is stored, so the merge sees it arrive
    event = JobEvent(
        id=new_id("E"),
        job_id=job.id,
        kind="status",
        status=status.value,
        round=round_,
        recorded_at=at or utcnow(),
        hlc=str(hlc),
        source="office",
        author_id=actor_id,
        flags=[],
    )
    result = merge_status(state, StatusChange(event.id, job.id, hlc, Actor.OFFICE, status, round_))
    db.session.add(event)
    store_state(job, result.state)
    db.session.flush()
    record_conflicts(result.conflicts, "job")
    changefeed.emit("job_event", event.id, scope.job_audience(job))
    changefeed.emit("job", job.id, scope.job_audience(job))
    return event


def _transition(job: Job, target: Status, actor_id: str | None, note: str | None = None) -> JobEvent:
    current = Status(job.status)
    allowed = allowed_next(Actor.OFFICE, current)
    if target not in allowed:
        names = ", ".join(sorted(s.value for s in allowed)) or "nothing"
        raise ProtocolError(
            "transition_not_allowed",
            f"a {current.value} job cannot become {target.value}",
            {"status": [f"Allowed from {current.value}: {names}."]},
        )
    event = _office_status(job, target, next_round(current, target, job.round), actor_id)
    if note:
        add_note(job, note, actor_id)
    return event


def add_note(job: Job, text: str, actor_id: str | None) -> JobEvent:
    event = JobEvent(
        id=new_id("E"),
        job_id=job.id,
        kind="note",
        text=text,
        recorded_at=utcnow(),
        hlc=str(now_hlc()),
        source="office",
        author_id=actor_id,
        flags=[],
    )
    db.session.add(event)
    changefeed.emit("job_event", event.id, scope.job_audience(job))
    return event


def assign_job(job: Job, user_id: str, *, actor_id: str | None = None) -> Job:
    """Assign, reassign or return a job to the field; it leaves the old handheld and reaches the new one."""
    _field_user(user_id)
    previous = job.assigned_to
    if previous and previous != user_id:
        changefeed.emit("job", job.id, [previous], op="remove")
    job.assigned_to = user_id
    _transition(job, Status.ASSIGNED, actor_id)
    if previous != user_id:
        scope.emit_job_entry(job, user_id)
    return job


def cancel_job(job: Job, *, actor_id: str | None = None, reason: str | None = None) -> Job:
    _transition(job, Status.CANCELLED, actor_id, note=reason)
    return job


def close_job(job: Job, *, actor_id: str | None = None) -> Job:
    assignee = job.assigned_to
    _transition(job, Status.CLOSED, actor_id)
    changefeed.emit("job", job.id, [assignee], op="remove")
    return job


def edit_job(job: Job, values: Mapping[str, Any], *, actor_id: str | None = None) -> list:
    """Office edits: scheduling fields directly, outcome fields through the field merge (so a concurrent
    crew edit is kept as a conflict). Returns the conflicts."""
    unknown = set(values) - SERVER_OWNED_JOB_FIELDS - FIELD_EDITABLE_JOB_FIELDS - {"assigned_to"}
    if unknown:
        raise ProtocolError("validation_error", "unknown job field", {name: ["Unknown field."] for name in unknown})
    if "assigned_to" in values:
        assign_job(job, values["assigned_to"], actor_id=actor_id)
    for name in SERVER_OWNED_JOB_FIELDS & set(values) - {"assigned_to", "number", "created_at"}:
        setattr(job, name, values[name])
    editable = {k: v for k, v in values.items() if k in FIELD_EDITABLE_JOB_FIELDS}
    conflicts: list = []
    if editable:
        state = load_state(job)
        base = {name: state.fields[name].hlc if name in state.fields else None for name in editable}
        result = merge_field_edit(state, FieldEdit(new_id("X"), job.id, now_hlc(), Actor.OFFICE, editable, base))
        store_state(job, result.state)
        conflicts = list(result.conflicts)
        # the crew's value that lost is kept; the assignee hears of it
        record_conflicts(conflicts, "job", user_id=job.assigned_to)
    changefeed.emit("job", job.id, scope.job_audience(job))
    return conflicts


def assign_route(route: Route, user_id: str | None) -> Route:
    if user_id is not None:
        _field_user(user_id)
    previous = route.assigned_to
    if previous == user_id:
        return route
    if previous:
        changefeed.emit("route", route.id, [previous], op="remove")
    route.assigned_to = user_id
    db.session.flush()
    if user_id:
        scope.emit_route_entry(route, user_id)
    return route


def start_cycle(route: Route, start: dt.date, end: dt.date) -> Route:
    """Open a new reading cycle: each meter's billing base becomes its last effective actual read."""
    for meter in db.session.execute(select(Meter).where(Meter.route_id == route.id)).scalars():
        latest = (
            db.session.execute(
                select(MeterReading)
                .where(
                    MeterReading.meter_id == meter.id,
                    MeterReading.superseded_by.is_(None),
                    MeterReading.value.is_not(None),
                )
                .order_by(MeterReading.read_at.desc())
                .limit(1)
            )
            .scalars()
            .first()
        )
        if latest is not None and (meter.last_read_at is None or latest.read_at > meter.last_read_at):
            meter.last_value = latest.value
            meter.last_read_at = latest.read_at
            meter.last_read_type = latest.reading_type
            estimated = latest.reading_type not in ACTUAL_TYPES
            meter.consecutive_estimates = meter.consecutive_estimates + 1 if estimated else 0
        changefeed.emit("meter", meter.id, [route.assigned_to])
    route.cycle_start, route.cycle_end = start, end
    changefeed.emit("route", route.id, [route.assigned_to])
    return route


def route_meter_count(route_id: str) -> int:
    return db.session.execute(select(func.count()).select_from(Meter).where(Meter.route_id == route_id)).scalar_one()
