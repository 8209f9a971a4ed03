"""What must hold at the end of a fleet run (DESIGN.md's sync invariants), checked from the devices'
stores and ledgers and the server's database. Each check returns human-readable violations; a run is
good when all lists are empty."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from server.models import ChangeReceipt, ConflictRecord
from sync_protocol.ownership import FIELD_EDITABLE_JOB_FIELDS

from .device_worker import LEDGER

FACTS = {"job_event": "job_events", "meter_reading": "meter_readings"}


@dataclass
class DeviceFiles:
    name: str
    data_dir: Path

    def ledger(self) -> list[dict[str, Any]]:
        path = self.data_dir / LEDGER
        if not path.exists():
            return []
        # a line cut short by a kill is not a promise the device made (it was killed before fsync returned)
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def rows(self, sql: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{self.data_dir / 'handheld.db'}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(sql)]
        finally:
            conn.close()


def server_rows(engine: sa.Engine, query: str | sa.Select, **params: Any) -> list[dict[str, Any]]:
    """Rows of the server's database; a model select decodes JSON columns the same on both backends."""
    statement = sa.text(query) if isinstance(query, str) else query
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(statement, params)]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def acknowledged_and_ledger(devices: Iterable[DeviceFiles], engine: sa.Engine) -> list[str]:
    """Every change acknowledged to a device (its journal) is on the server exactly once, with its effect;
    every change the crew was told is saved (the ledger) left the outbox and reached the server."""
    violations: list[str] = []
    receipts = {
        row["change_id"]: row
        for row in server_rows(engine, "SELECT change_id, device_id, entity, entity_id, status FROM change_receipts")
    }
    facts = {
        entity: {row["id"] for row in server_rows(engine, f"SELECT id FROM {table}")}
        for entity, table in FACTS.items()
    }
    for device in devices:
        outbox = device.rows("SELECT change_id FROM outbox")
        if outbox:
            violations.append(f"{device.name}: {len(outbox)} change(s) still in the outbox after the final sync")
        acknowledged = {row["change_id"]: _json(row["payload"]) for row in device.rows("SELECT * FROM journal")}
        rejected = {row["change_id"] for row in device.rows("SELECT change_id FROM rejected")}
        for change_id, change in acknowledged.items():
            receipt = receipts.get(change_id)
            if receipt is None:
                violations.append(f"{device.name}: acknowledged change {change_id} is not on the server")
                continue
            if receipt["status"] == "rejected":
                violations.append(f"{device.name}: acknowledged change {change_id} is rejected on the server")
            table_ids = facts.get(change["entity"])
            if table_ids is not None and change["entity_id"] not in table_ids:
                violations.append(f"{device.name}: the {change['entity']} of change {change_id} is missing")
        for entry in device.ledger():
            for change_id in entry["changes"]:
                if change_id not in acknowledged and change_id not in rejected:
                    violations.append(f"{device.name}: saved change {change_id} ({entry['op']}) was lost")
                elif change_id not in receipts:
                    violations.append(f"{device.name}: saved {change_id} ({entry['op']}) never reached the server")
    # exactly once: one fact row per fact change the server applied, never a second under another id
    for entity, table in FACTS.items():
        applied = sum(1 for r in receipts.values() if r["entity"] == entity and r["status"] != "rejected")
        field_rows = server_rows(engine, f"SELECT COUNT(*) AS n FROM {table} WHERE device_id IS NOT NULL")[0]["n"]
        if field_rows != applied:
            violations.append(f"{table}: {field_rows} rows from devices but {applied} applied changes")
    return violations


def concurrent_overwrites(engine: sa.Engine) -> list[str]:
    """Every value overwritten by a concurrent edit (neither writer had seen the other's) is kept as a
    conflict record: nobody's typed value disappears silently."""
    writes: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    receipts = sa.select(ChangeReceipt.payload, ChangeReceipt.result).where(ChangeReceipt.entity == "job")
    for row in server_rows(engine, receipts):
        payload, result = row["payload"], row["result"]
        if result.get("status") == "rejected":
            continue
        stamp = result.get("hlc") or payload["hlc"]  # the stamp the server kept (a skewed clock's is replaced)
        for name, value in (payload.get("data") or {}).items():
            if name in FIELD_EDITABLE_JOB_FIELDS:
                writes[(payload["entity_id"], name)].append(
                    {"hlc": stamp, "base": (payload.get("base") or {}).get(name), "value": value}
                )
    finals = {
        row["id"]: row
        for row in server_rows(engine, f"SELECT id, {', '.join(sorted(FIELD_EDITABLE_JOB_FIELDS))} FROM jobs")
    }
    kept: dict[tuple[str, str], list[Any]] = defaultdict(list)
    records = sa.select(ConflictRecord.entity_id, ConflictRecord.field, ConflictRecord.loser).where(
        ConflictRecord.kind == "concurrent_edit"
    )
    for row in server_rows(engine, records):
        kept[(row["entity_id"], row["field"])].append(row["loser"])
    violations = []
    for (job_id, name), field_writes in writes.items():
        by_stamp = {w["hlc"]: w for w in field_writes}

        def seen(write: Mapping[str, Any], by_stamp: Mapping[str, Any] = by_stamp) -> set[str]:
            ancestors, base = set(), write["base"]
            while base and base not in ancestors:
                ancestors.add(base)
                base = by_stamp[base]["base"] if base in by_stamp else None
            return ancestors

        ancestry = {w["hlc"]: seen(w) for w in field_writes}
        # values a later edit was made on top of (the writer saw them): replaced knowingly, not lost
        seen_values = {_normal(by_stamp[s]["value"]) for s in set().union(*ancestry.values()) if s in by_stamp}
        final = _normal(finals[job_id][name]) if job_id in finals else None
        for write in field_writes:
            if _normal(write["value"]) in seen_values | {final}:
                continue
            rivals = [
                other for other in field_writes
                if other is not write and _normal(other["value"]) != _normal(write["value"])
                and other["hlc"] not in ancestry[write["hlc"]] and write["hlc"] not in ancestry[other["hlc"]]
            ]
            if rivals and _normal(write["value"]) not in {_normal(v) for v in kept[(job_id, name)]}:
                violations.append(
                    f"job {job_id}.{name}: {write['value']!r} ({write['hlc']}) lost to a concurrent edit "
                    "without a conflict record"
                )
    return violations


def _normal(value: Any) -> Any:
    if isinstance(value, bool | int):
        return bool(value) if value in (0, 1) else value
    return value


def status_never_backwards(history: Mapping[str, list[tuple[int, int]]], who: str) -> list[str]:
    """(round, stage) of a job as one observer saw it over time: never lower than before (a new round,
    the office's return, is the documented way back to Assigned)."""
    violations = []
    for job_id, positions in history.items():
        for before, after in itertools.pairwise(positions):
            if tuple(after) < tuple(before):
                violations.append(f"{who}: job {job_id} went back from {before} to {after}")
    return violations


COMPARED = {
    "jobs": "id, number, customer_id, premise_id, job_type, summary, priority, assigned_to, status, round, "
    "status_hlc, resolution_code, cause, resolution_note, follow_up_needed, contact_name",
    "job_events": "id, job_id, kind, status, round, text, material_code, quantity, unit, hlc, author_id, source",
    "routes": "id, code, assigned_to, cycle_start, cycle_end",
    "meters": "id, number, premise_id, route_id, route_seq, last_value, last_read_at",
    "premises": "id, customer_id, address",
    "customers": "id, account_no, name",
    "readings": "id, meter_id, value, reading_type, skip_code, comment_code, note, read_at, supersedes, hlc, reader_id",
}


def same_as_server(device: DeviceFiles, fresh: DeviceFiles) -> list[str]:
    """The device's data after its final sync equals a fresh download of its scope from the server."""
    violations = []
    for table, columns in COMPARED.items():
        mine = {row["id"]: row for row in device.rows(f"SELECT {columns} FROM {table}")}
        server = {row["id"]: row for row in fresh.rows(f"SELECT {columns} FROM {table}")}
        for missing in sorted(server.keys() - mine.keys())[:5]:
            violations.append(f"{device.name}: {table} {missing} is on the server but not on the device")
        for extra in sorted(mine.keys() - server.keys())[:5]:
            violations.append(f"{device.name}: {table} {extra} is on the device but not in its scope on the server")
        for key in sorted(mine.keys() & server.keys()):
            if mine[key] != server[key]:
                diff = {k: (mine[key][k], server[key][k]) for k in mine[key] if mine[key][k] != server[key][k]}
                violations.append(f"{device.name}: {table} {key} differs (device, server): {diff}")
    return violations
