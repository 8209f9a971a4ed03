"""Recording local changes: the record and its outbox entry in one transaction, stamped by the device's
hybrid logical clock (whose last stamp is persisted in the same transaction, so a restart never reissues
an older stamp)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any

from sync_protocol import HLC, HLCClock
from sync_protocol.ownership import ENTITIES, EntityKind
from sync_protocol.schemas import compact_data

from .store import LocalStore

# The server's time is trusted: a handheld adopts it however far its own clock is off.
TRUST_SERVER_DRIFT_MS = 100 * 365 * 86_400_000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def node_id(device_id: str) -> str:
    return "".join(ch for ch in device_id if ch.isalnum() or ch in "-_")[:40] or "device"


def load_clock(store: LocalStore, physical: Any = None) -> HLCClock:
    device_id = store.meta("device_id")
    last = store.meta("hlc_last")
    kwargs: dict[str, Any] = {
        "last": HLC.parse(last) if last else None,
        "max_drift_ms": TRUST_SERVER_DRIFT_MS,
    }
    if physical is not None:
        kwargs["physical"] = physical
    return HLCClock(node_id(device_id or "unenrolled"), **kwargs)


def fact_id(prefix: str, stamp: HLC) -> str:
    """A reading's or job event's id: its own HLC stamp, unique as the stamp is (this device's node, and a
    clock persisted with every change so it never issues a stamp twice). Repeating the change's `hlc`,
    it costs a few bytes of a gzipped push where a random id costs its full length."""
    return f"{prefix}-{stamp}"


def enqueue(
    store: LocalStore,
    clock: HLCClock,
    entity: str,
    entity_id: str,
    data: Mapping[str, Any],
    base: Mapping[str, str | None] | None = None,
    stamp: HLC | None = None,
) -> dict[str, Any]:
    """Append a change to the outbox (the caller holds the store's transaction). Returns the change.

    The change is queued in its compact wire form (fields equal to the server's defaults left out), and
    kept as first sent: a retry resends exactly these bytes. A fact (reading, job event) is created by
    its one change and never changed, so the fact's id serves as the change id too (the server's receipt
    is keyed by it; a correction is a new fact, so a new change id)."""
    stamp = stamp or clock.now()
    change: dict[str, Any] = {
        "change_id": entity_id if ENTITIES[entity] is EntityKind.FACT else str(uuid.uuid4()),
        "entity": entity,
        "entity_id": entity_id,
        "hlc": str(stamp),
        "data": compact_data(entity, data),
    }
    if base:
        change["base"] = dict(base)
    store.db.conn.execute(
        "INSERT INTO outbox (change_id, entity, entity_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
        [change["change_id"], entity, entity_id, _json(change), iso(utc_now())],
    )
    store.set_meta("hlc_last", str(clock.last))
    return change


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
