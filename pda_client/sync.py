"""The sync engine: hello, push the outbox in batches, pull pages until done.

Guarantees (DESIGN.md section 3):
- A change leaves the outbox only in the same local transaction that records the server's answer to it;
  a sync killed at any point resumes by pushing again, and the server's idempotency returns the same
  answers. A rejected change moves to the `rejected` table with its reason: never silently dropped.
- Each pulled page and its cursor are committed in one local transaction; then pending local changes are
  merged on top again, so a pull never overwrites work that has not reached the server.
- resync_required (the server was restored, or the device was offline longer than it keeps changes):
  push the outbox, then download the whole scope again; rows the new snapshot does not contain are dropped
  at its end, except rows with pending changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from sync_protocol import HLC, OLDEST_SUPPORTED_VERSION, PROTOCOL_VERSION, HLCClock, flatten_messages
from sync_protocol.ownership import FIELD_EDITABLE_JOB_FIELDS

from .errors import Cancelled, HandheldError, ServerRefused, SyncError
from .jobs import Jobs
from .outbox import iso, utc_now
from .records import load_pulled
from .store import LocalStore, decode, encode
from .transport import PayloadTooLarge, ResyncRequired, Transport

log = logging.getLogger(__name__)

TABLES: Mapping[str, str] = {
    "job": "jobs",
    "job_event": "job_events",
    "meter_reading": "readings",
    "customer": "customers",
    "premise": "premises",
    "meter": "meters",
    "route": "routes",
    "conflict": "conflicts",
}
FACT_TABLES = {"job_events", "readings"}
BATCH_SIZE = 200
JOURNAL_DAYS = 30  # how long acknowledged changes are kept for re-sending after a server restore

Progress = Callable[[str, int, int], None]  # (stage, done, total); total 0 when unknown


@dataclass
class SyncReport:
    pushed: int = 0
    applied: int = 0
    conflicts: int = 0
    rejected: int = 0
    pulled: int = 0
    removed: int = 0
    pages: int = 0
    resynced: bool = False
    clock_offset_ms: int = 0
    messages: list[str] = field(default_factory=list)


class SyncEngine:
    def __init__(
        self,
        store: LocalStore,
        transport: Transport,
        clock: HLCClock,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        now: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.store = store
        self.transport = transport
        self.clock = clock
        self.jobs = Jobs(store, clock, now)
        self.progress = progress or (lambda stage, done, total: None)
        self.cancel = cancel or threading.Event()
        self.now = now
        self.report = SyncReport()
        self._settlement = Settlement(acknowledged_at="")  # the batch being settled (_settle_all)

    def run(self) -> SyncReport:
        """One full sync. Raises a SyncError subclass with a message for the user; work is never lost."""
        self.report = SyncReport()
        try:
            if self.store.meta("resync_pending"):  # an interrupted resync goes on first
                self._hello(check_acknowledged=False)
                self._resync()
            try:
                self._hello()
            except ResyncRequired:
                self._resync()
            self._push()
            self._pull()
            self._prune_journal()
        except HandheldError as exc:
            self.store.set_meta("last_error", {"at": iso(self.now()), "message": exc.message, "code": exc.code})
            raise
        else:
            self.store.set_meta("last_success_at", iso(self.now()))
            self.store.set_meta("last_error", None)
        finally:
            self.store.checkpoint()  # here, not in the middle of someone's entry (store.WAL_AUTOCHECKPOINT_PAGES)
        self.progress("done", 1, 1)
        return self.report

    # --- stages -----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if self.cancel.is_set():
            raise Cancelled("Sync cancelled; nothing was lost.")
        return self.transport.request(method, path, cancelled=self.cancel.is_set, **kwargs)

    def _hello(self, check_acknowledged: bool = True) -> None:
        """Negotiate the version and adopt the server's clock. With `check_acknowledged`, name the newest
        change the server acknowledged: a server that lost it answers resync_required."""
        self.progress("hello", 0, 1)
        sent_at = self.now()
        params: dict[str, Any] = {
            "protocol_min": OLDEST_SUPPORTED_VERSION,
            "protocol_max": PROTOCOL_VERSION,
            "device_time_ms": int(sent_at.timestamp() * 1000),
        }
        last_ack = self.store.meta("last_ack")
        if check_acknowledged and last_ack:
            params["last_ack"] = last_ack
        body = self._request("GET", "/api/v1/sync/hello", params=params)
        self.transport.protocol = int(body["protocol"])
        server_time = dt.datetime.fromisoformat(body["server_time"].replace("Z", "+00:00"))
        offset = int((sent_at - server_time).total_seconds() * 1000)
        self.report.clock_offset_ms = offset
        with self.store.transaction():
            self.clock.observe(HLC.parse(body["server_hlc"]))
            self.store.set_meta("hlc_last", str(self.clock.last))
            self.store.set_meta("clock_offset_ms", offset)
            self.store.set_meta("user", body["user"])
            self.store.set_meta("server_epoch", body["epoch"])
            self.store.set_meta("max_batch_changes", body["limits"]["max_batch_changes"])
        if abs(offset) > 5 * 60 * 1000:
            self.report.messages.append(
                f"The handheld's clock is {abs(offset) // 60000} min "
                f"{'ahead' if offset > 0 else 'behind'}: set it right."
            )

    def _push(self, queue: str = "outbox") -> None:
        """Send a queue in batches: the outbox, or (on resync) the journal of acknowledged changes."""
        batch = min(BATCH_SIZE, int(self.store.meta("max_batch_changes") or BATCH_SIZE))
        total = self.store.db.execute(f"SELECT COUNT(*) FROM [{queue}]").fetchone()[0]
        done, after = 0, 0
        self.progress("push", done, total)
        while True:
            entries = [
                decode(queue, row)
                for row in self.store.rows(
                    f"SELECT * FROM [{queue}] WHERE seq > ? ORDER BY seq LIMIT ?", [after, batch]
                )
            ]
            if not entries:
                return
            body = {
                "protocol": self.transport.protocol,
                "batch_id": uuid.uuid4().hex,
                "changes": [e["payload"] for e in entries],
            }
            try:
                response = self._request("POST", "/api/v1/sync/push", body=body)
            except PayloadTooLarge as exc:
                if batch > 1:
                    batch = max(1, batch // 2)
                    continue
                entries, results = entries[:1], [_rejection(entries[0], "payload_too_large", exc.message)]
            else:
                results = response.get("results", [])
                if [r.get("change_id") for r in results] != [e["change_id"] for e in entries]:
                    raise ServerRefused("The server's answer does not match the batch sent; nothing was removed.")
            if queue == "outbox":
                self._settle_all(entries, results)
            else:
                self._settle_journal(entries, results)
            after = entries[-1]["seq"]
            done += len(entries)
            self.progress("push", done, total)

    def _settle_all(self, entries: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        """Record the server's answers and release the changes from the outbox, in one transaction: each
        answer is settled in memory (`_settle`), then the batch's outbox deletions, journal rows and fact
        updates are written with one executemany each, and `last_ack` once."""
        by_id = {r["change_id"]: r for r in results}
        settled = [(entry, by_id[entry["change_id"]]) for entry in entries if entry["change_id"] in by_id]
        touched_jobs: set[str] = set()
        with self.store.transaction():
            self._settlement = Settlement(acknowledged_at=iso(self.now()))
            for entry, result in settled:
                self._settle(entry, result, touched_jobs)
            self._settlement.write(self.store, [entry["change_id"] for entry, _ in settled])
            for job_id in touched_jobs:
                self.jobs.refresh(job_id)

    def _settle(self, entry: dict[str, Any], result: dict[str, Any], touched_jobs: set[str]) -> None:
        change = entry["payload"]
        self.report.pushed += 1
        job_id = change["entity_id"] if change["entity"] == "job" else change.get("data", {}).get("job_id")
        if job_id:
            touched_jobs.add(job_id)
        table = TABLES.get(change["entity"])
        if result["status"] == "rejected":
            self._reject(change, result, table)
            return
        self._settlement.acknowledge(entry["change_id"], change)
        if result["status"] == "conflict":
            self.report.conflicts += 1
        else:
            self.report.applied += 1
        if table in FACT_TABLES:
            self._settlement.settle_fact(table, change["entity_id"], result)

    def _reject(self, change: dict[str, Any], result: dict[str, Any], table: str | None) -> None:
        self._record_rejection(change, result)
        if table in FACT_TABLES:  # the server does not hold it: it lives on in `rejected`
            self.store.db.execute(f"DELETE FROM [{table}] WHERE id = ? AND pending = 1", [change["entity_id"]])

    def _record_rejection(self, change: dict[str, Any], result: dict[str, Any]) -> None:
        error = result.get("error") or {}
        self.report.rejected += 1
        row = encode(
            "rejected",
            {
                "change_id": change["change_id"],
                "entity": change["entity"],
                "entity_id": change["entity_id"],
                "payload": change,
                "code": error.get("code", "rejected"),
                "message": error.get("message", ""),
                "fields": error.get("fields") or {},
                "rejected_at": iso(self.now()),
            },
        )
        self.store.db.conn.execute(
            f"INSERT OR REPLACE INTO rejected ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )

    def _settle_journal(self, entries: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        """Answers to re-sent acknowledged changes: a change the restored server now refuses is moved to
        `rejected` (shown to the crew); the others stay journaled."""
        by_id = {r["change_id"]: r for r in results}
        with self.store.transaction():
            for entry in entries:
                result = by_id.get(entry["change_id"])
                if result is not None and result["status"] == "rejected":
                    self._record_rejection(entry["payload"], result)
                    self.store.db.execute("DELETE FROM journal WHERE change_id = ?", [entry["change_id"]])

    def _resync(self) -> None:
        """The server lost history (restore) or cannot serve our cursor: re-send every acknowledged change
        still journaled and the outbox (idempotent), then download the whole scope again."""
        self.report.resynced = True
        self.report.messages.append("The server asked for a full download; your work was sent again first.")
        self.store.set_meta("resync_pending", True)
        self._push("journal")
        self._push("outbox")
        with self.store.transaction():
            self.store.set_meta("cursor", None)
            self.store.set_meta("snapshot_active", False)
            self.store.set_meta("resync_pending", False)

    def _prune_journal(self) -> None:
        cutoff = iso(self.now() - dt.timedelta(days=JOURNAL_DAYS))
        with self.store.transaction():
            self.store.db.execute(
                "DELETE FROM journal WHERE acknowledged_at < ? AND change_id != ?",
                [cutoff, self.store.meta("last_ack") or ""],
            )

    def _pull(self) -> None:
        resyncs = 0
        while True:
            cursor = self.store.meta("cursor")
            if cursor is None and not self.store.meta("snapshot_active"):
                self._begin_snapshot()
            try:
                page = self._request("GET", "/api/v1/sync/pull", params={"cursor": cursor} if cursor else None)
            except ResyncRequired:
                resyncs += 1
                if resyncs > 1:
                    raise
                self._resync()
                continue
            self.report.pages += 1
            with self.store.transaction():
                self._apply(page.get("records", []))
                self.store.set_meta("cursor", page["cursor"])
                if not page["has_more"] and self.store.meta("snapshot_active"):
                    self._finish_snapshot()
            self.progress("pull", self.report.pulled, 0)
            if not page["has_more"]:
                return

    # --- applying pulled records ----------------------------------------------------------------

    def _begin_snapshot(self) -> None:
        with self.store.transaction():
            self.store.db.execute("DELETE FROM resync_seen")
            self.store.set_meta("snapshot_active", True)

    def _load(self, raw: Any) -> dict[str, Any] | None:
        """One pulled record, validated; None for one this handheld cannot read. It is left out and reported
        rather than stopping the pull: a server newer than the app (a new code, a longer text) must not
        cut a crew off from its new jobs until the app is updated."""
        try:
            return load_pulled(raw)
        except ValidationError as exc:
            entity = raw.get("entity") if isinstance(raw, Mapping) else None
            record_id = raw.get("id") if isinstance(raw, Mapping) else None
            fields = flatten_messages(exc.messages)
            log.warning("skipping an invalid %s record %s from the server: %s", entity, record_id, fields)
            self.report.messages.append(
                f"Skipped an unreadable {entity or 'unknown'} record ({record_id or 'no id'}: "
                f"{', '.join(sorted(fields))}) from the server; if it goes on, tell the office."
            )
            return None

    def _apply(self, records: Iterable[dict[str, Any]]) -> None:
        """Store one page (the caller holds its transaction with the cursor). Every record is validated
        before anything is written; one the handheld cannot read is left out and reported (see `_load`)."""
        page = [record for raw in records if (record := self._load(raw)) is not None]
        tracking = bool(self.store.meta("snapshot_active"))
        touched_jobs: set[str] = set()
        removed = False
        upserts: dict[str, list[dict[str, Any]]] = {}
        for record in page:
            entity, record_id = record["entity"], record["id"]
            table = TABLES[entity]
            if record["op"] == "remove":
                self._write_upserts(upserts)  # a removal sees every upsert sent before it
                removed = True
                self.report.removed += 1
                self._remove(table, record_id)
                continue
            self.report.pulled += 1
            row = self._row(entity, record_id, record["data"])
            upserts.setdefault(table, []).append(row)
            if entity == "job":
                touched_jobs.add(record_id)
            elif entity == "job_event":
                touched_jobs.add(row["job_id"])
            elif entity == "route":
                removed = True  # a new cycle may put older readings out of scope
        self._write_upserts(upserts)
        if tracking:
            self.store.db.conn.executemany(
                "INSERT OR IGNORE INTO resync_seen (entity, id) VALUES (?, ?)",
                [(TABLES[r["entity"]], r["id"]) for r in page if r["op"] == "upsert"],
            )
        for job_id in touched_jobs:
            self.jobs.refresh(job_id)
        if removed:
            self._collect_garbage()

    def _write_upserts(self, upserts: dict[str, list[dict[str, Any]]]) -> None:
        for table, rows in upserts.items():
            self.store.upsert_many(table, rows)
        upserts.clear()

    def _row(self, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        row = {"id": record_id, **data}
        if entity == "job":
            stamps = data.get("field_hlc") or {}
            row["server_state"] = {
                "status": data["status"],
                "round": data["round"],
                "status_hlc": data.get("status_hlc"),
                "fields": {name: [data.get(name), stamp] for name, stamp in stamps.items()},
                "values": {name: data.get(name) for name in FIELD_EDITABLE_JOB_FIELDS},
            }
        elif entity in ("job_event", "meter_reading"):
            row["pending"] = 0
        return row

    def _pending_ids(self, entity: str) -> set[str]:
        return {r["entity_id"] for r in self.store.rows("SELECT entity_id FROM outbox WHERE entity = ?", [entity])}

    def _remove(self, table: str, record_id: str) -> None:
        if table in FACT_TABLES:
            self.store.db.execute(f"DELETE FROM [{table}] WHERE id = ? AND pending = 0", [record_id])
        elif table == "jobs":
            pending_jobs = self._pending_job_ids()
            if record_id not in pending_jobs:
                self.store.db.execute("DELETE FROM jobs WHERE id = ?", [record_id])
        else:
            self.store.db.execute(f"DELETE FROM [{table}] WHERE id = ?", [record_id])

    def _pending_job_ids(self) -> set[str]:
        ids = self._pending_ids("job")
        ids |= {r["job_id"] for r in self.store.rows("SELECT job_id FROM job_events WHERE pending = 1")}
        return ids

    def _collect_garbage(self) -> None:
        """Drop what nothing in scope refers to any more (never rows with pending changes)."""
        db = self.store.db
        db.execute("DELETE FROM job_events WHERE pending = 0 AND job_id NOT IN (SELECT id FROM jobs)")
        db.execute("DELETE FROM meters WHERE route_id IS NULL OR route_id NOT IN (SELECT id FROM routes)")
        db.execute(
            """DELETE FROM readings WHERE pending = 0 AND (
                   meter_id NOT IN (SELECT id FROM meters)
                   OR read_at < (SELECT COALESCE(r.cycle_start, '') FROM meters m JOIN routes r ON r.id = m.route_id
                                 WHERE m.id = readings.meter_id))"""
        )
        db.execute(
            """DELETE FROM premises WHERE id NOT IN (SELECT premise_id FROM meters)
                                      AND id NOT IN (SELECT premise_id FROM jobs)"""
        )
        db.execute(
            """DELETE FROM customers WHERE id NOT IN (SELECT customer_id FROM premises)
                                       AND id NOT IN (SELECT customer_id FROM jobs)"""
        )

    def _finish_snapshot(self) -> None:
        """The snapshot is complete: drop local rows it did not contain (they left the scope meanwhile)."""
        pending_jobs = self._pending_job_ids()
        for table in TABLES.values():
            if table in ("premises", "customers"):
                continue  # reference rows go with the garbage below, once nothing kept refers to them
            stale = self.store.rows(
                f"SELECT * FROM [{table}] WHERE id NOT IN (SELECT id FROM resync_seen WHERE entity = ?)",
                [table],
            )
            for row in stale:
                job_id = row["id"] if table == "jobs" else row.get("job_id")
                if job_id in pending_jobs:
                    continue  # a job with pending work stays whole: its history, premise and customer
                self._remove(table, row["id"])
        self._collect_garbage()
        self.store.db.execute("DELETE FROM resync_seen")
        self.store.set_meta("snapshot_active", False)


@dataclass
class Settlement:
    """What the answers to one pushed batch write, gathered so that each kind of write is one statement."""

    acknowledged_at: str
    journal: list[tuple[str, str, str]] = field(default_factory=list)
    facts: dict[str, list[tuple[str | None, str | None, str]]] = field(default_factory=dict)

    def acknowledge(self, change_id: str, change: dict[str, Any]) -> None:
        """Journal an acknowledged change (kept for re-sending should the server be restored)."""
        payload = encode("journal", {"payload": change})["payload"]
        self.journal.append((change_id, payload, self.acknowledged_at))

    def settle_fact(self, table: str, fact_id: str, result: dict[str, Any]) -> None:
        """The fact is on the server: no longer pending, with the server's stamp and flags when sent."""
        flags = encode(table, {"flags": result["flags"]})["flags"] if result.get("flags") else None
        self.facts.setdefault(table, []).append((result.get("hlc") or None, flags, fact_id))

    def write(self, store: LocalStore, settled_ids: list[str]) -> None:
        db = store.db.conn
        db.executemany("DELETE FROM outbox WHERE change_id = ?", [(change_id,) for change_id in settled_ids])
        db.executemany(
            "INSERT OR REPLACE INTO journal (change_id, payload, acknowledged_at) VALUES (?, ?, ?)", self.journal
        )
        for table, updates in self.facts.items():
            db.executemany(
                f"UPDATE [{table}] SET pending = 0, hlc = COALESCE(?, hlc), flags = COALESCE(?, flags)"
                " WHERE id = ?",
                updates,
            )
        if self.journal:
            store.set_meta("last_ack", self.journal[-1][0])


def _rejection(entry: Mapping[str, Any], code: str, message: str) -> dict[str, Any]:
    return {
        "change_id": entry["change_id"],
        "status": "rejected",
        "error": {"code": code, "message": message, "fields": {}},
    }


__all__ = ["SyncEngine", "SyncError", "SyncReport"]
