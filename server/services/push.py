"""Applying a device's pushed batch.

Guarantees:
- The whole batch runs in one write transaction: every change's effects, its receipt and its
  change-log entries commit together, or nothing does.
- Exactly-once effect: a change id already received answers from its stored receipt (same result),
  whatever batch it comes in; the same id with different content is rejected as `id_reuse`.
- One bad change never blocks the queue: it is acknowledged as `rejected` with its reason, its payload is
  kept in the receipt for staff, and the rest of the batch applies.
- A stamp from a clock far ahead is clamped to the server's time and flagged `clock_skew`; its data stays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import insert, select, update

from sync_protocol import (
    HLC,
    Actor,
    Change,
    FieldEdit,
    Outcome,
    ProtocolError,
    Status,
    UnknownEntity,
    bound_skew,
    canonical_json,
    flatten_messages,
    load_change,
    merge_fact,
    merge_field_edit,
    merge_status,
)
from sync_protocol.merge import Conflict, StatusChange
from sync_protocol.readings import Band, ReadingRuleError, check_read_time, check_register_value, expected_band
from sync_protocol.schemas import PushRequestSchema

from ..database import write_transaction
from ..extensions import db
from ..http import UNSTORABLE, unstorable_text
from ..models import (
    ChangeReceipt,
    Device,
    Job,
    JobEvent,
    Meter,
    MeterReading,
    Route,
    User,
)
from . import changefeed, scope
from .clock import server_clock, wall_clock_ms
from .conflicts import WORK_AFTER_CANCEL_FLAG, record_conflicts
from .jobstate import load_state, lock_job, store_state
from .records import event_push_data, reading_factors, reading_row_push_data


@dataclass
class Decoded:
    """One raw change of the batch, validated (or refused) before the write transaction starts."""

    raw: Mapping[str, Any]
    change: Change | None
    refusal: ProtocolError | None
    fingerprint: str

    @property
    def change_id(self) -> str:
        return str(self.raw["change_id"])


@dataclass
class Batch:
    """What one batch's changes refer to, loaded up front with a few IN queries, and the rows it writes
    at its end (one bulk statement each): per-change lookups and flushes were most of a push's time."""

    meters: dict[str, Meter] = field(default_factory=dict)
    route_owners: dict[str, str | None] = field(default_factory=dict)
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)  # stored or new, by id: column values
    events: dict[str, JobEvent] = field(default_factory=dict)
    jobs: dict[str, Job | None] = field(default_factory=dict)  # row-locked once per batch
    new_readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    superseded: dict[str, str] = field(default_factory=dict)  # stored reading id -> its new superseded_by
    receipts: list[dict[str, Any]] = field(default_factory=list)

    def add_reading(self, row: dict[str, Any]) -> None:
        self.readings[row["id"]] = self.new_readings[row["id"]] = row

    def supersede(self, reading: dict[str, Any], by: str) -> None:
        reading["superseded_by"] = by
        if reading["id"] not in self.new_readings:
            self.superseded[reading["id"]] = by

    def write(self) -> None:
        # Core inserts: the ORM's bulk insert leaves None values out of a row, so rows that differ in which
        # values are None would go out as separate statements
        if self.new_readings:
            db.session.execute(insert(MeterReading.__table__), list(self.new_readings.values()))
        if self.superseded:
            db.session.execute(
                update(MeterReading), [{"id": id_, "superseded_by": by} for id_, by in self.superseded.items()]
            )
        if self.receipts:
            db.session.execute(insert(ChangeReceipt.__table__), self.receipts)


@dataclass
class Context:
    device: Device
    user: User
    now: dt.datetime
    max_skew_ms: int
    batch: Batch


def _result(
    change_id: str,
    outcome: Outcome,
    *,
    error: ProtocolError | None = None,
    conflicts: tuple[Conflict, ...] = (),
    hlc: HLC | None = None,
    flags: list[str] | None = None,
) -> dict:
    return {
        "change_id": change_id,
        "status": outcome.value,
        "error": None if error is None else error.to_wire()["error"],
        "conflicts": [c.to_wire() for c in conflicts],
        "hlc": None if hlc is None else str(hlc),
        "flags": flags or [],
    }


def _rejected(change_id: str, error: ProtocolError) -> dict:
    return _result(change_id, Outcome.REJECTED, error=error)


def fingerprint(raw: Mapping[str, Any]) -> str:
    # surrogatepass: an invalid change may hold unpaired surrogates (refused, but still fingerprinted)
    return hashlib.sha256(canonical_json(raw).encode("utf-8", "surrogatepass")).hexdigest()


def _storable(value: Any, length: int) -> str:
    """Raw text for a receipt's text column: NUL and unpaired surrogates dropped (see http.unstorable_text)."""
    return UNSTORABLE.sub("", str(value))[:length]


def push_batch(device: Device, user: User, body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and apply a push request; returns the push response (per-change results, in order)."""
    try:
        request = PushRequestSchema().load(body)
    except ValidationError as exc:
        raise ProtocolError(
            "validation_error", "The batch is malformed; nothing was applied.", flatten_messages(exc.messages)
        ) from exc
    decoded = [_decode(raw) for raw in request["changes"]]  # pure: outside the write lock

    def work() -> list[dict]:
        receipts = _receipts([d.change_id for d in decoded])
        batch = _preload([d.change for d in decoded if d.change is not None and d.change_id not in receipts])
        ctx = Context(device, user, dt.datetime.now(dt.UTC), current_app.config["MAX_CLOCK_SKEW_MS"], batch)
        with db.session.no_autoflush:  # nothing read below depends on a pending write (job events flush)
            results = [_one(ctx, d, receipts.get(d.change_id)) for d in decoded]
        ctx.batch.write()
        device.last_push_at = ctx.now
        return results

    results = write_transaction(work)
    return {"batch_id": request["batch_id"], "results": results}


def _decode(raw: Mapping[str, Any]) -> Decoded:
    change: Change | None = None
    refusal: ProtocolError | None = None
    unstorable = unstorable_text(raw)
    try:
        if unstorable:  # rejected alone: failing the batch would block the device's queue for ever
            raise ValidationError(unstorable)
        change = load_change(raw)
    except UnknownEntity as exc:
        code = "read_only_entity" if exc.read_only else "unknown_entity"
        refusal = ProtocolError(code, fields=flatten_messages(exc.messages))
    except ValidationError as exc:
        refusal = ProtocolError("validation_error", fields=flatten_messages(exc.messages))
    # A valid change is compared in its normalised form, so a retry that spells a value differently
    # (2 vs 2.0, Z vs +00:00) is still the same change; an invalid one by its exact JSON.
    print_ = fingerprint(raw) if change is None else hashlib.sha256(change.fingerprint().encode()).hexdigest()
    return Decoded(raw, change, refusal, print_)


def _receipts(change_ids: list[str]) -> dict[str, ChangeReceipt]:
    statement = select(ChangeReceipt).where(ChangeReceipt.change_id.in_(change_ids))
    return {r.change_id: r for r in db.session.execute(statement).scalars()}


def _preload(changes: list[Change]) -> Batch:
    """The meters, routes, readings and job events the batch's changes name, in a few IN queries."""
    batch = Batch()
    readings = [c for c in changes if c.entity == "meter_reading"]
    if readings:
        meter_ids = {c.data["meter_id"] for c in readings}
        batch.meters = {m.id: m for m in db.session.execute(select(Meter).where(Meter.id.in_(meter_ids))).scalars()}
        route_ids = {m.route_id for m in batch.meters.values() if m.route_id}
        owners = db.session.execute(select(Route.id, Route.assigned_to).where(Route.id.in_(route_ids)))
        batch.route_owners = {route_id: owner for route_id, owner in owners}
        named = {c.entity_id for c in readings} | {c.data["supersedes"] for c in readings if c.data["supersedes"]}
        batch.readings = _stored_readings(named)
        # a superseded reading's current corrector decides whether a new correction replaces it
        correctors = {r["superseded_by"] for r in batch.readings.values() if r["superseded_by"]}
        batch.readings.update(_stored_readings(correctors - batch.readings.keys()))
    event_ids = [c.entity_id for c in changes if c.entity == "job_event"]
    if event_ids:
        statement = select(JobEvent).where(JobEvent.id.in_(event_ids))
        batch.events = {e.id: e for e in db.session.execute(statement).scalars()}
    return batch


def _stored_readings(ids: set[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    table = MeterReading.__table__
    rows = db.session.execute(select(table).where(table.c.id.in_(ids))).mappings()
    return {row["id"]: dict(row) for row in rows}


def _one(ctx: Context, decoded: Decoded, receipt: ChangeReceipt | None) -> dict:
    change_id, raw = decoded.change_id, decoded.raw
    if receipt is not None:
        if receipt.user_id != ctx.user.id or receipt.fingerprint != decoded.fingerprint:
            return _rejected(change_id, ProtocolError("id_reuse", "This change id was already used for other content."))
        return receipt.result  # exactly-once: the same answer as the first time
    if decoded.change is None:
        assert decoded.refusal is not None
        result = _rejected(change_id, decoded.refusal)
    else:
        result = _apply(ctx, decoded.change)
    ctx.batch.receipts.append(
        {
            "change_id": change_id,
            "device_id": ctx.device.id,
            "user_id": ctx.user.id,
            "entity": _storable(raw.get("entity", ""), 40),
            "entity_id": _storable(raw.get("entity_id", ""), 64),
            "status": result["status"],
            "fingerprint": decoded.fingerprint,
            "payload": dict(raw),
            "result": result,
            "received_at": ctx.now,
        }
    )
    return result


def _apply(ctx: Context, change: Change) -> dict:
    clock = server_clock()
    stamp, skewed = bound_skew(
        change.hlc, physical_ms=wall_clock_ms(), max_skew_ms=ctx.max_skew_ms, replacement=clock.now()
    )
    clock.observe(stamp)
    flags = ["clock_skew"] if skewed else []
    try:
        return APPLIERS[change.entity](ctx, change, stamp, flags)
    except ReadingRuleError as exc:
        return _rejected(change.change_id, ProtocolError("reading_invalid", str(exc), {"data": [exc.rule]}))
    except ProtocolError as exc:
        return _rejected(change.change_id, exc)


# --- per entity ----------------------------------------------------------------------------------


def _job_in_scope(ctx: Context, job_id: str, field: str) -> Job:
    """The job, row-locked, if it is in the user's scope (assigned to them and not closed)."""
    jobs = ctx.batch.jobs
    if job_id not in jobs:
        jobs[job_id] = lock_job(job_id)  # the lock holds until commit: once per batch is enough
    job = jobs[job_id]
    if job is None:
        raise ProtocolError("not_found_record", f"no job {job_id}", {field: ["Unknown job."]})
    if job.assigned_to != ctx.user.id:
        raise ProtocolError("not_in_scope", "this job is not assigned to you", {field: ["Not your job."]})
    if job.status == "closed":
        raise ProtocolError("not_in_scope", "this job is closed", {field: ["The job is closed."]})
    return job


def apply_job_edit(ctx: Context, change: Change, stamp: HLC, flags: list[str]) -> dict:
    job = _job_in_scope(ctx, change.entity_id, "entity_id")
    edit = FieldEdit(change.change_id, job.id, stamp, Actor.FIELD, dict(change.data), change.base)
    result = merge_field_edit(load_state(job), edit)
    if result.outcome is Outcome.REJECTED:
        return _rejected(change.change_id, result.error)
    if store_state(job, result.state):
        changefeed.emit("job", job.id, scope.job_audience(job))
    record_conflicts(result.conflicts, "job", user_id=ctx.user.id, device_id=ctx.device.id, at=ctx.now)
    return _result(change.change_id, result.outcome, conflicts=result.conflicts, hlc=stamp, flags=flags)


def apply_job_event(ctx: Context, change: Change, stamp: HLC, flags: list[str]) -> dict:
    data = change.data
    job = _job_in_scope(ctx, data["job_id"], "data.job_id")
    existing = ctx.batch.events.get(change.entity_id)
    fact = merge_fact(None if existing is None else event_push_data(existing), data)
    if fact.outcome is Outcome.REJECTED:
        return _rejected(change.change_id, fact.error)
    if existing is not None:  # the same event again under another change id: nothing to do
        return _result(change.change_id, Outcome.APPLIED, hlc=HLC.parse(existing.hlc), flags=flags)
    outcome, conflicts = Outcome.APPLIED, ()
    if data["kind"] == "status":
        if data["round"] > job.round:
            raise ProtocolError(
                "unknown_round",
                f"job {job.id} has no round {data['round']}",
                {"data.round": ["Unknown round."]},
            )
        status_change = StatusChange(
            change.entity_id, job.id, stamp, Actor.FIELD, Status(data["status"]), data["round"]
        )
        merged = merge_status(load_state(job), status_change)
        if merged.outcome is Outcome.REJECTED:
            return _rejected(change.change_id, merged.error)
        outcome, conflicts = merged.outcome, merged.conflicts
        if store_state(job, merged.state):
            changefeed.emit("job", job.id, scope.job_audience(job))
    event = JobEvent(
        id=change.entity_id,
        job_id=job.id,
        kind=data["kind"],
        status=data.get("status"),
        round=data.get("round"),
        text=data.get("text"),
        material_code=data.get("material_code"),
        quantity=data.get("quantity"),
        unit=data.get("unit"),
        recorded_at=dt.datetime.fromisoformat(data["recorded_at"]),
        gps=data.get("gps"),
        hlc=str(stamp),
        source="field",
        author_id=ctx.user.id,
        device_id=ctx.device.id,
        received_at=ctx.now,
        flags=list(flags),
    )
    db.session.add(event)
    ctx.batch.events[event.id] = event
    db.session.flush()  # the job's next merge (load_state) reads its status events back
    record_conflicts(conflicts, "job", user_id=ctx.user.id, device_id=ctx.device.id, at=ctx.now)
    # stored as sent (hlc and flags are in the answer); a conflict's flag on it makes it not the device's own
    changefeed.emit("job_event", event.id, scope.job_audience(job), origin=ctx.device.id)
    result_flags = flags + ([WORK_AFTER_CANCEL_FLAG] if conflicts else [])
    return _result(change.change_id, outcome, conflicts=conflicts, hlc=stamp, flags=result_flags)


def apply_reading(ctx: Context, change: Change, stamp: HLC, flags: list[str]) -> dict:
    data, batch = change.data, ctx.batch
    meter = batch.meters.get(data["meter_id"])
    if meter is None:
        raise ProtocolError("not_found_record", "unknown meter", {"data.meter_id": ["Unknown meter."]})
    owner = batch.route_owners.get(meter.route_id) if meter.route_id else None
    if owner is None or owner != ctx.user.id:
        raise ProtocolError(
            "not_in_scope", "this meter is not on your route", {"data.meter_id": ["Not on your route."]}
        )
    existing = batch.readings.get(change.entity_id)
    fact = merge_fact(None if existing is None else reading_row_push_data(existing), data)
    if fact.outcome is Outcome.REJECTED:
        return _rejected(change.change_id, fact.error)
    if existing is not None:
        return _result(change.change_id, Outcome.APPLIED, hlc=HLC.parse(existing["hlc"]), flags=flags)
    read_at = dt.datetime.fromisoformat(data["read_at"])
    check_read_time(
        int(read_at.timestamp() * 1000),
        None if meter.last_read_at is None else int(meter.last_read_at.timestamp() * 1000),
        int(ctx.now.timestamp() * 1000),
        ctx.max_skew_ms,
    )
    superseded = None
    if data["supersedes"]:
        superseded = batch.readings.get(data["supersedes"])
        if superseded is None or superseded["meter_id"] != meter.id:
            raise ProtocolError(
                "reading_invalid",
                "supersedes an unknown reading of this meter",
                {"data.supersedes": ["Unknown reading of this meter."]},
            )
    band = _band(meter, data["value"], read_at) if data["value"] is not None else None
    reading = {
        "id": change.entity_id,
        "meter_id": meter.id,
        "route_id": meter.route_id,
        "reader_id": ctx.user.id,
        "device_id": ctx.device.id,
        "value": data["value"],
        "reading_type": data["reading_type"],
        "skip_code": data["skip_code"],
        "trouble_code": data["trouble_code"],
        "comment_code": data["comment_code"],
        "note": data["note"],
        "read_at": read_at,
        "supersedes": data["supersedes"],
        "superseded_by": None,
        "gps": data["gps"],
        "check": data["check"],
        "check_result": None if band is None else band.result.value,
        "consumption": None if band is None else band.consumption,
        "rollover": bool(band and band.rollover),
        "hlc": str(stamp),
        "received_at": ctx.now,
        "flags": flags,
    }
    batch.add_reading(reading)
    audience = [owner]
    if superseded is not None and (
        superseded["superseded_by"] is None or _later(batch, reading, superseded["superseded_by"])
    ):
        batch.supersede(superseded, reading["id"])
        # only its superseded_by changed, which the sender knows (handhelds derive the current reading from
        # `supersedes`): its pulls skip this row too; the user's other devices hear of it
        changefeed.emit("meter_reading", superseded["id"], audience, origin=ctx.device.id)
    # stored exactly as sent (the answer carries hlc and flags): the sender's own pulls skip it
    changefeed.emit("meter_reading", reading["id"], audience, origin=ctx.device.id)
    return _result(change.change_id, Outcome.APPLIED, hlc=stamp, flags=flags)


def _band(meter: Meter, value: int, read_at: dt.datetime) -> Band:
    """The expected-range check of `value` read at `read_at` (refuses a value beyond the register)."""
    check_register_value(value, meter.dials)
    low, high = reading_factors(meter.meter_class)
    return expected_band(
        current=value,
        previous=meter.last_value,
        previous_at_ms=None if meter.last_read_at is None else int(meter.last_read_at.timestamp() * 1000),
        read_at_ms=int(read_at.timestamp() * 1000),
        dials=meter.dials,
        multiplier=meter.multiplier,
        avg_daily=meter.avg_daily,
        low_factor=low,
        high_factor=high,
        previous_estimated=meter.last_read_type == "estimated",
    )


def _later(batch: Batch, reading: Mapping[str, Any], other_id: str) -> bool:
    """Of two corrections of one reading, the later stamp supersedes it (deterministic)."""
    other = batch.readings.get(other_id)
    return other is None or reading["hlc"] > other["hlc"]


APPLIERS: Mapping[str, Callable[[Context, Change, HLC, list[str]], dict]] = {
    "job": apply_job_edit,
    "job_event": apply_job_event,
    "meter_reading": apply_reading,
}
