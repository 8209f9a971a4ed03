"""device_ops: what the crew waits for on a full handheld: recording a meter reading and a job status change,
through the core's public API, on a local database holding `rows` rows (default 100,000).

The prefill (not timed) is written straight into the handheld's SQLite file in the shapes a sync leaves:
routes of 500 meters in walk order (each meter with its premise and customer), this cycle's readings for
80 % of each route's meters (and some re-reads superseding the first read), open jobs with their office and
field status events, notes and materials, the journal of acknowledged changes (kept 30 days) and a small
outbox of readings not yet pushed. Shares of `rows`: meters, premises, customers 15 % each, readings 12 %,
jobs 2 %, job events 20 %, journal 15 %, outbox 1 %.

Timed: `Handheld.readings.record(meter, value)` on unread meters (a value in band), and job status changes
(`Handheld.jobs.start_travel`, then `arrive`, each on its own assigned job), `operations` of each after five
untimed warm-up calls. Each figure is the wall time of one call, which commits (WAL, synchronous=FULL).
The floor, in the same run: a transaction inserting one row into a file with the same pragmas (what the
disk's flush alone costs), so the ratio holds where the absolute time does not.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pda_client import Handheld
from pda_client.outbox import iso
from pda_client.store import encode
from sync_protocol import HLC

from .common import Result, latency_ms, log, rounded, stopwatch
from .fieldwork import in_band_value

ROUTE_SIZE = 500
WARM_UP = 5
USER_ID = "U-bench-device"
NODE = "bench-device"


def run(rows: int = 100_000, operations: int = 200, seed: int = 1) -> Result:
    """Time `operations` readings and status changes on a handheld prefilled with about `rows` rows."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-device-ops-") as temp:
        directory = Path(temp)
        log(f"device_ops: prefilling a handheld with about {rows:,} rows")
        with stopwatch() as prefill_time:
            counts = prefill(directory, rows, rng)
        handheld = Handheld(directory)
        try:
            held = sum(handheld.store.rows(f"SELECT COUNT(*) AS n FROM [{table}]")[0]["n"] for table in counts)
            unread = _unread_meters(handheld)
            assigned = [
                r["id"] for r in handheld.store.rows("SELECT id FROM jobs WHERE status = 'assigned' ORDER BY id")
            ]
            needed = WARM_UP + operations
            if len(unread) < needed or len(assigned) < needed:
                raise SystemExit(f"--rows {rows} holds too few unread meters or open jobs for {operations} operations")
            log(f"device_ops: {operations} readings and {operations} status changes")
            now_ms = int(handheld.now().timestamp() * 1000)
            reading_s = _timed(lambda m: handheld.readings.record(m["id"], in_band_value(m, now_ms)), unread[:needed])
            travel_s = _timed(handheld.jobs.start_travel, assigned[:needed])
            arrive_s = _timed(handheld.jobs.arrive, assigned[:needed])
            pending = handheld.store.rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        finally:
            handheld.close()
        floor_s = commit_floor(directory / "floor.db", operations)
    status_s = travel_s + arrive_s
    overall = latency_ms(reading_s + status_s)
    reading = latency_ms(reading_s)
    status = latency_ms(status_s)
    floor = latency_ms(floor_s)
    figures: dict[str, Any] = {
        "p50_ms": overall["p50_ms"],
        "p99_ms": overall["p99_ms"],
        "reading": reading,
        "status_change": status,
        "commit_floor": floor,
        "reading_p50_to_floor": rounded(reading["p50_ms"] / floor["p50_ms"], 2),
        "status_change_p50_to_floor": rounded(status["p50_ms"] / floor["p50_ms"], 2),
        "rows": held,
        "rows_by_table": counts,
        "operations": len(reading_s) + len(status_s),
        "outbox_after": pending,
        "prefill_s": rounded(prefill_time(), 1),
    }
    summary = [
        f"{held:,} rows: reading p50 {reading['p50_ms']} ms, p99 {reading['p99_ms']} ms; "
        f"status change p50 {status['p50_ms']} ms, p99 {status['p99_ms']} ms",
        f"the floor, one durable commit of one row: p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms",
    ]
    return Result("device_ops", {"rows": rows, "operations": operations, "seed": seed}, figures, summary)


def _timed(operation: Any, targets: list[Any]) -> list[float]:
    """Seconds of each call after the warm-up ones."""
    seconds = []
    for index, target in enumerate(targets):
        started = time.perf_counter()
        operation(target)
        if index >= WARM_UP:
            seconds.append(time.perf_counter() - started)
    return seconds


def commit_floor(path: Path, count: int) -> list[float]:
    """Seconds of `count` transactions that each insert one small row, with the handheld's pragmas (WAL,
    synchronous=FULL: every commit waits for the disk): the least any durable operation can cost here."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, value TEXT)")
        seconds = []
        for index in range(WARM_UP + count):
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t (value) VALUES (?)", [f"row {index}"])
            connection.execute("COMMIT")
            if index >= WARM_UP:
                seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        connection.close()


def _unread_meters(handheld: Handheld) -> list[dict[str, Any]]:
    """Meters with no reading this cycle, the first of each route first (a reader walks on from there)."""
    meters = handheld.store.rows(
        """SELECT m.* FROM meters m WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = m.id)
           ORDER BY m.route_seq, m.route_id"""
    )
    return meters


# --- the prefill ------------------------------------------------------------------------------------------------

Rows = dict[str, list[dict[str, Any]]]


def prefill(directory: Path, rows: int, rng: random.Random) -> dict[str, int]:
    """Write about `rows` rows into a new handheld's database (see the module docstring); rows per table."""
    handheld = Handheld(directory)  # creates the schema
    handheld.close()
    now = dt.datetime.now(dt.UTC)
    meters = max(ROUTE_SIZE // 5, rows * 15 // 100)
    tables: Rows = {name: [] for name in ("routes", "customers", "premises", "meters", "readings", "outbox")}
    meter_rows = _routes(tables, meters, now, rng)
    _readings(tables, meter_rows, rows * 13 // 100, rows // 100, now, rng)
    tables["journal"] = _journal(rows * 15 // 100, meters, now, rng)
    jobs = max(2 * (WARM_UP + 1), rows * 2 // 100)
    tables["jobs"], tables["job_events"] = _jobs(jobs, max(2, rows * 20 // 100 // jobs), meters, now, rng)
    _write(directory / "handheld.db", tables, now)
    return {name: len(values) for name, values in tables.items()}


def _routes(tables: Rows, meters: int, now: dt.datetime, rng: random.Random) -> list[dict[str, Any]]:
    """Routes of ROUTE_SIZE meters in walk order, each meter with its premise and customer."""
    cycle_start = (now - dt.timedelta(days=12)).date()
    for r in range(-(-meters // ROUTE_SIZE)):
        tables["routes"].append(
            {
                "id": f"R{r:04d}",
                "code": f"RT-{r:04d}",
                "name": f"Walk {r}",
                "assigned_to": USER_ID,
                "cycle_start": cycle_start.isoformat(),
                "cycle_end": (cycle_start + dt.timedelta(days=30)).isoformat(),
                "meter_count": min(ROUTE_SIZE, meters - r * ROUTE_SIZE),
            }
        )
    for m in range(meters):
        cid, pid = f"C{m:07d}", f"P{m:07d}"
        tables["customers"].append(
            {"id": cid, "account_no": f"41{m:08d}", "name": f"Customer {m}", "phone": f"+86 139 {m:08d}",
             "segment": "standard", "vip": 0}
        )  # fmt: skip
        tables["premises"].append(
            {"id": pid, "customer_id": cid, "address": f"{m % 400} Renmin Rd", "lat": 31.2, "lon": 121.4,
             "hazards": ["dog"] if rng.random() < 0.03 else [], "access_notes": None}
        )  # fmt: skip
        tables["meters"].append(
            {"id": f"M{m:07d}", "number": f"A{10_000_000 + m}", "premise_id": pid,
             "route_id": f"R{m // ROUTE_SIZE:04d}", "route_seq": (m % ROUTE_SIZE + 1) * 10,
             "meter_class": "residential", "dials": 5, "multiplier": 1.0, "avg_daily": round(rng.uniform(5, 30), 2),
             "low_factor": 0.5, "high_factor": 2.0, "last_value": rng.randrange(1_000, 50_000),
             "last_read_at": iso(now - dt.timedelta(days=rng.uniform(28, 32))), "last_read_type": "regular",
             "consecutive_estimates": 0}
        )  # fmt: skip
    return tables["meters"]


def _readings(
    tables: Rows, meters: list[dict[str, Any]], count: int, pending: int, now: dt.datetime, rng: random.Random
) -> None:
    """This cycle's readings: the first 80 % of each route in walk order, then re-reads superseding them; the
    last `pending` ones not pushed yet (in the outbox)."""
    sizes = {route["id"]: route["meter_count"] for route in tables["routes"]}
    read = [m for m in meters if m["route_seq"] // 10 - 1 < sizes[m["route_id"]] * 8 // 10]
    for index in range(count if read else 0):
        meter = read[index % len(read)]
        superseded = tables["readings"][index - len(read)]["id"] if index >= len(read) else None
        at = now - dt.timedelta(days=11) + dt.timedelta(seconds=index * 20)
        waiting = count - index <= pending
        stamp = str(HLC(int(at.timestamp() * 1000), 0, NODE))
        data = {
            "meter_id": meter["id"], "value": in_band_value(meter, int(at.timestamp() * 1000)),
            "reading_type": "re_read" if superseded else "regular", "skip_code": None, "trouble_code": None,
            "comment_code": None, "note": None, "read_at": iso(at), "supersedes": superseded, "gps": None,
            "check": {"result": "in_range", "consumption": 300.0, "expected": 300.0, "low": 150, "high": 600,
                      "rollover": False, "entries": 1},
        }  # fmt: skip
        reading_id = f"MR-{uuid.UUID(int=rng.getrandbits(128)).hex}"
        tables["readings"].append(
            {"id": reading_id, **data, "hlc": stamp, "reader_id": USER_ID, "received_at": None if waiting else iso(at),
             "flags": [], "pending": int(waiting)}
        )  # fmt: skip
        if waiting:
            change_id = str(uuid.UUID(int=rng.getrandbits(128)))
            change = {"change_id": change_id, "entity": "meter_reading", "entity_id": reading_id, "hlc": stamp,
                      "data": data}  # fmt: skip
            tables["outbox"].append(
                {"change_id": change_id, "entity": "meter_reading", "entity_id": reading_id, "payload": change,
                 "created_at": iso(at), "attempts": 0}
            )  # fmt: skip


def _journal(count: int, meters: int, now: dt.datetime, rng: random.Random) -> list[dict[str, Any]]:
    """Acknowledged changes of the last 30 days (kept for re-sending after a server restore)."""
    rows = []
    for j in range(count):
        at = now - dt.timedelta(days=30) + dt.timedelta(seconds=j * 60)
        change_id = str(uuid.UUID(int=rng.getrandbits(128)))
        change = {"change_id": change_id, "entity": "meter_reading", "entity_id": f"MR-old-{j}",
                  "hlc": str(HLC(int(at.timestamp() * 1000), 0, NODE)),
                  "data": {"meter_id": f"M{j % meters:07d}", "value": 1234, "read_at": iso(at)}}  # fmt: skip
        rows.append({"change_id": change_id, "payload": change, "acknowledged_at": iso(at)})
    return rows


def _jobs(
    count: int, events_per_job: int, meters: int, now: dt.datetime, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Open jobs, half assigned (the crew has not left), half on site: the office's and the field's status
    events, then notes and materials."""
    jobs, events = [], []
    for j in range(count):
        job_id = f"J-{j:06d}"
        created = now - dt.timedelta(hours=rng.uniform(2, 72))
        marks = [("new", "office", 0), ("assigned", "office", 5)]
        if j % 2:
            marks += [("en_route", "field", 30), ("on_site", "field", 50)]
        status_hlc = ""
        for e in range(events_per_job):
            status, source, minutes = marks[e] if e < len(marks) else (None, "field", 60 + e)
            at = created + dt.timedelta(minutes=minutes)
            stamp = str(HLC(int(at.timestamp() * 1000), 0, NODE if source == "field" else "srv-office"))
            kind = "status" if status else ("note" if e % 2 else "material")
            material = kind == "material"
            note = "Waiting for the customer to clear access" if kind == "note" else None
            events.append(
                {"id": f"E-{j:06d}-{e:03d}", "job_id": job_id, "kind": kind, "status": status,
                 "round": 1 if status else None, "text": note,
                 "material_code": "FUSE-63A" if material else None, "quantity": 2.0 if material else None,
                 "unit": "pcs" if material else None, "recorded_at": iso(at), "gps": None, "hlc": stamp,
                 "author_id": USER_ID, "source": source, "received_at": iso(at), "flags": [], "pending": 0}
            )  # fmt: skip
            status_hlc = stamp if status else status_hlc
        status = marks[-1][0]
        values = dict.fromkeys(("resolution_code", "cause", "resolution_note", "follow_up_needed", "contact_name"))
        jobs.append(
            {"id": job_id, "number": f"J2611-{j:06d}", "customer_id": f"C{(j * 7) % meters:07d}",
             "premise_id": f"P{(j * 7) % meters:07d}", "job_type": "outage", "summary": "No power at premises",
             "priority": 1 + j % 4, "assigned_to": USER_ID, "scheduled_start": iso(created + dt.timedelta(hours=4)),
             "scheduled_end": iso(created + dt.timedelta(hours=8)), "requires_signature": 0, "created_at": iso(created),
             "status": status, "round": 1, "status_hlc": status_hlc, **values, "field_hlc": {},
             "server_state": {"status": status, "round": 1, "status_hlc": status_hlc, "fields": {}, "values": values}}
        )  # fmt: skip
    return jobs, events


def _write(path: Path, tables: Rows, now: dt.datetime) -> None:
    """One transaction of executemany per table, JSON columns encoded as the store encodes them; then the
    identity a synced handheld holds in its meta table."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        for name, rows in tables.items():
            if rows:
                columns = list(rows[0])
                connection.executemany(
                    f"INSERT INTO [{name}] ({', '.join(f'[{c}]' for c in columns)}) "
                    f"VALUES ({', '.join(f':{c}' for c in columns)})",
                    [encode(name, row) for row in rows],
                )
        meta = {
            "server_url": "http://127.0.0.1:9",  # never contacted: nothing here syncs
            "device_id": "D-bench-device",
            "token": "not-a-real-token",
            "user_id": USER_ID,
            "user": {"id": USER_ID, "name": "Benchmark crew", "role": "lineman"},
            "cursor": None,
            "snapshot_active": False,
            "hlc_last": str(HLC(int(now.timestamp() * 1000), 0, NODE)),
        }
        connection.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
