"""Models to wire records (the `data` of pull records), in the shapes of sync_protocol's schemas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app

from sync_protocol.readings import DEFAULT_FACTORS

from ..models import ConflictRecord, Customer, Job, JobEvent, Meter, MeterReading, Premise, Route

FIELD_EDITABLE = ("resolution_code", "cause", "resolution_note", "follow_up_needed", "contact_name")


def iso(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value.isoformat()


def job_data(job: Job) -> dict[str, Any]:
    data = {
        "number": job.number,
        "customer_id": job.customer_id,
        "premise_id": job.premise_id,
        "job_type": job.job_type,
        "summary": job.summary,
        "priority": job.priority,
        "assigned_to": job.assigned_to,
        "scheduled_start": iso(job.scheduled_start),
        "scheduled_end": iso(job.scheduled_end),
        "requires_signature": job.requires_signature,
        "created_at": iso(job.created_at),
        "status": job.status,
        "round": job.round,
        "status_hlc": job.status_hlc,
        "field_hlc": dict(job.field_hlc or {}),
    }
    for name in FIELD_EDITABLE:
        data[name] = getattr(job, name)
    return data


def event_push_data(event: JobEvent) -> dict[str, Any]:
    """The event as its device pushed it (normalised): what a repeated id must match."""
    data: dict[str, Any] = {"job_id": event.job_id, "kind": event.kind, "recorded_at": iso(event.recorded_at)}
    for name in ("status", "round", "text", "material_code", "quantity", "unit"):
        value = getattr(event, name)
        if value is not None:
            data[name] = value
    if event.gps is not None:
        data["gps"] = event.gps
    return data


def event_data(event: JobEvent) -> dict[str, Any]:
    data = event_push_data(event)
    data.update(
        hlc=event.hlc,
        author_id=event.author_id,
        source=event.source,
        received_at=iso(event.received_at),
        flags=list(event.flags or []),
    )
    return data


READING_PUSH_FIELDS = (
    "meter_id",
    "value",
    "reading_type",
    "skip_code",
    "trouble_code",
    "comment_code",
    "note",
    "read_at",
    "supersedes",
    "gps",
    "check",
)


def reading_push_data(reading: MeterReading) -> dict[str, Any]:
    return reading_row_push_data({name: getattr(reading, name) for name in READING_PUSH_FIELDS})


def reading_row_push_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A reading's column values (stored, or about to be inserted) as its device pushed them (normalised):
    what a repeated id must match."""
    data = {name: row[name] for name in READING_PUSH_FIELDS}
    data["read_at"] = iso(row["read_at"])
    return data


def reading_data(reading: MeterReading) -> dict[str, Any]:
    data = reading_push_data(reading)
    data.update(
        hlc=reading.hlc,
        superseded_by=reading.superseded_by,
        reader_id=reading.reader_id,
        received_at=iso(reading.received_at),
        flags=list(reading.flags or []),
    )
    return data


def customer_data(customer: Customer) -> dict[str, Any]:
    return {
        "account_no": customer.account_no,
        "name": customer.name,
        "phone": customer.phone,
        "segment": customer.segment,
        "vip": customer.vip,
    }


def premise_data(premise: Premise) -> dict[str, Any]:
    return {
        "customer_id": premise.customer_id,
        "address": premise.address,
        "lat": premise.lat,
        "lon": premise.lon,
        "hazards": list(premise.hazards or []),
        "access_notes": premise.access_notes,
    }


def reading_factors(meter_class: str) -> tuple[float, float]:
    configured: Mapping[str, Any] = current_app.config.get("READING_FACTORS") or {}
    low, high = configured.get(meter_class) or DEFAULT_FACTORS.get(meter_class) or DEFAULT_FACTORS["residential"]
    return float(low), float(high)


def meter_data(meter: Meter) -> dict[str, Any]:
    low, high = reading_factors(meter.meter_class)
    return {
        "number": meter.number,
        "premise_id": meter.premise_id,
        "route_id": meter.route_id,
        "route_seq": meter.route_seq,
        "meter_class": meter.meter_class,
        "dials": meter.dials,
        "multiplier": meter.multiplier,
        "avg_daily": meter.avg_daily,
        "low_factor": low,
        "high_factor": high,
        "last_value": meter.last_value,
        "last_read_at": iso(meter.last_read_at),
        "last_read_type": meter.last_read_type,
        "consecutive_estimates": meter.consecutive_estimates,
    }


def route_data(route: Route, meter_count: int | None = None) -> dict[str, Any]:
    return {
        "code": route.code,
        "name": route.name,
        "assigned_to": route.assigned_to,
        "cycle_start": iso(route.cycle_start),
        "cycle_end": iso(route.cycle_end),
        "meter_count": meter_count or 0,
    }


def conflict_data(conflict: ConflictRecord) -> dict[str, Any]:
    return {
        "kind": conflict.kind,
        "entity": conflict.entity,
        "entity_id": conflict.entity_id,
        "field": conflict.field,
        "winner": conflict.winner,
        "winner_hlc": conflict.winner_hlc,
        "loser": conflict.loser,
        "loser_hlc": conflict.loser_hlc,
        "change_id": conflict.change_id,
        "created_at": iso(conflict.created_at),
    }


SERIALIZERS: Mapping[str, Callable[[Any], dict[str, Any]]] = {
    "job": job_data,
    "job_event": event_data,
    "meter_reading": reading_data,
    "customer": customer_data,
    "premise": premise_data,
    "meter": meter_data,
    "route": route_data,
    "conflict": conflict_data,
}
