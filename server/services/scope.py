"""A device's scope: what its user needs, and who must hear about a change.

- jobs assigned to the user and not closed, with their events, premises and customers;
- routes assigned to the user, with their meters, premises, customers and this cycle's readings;
- unresolved conflicts about the user's own changes.
The scope queries serve first-sync snapshots; the audience functions feed the change log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from sqlalchemy import Select, or_, select

from ..extensions import db
from ..models import ConflictRecord, Customer, Job, JobEvent, Meter, MeterReading, Premise, Route
from . import changefeed

# Snapshot order: reference data before the records that point at it.
SNAPSHOT_ORDER = ("route", "customer", "premise", "meter", "job", "job_event", "meter_reading", "conflict")
MODELS = {
    "route": Route,
    "customer": Customer,
    "premise": Premise,
    "meter": Meter,
    "job": Job,
    "job_event": JobEvent,
    "meter_reading": MeterReading,
    "conflict": ConflictRecord,
}


def _job_ids(user_id: str) -> Select:
    return select(Job.id).where(Job.assigned_to == user_id, Job.status != "closed")


def _route_ids(user_id: str) -> Select:
    return select(Route.id).where(Route.assigned_to == user_id)


def _premise_ids(user_id: str) -> Select:
    by_meter = select(Meter.premise_id).where(Meter.route_id.in_(_route_ids(user_id)))
    by_job = select(Job.premise_id).where(Job.id.in_(_job_ids(user_id)))
    return by_meter.union(by_job)


SCOPES: Mapping[str, Callable[[str], Select]] = {
    "route": lambda u: select(Route).where(Route.assigned_to == u),
    "customer": lambda u: select(Customer).where(
        or_(
            Customer.id.in_(select(Premise.customer_id).where(Premise.id.in_(_premise_ids(u)))),
            Customer.id.in_(select(Job.customer_id).where(Job.id.in_(_job_ids(u)))),
        )
    ),
    "premise": lambda u: select(Premise).where(Premise.id.in_(_premise_ids(u))),
    "meter": lambda u: select(Meter).where(Meter.route_id.in_(_route_ids(u))),
    "job": lambda u: select(Job).where(Job.assigned_to == u, Job.status != "closed"),
    "job_event": lambda u: select(JobEvent).where(JobEvent.job_id.in_(_job_ids(u))),
    "meter_reading": lambda u: (
        select(MeterReading)
        .join(Route, Route.id == MeterReading.route_id)
        .where(
            Route.assigned_to == u,
            # a timestamp against a date: native on PostgreSQL; ISO text order on SQLite agrees
            or_(Route.cycle_start.is_(None), MeterReading.read_at >= Route.cycle_start),
        )
    ),
    "conflict": lambda u: select(ConflictRecord).where(
        ConflictRecord.user_id == u, ConflictRecord.resolved_at.is_(None)
    ),
}


def in_scope(entity: str, entity_id: str, user_id: str) -> object | None:
    """The record if it is in the user's scope now, else None."""
    model = MODELS[entity]
    key = int(entity_id) if entity == "conflict" else entity_id
    return db.session.execute(SCOPES[entity](user_id).where(model.id == key)).scalars().first()


# --- audiences and scope entry/exit ---------------------------------------------------------------


def job_audience(job: Job) -> list[str | None]:
    return [job.assigned_to] if job.status != "closed" else []


def route_reader(route_id: str | None) -> str | None:
    if route_id is None:
        return None
    return db.session.execute(select(Route.assigned_to).where(Route.id == route_id)).scalar()


def premise_audience(premise_id: str) -> set[str]:
    by_route = select(Route.assigned_to).join(Meter, Meter.route_id == Route.id).where(Meter.premise_id == premise_id)
    by_job = select(Job.assigned_to).where(Job.premise_id == premise_id, Job.status != "closed")
    return {u for u in db.session.execute(by_route.union(by_job)).scalars() if u}


def customer_audience(customer_id: str) -> set[str]:
    premises = db.session.execute(select(Premise.id).where(Premise.customer_id == customer_id)).scalars()
    users: set[str] = set()
    for premise_id in premises:
        users |= premise_audience(premise_id)
    jobs = select(Job.assigned_to).where(Job.customer_id == customer_id, Job.status != "closed")
    return users | {u for u in db.session.execute(jobs).scalars() if u}


def emit_job_entry(job: Job, user_id: str) -> None:
    """A job entered a user's scope: send it whole (events, premise, customer)."""
    changefeed.emit("customer", job.customer_id, [user_id])
    changefeed.emit("premise", job.premise_id, [user_id])
    changefeed.emit("job", job.id, [user_id])
    for event_id in db.session.execute(select(JobEvent.id).where(JobEvent.job_id == job.id)).scalars():
        changefeed.emit("job_event", event_id, [user_id])


def emit_route_entry(route: Route, user_id: str) -> None:
    """A route entered a user's scope: send it with its meters, premises, customers and cycle's readings."""
    changefeed.emit("route", route.id, [user_id])
    rows = db.session.execute(
        select(Meter.id, Premise.id, Premise.customer_id)
        .join(Premise, Premise.id == Meter.premise_id)
        .where(Meter.route_id == route.id)
        .order_by(Meter.route_seq)
    )
    for meter_id, premise_id, customer_id in rows:
        changefeed.emit("customer", customer_id, [user_id])
        changefeed.emit("premise", premise_id, [user_id])
        changefeed.emit("meter", meter_id, [user_id])
    readings = select(MeterReading.id).where(MeterReading.route_id == route.id)
    if route.cycle_start is not None:
        start = dt.datetime.combine(route.cycle_start, dt.time(), dt.UTC)
        readings = readings.where(MeterReading.read_at >= start)
    for reading_id in db.session.execute(readings).scalars():
        changefeed.emit("meter_reading", reading_id, [user_id])
