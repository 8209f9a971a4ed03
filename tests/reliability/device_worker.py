"""One simulated handheld process: `python -m tests.reliability.device_worker`.

Reads one JSON command per line on stdin, each a session of one device (its data folder): a seeded run of
random field work through the real client core (readings, skips, corrections, job transitions, notes,
materials, outcome edits), then optionally a sync. Prints JSON lines: `{"event": "syncing"}` just before
the sync (the fleet kills the process some time after it, to interrupt a sync) and `{"event": "done", ...}`
at the end. Several devices share a process one after another, as handhelds would share a core.

After an operation returns, the change ids it queued are appended to the device's `ledger.jsonl`
(fsync'd): the list of work the crew was told is saved. The fleet checks at the end that every one of
them reached the server exactly once.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pda_client import Handheld
from pda_client.errors import HandheldError, NeedsConfirmation
from pda_client.transport import Transport
from sync_protocol.codes import COMMENT_CODES, RESOLUTION_CODES, SKIP_CODES
from sync_protocol.lifecycle import STAGE, Status

# Faults are the point: retry a little, quickly, then give up and let the next session try again.
FAST_RETRIES = functools.partial(Transport, attempts=3, backoff_s=0.05, max_backoff_s=0.3, timeout=(3.0, 20.0))
LEDGER = "ledger.jsonl"
CAUSES = ("tree contact", "corroded joint", "overload", "lightning", "vehicle strike", "animal")
CONTACTS = ("Mr Wang", "Ms Li", "Site manager", "Caretaker")
MATERIALS = (("CABLE-16", "m"), ("FUSE-63A", "pcs"), ("CLAMP-01", "pcs"), ("CONNECTOR-4", "pcs"))


def physical_clock(offset_ms: int) -> Callable[[], int]:
    return lambda: int(time.time() * 1000) + offset_ms


class Session:
    """One device's session of random work."""

    def __init__(self, handheld: Handheld, rng: random.Random, ledger: Path) -> None:
        self.hh = handheld
        self.rng = rng
        self.ledger = ledger

    def work(self, operations: int) -> int:
        """Try `operations` operations; returns how many the core accepted (the rest were refused as
        the app would refuse them, e.g. a transition the job's status does not allow)."""
        has_route = bool(self.hh.store.rows("SELECT 1 FROM routes LIMIT 1"))
        has_jobs = bool(self.hh.store.rows("SELECT 1 FROM jobs LIMIT 1"))
        done = 0
        for _ in range(operations):
            if has_route and (not has_jobs or self.rng.random() < 0.5):
                name, operation = self._reading_operation()
            elif has_jobs:
                name, operation = self._job_operation()
            else:
                return done  # nothing in scope yet: the first sync brings it
            if operation is None:
                continue
            before = self._last_outbox_seq()
            try:
                operation()
            except HandheldError:
                continue  # refused by the core: nothing was saved, nothing to check
            self._record(name, before)
            done += 1
        return done

    # --- meter reading -----------------------------------------------------------------------------------

    def _reading_operation(self) -> tuple[str, Callable[[], Any] | None]:
        meters = self.hh.store.rows("SELECT id, dials FROM meters WHERE route_id IS NOT NULL")
        if not meters:
            return "none", None
        meter = self.rng.choice(meters)
        roll = self.rng.random()
        readings = self.hh.readings
        if roll < 0.55:
            return "read", lambda: self._read(meter, in_range=self.rng.random() < 0.9)
        if roll < 0.70:
            code = self.rng.choice(sorted(SKIP_CODES))
            return "skip", lambda: readings.skip(meter["id"], code, note=self._maybe_text())
        if roll < 0.85:
            own = self.hh.store.rows(
                "SELECT id, meter_id FROM readings WHERE reader_id = ? AND value IS NOT NULL",
                [self.hh.store.meta("user_id")],
            )
            if not own:
                return "none", None
            target = self.rng.choice(own)
            return "correct", lambda: self._read({"id": target["meter_id"]}, in_range=True, supersede=target["id"])
        remark = self.rng.choice(sorted(COMMENT_CODES))
        return "remark", lambda: self._read(meter, in_range=False, comment_code=remark)

    def _read(
        self, meter: dict[str, Any], *, in_range: bool, supersede: str | None = None, comment_code: str | None = None
    ) -> None:
        readings = self.hh.readings
        expected = readings.expected_range(meter["id"])
        limit = 10 ** int(meter.get("dials") or 5)
        if expected and in_range:
            low, high = expected["low"], expected["high"]
            value = self.rng.randint(low, high) if low <= high else low
        else:
            value = self.rng.randrange(limit)
        kwargs: dict[str, Any] = {"comment_code": comment_code} if comment_code else {}
        try:
            if supersede:
                readings.correct(supersede, value, **kwargs)
            else:
                readings.record(meter["id"], value, **kwargs)
        except NeedsConfirmation:
            # out of range: the reader enters it a second time (a verified read)
            if supersede:
                readings.correct(supersede, value, confirm=value)
            else:
                readings.record(meter["id"], value, confirm=value)

    # --- repair jobs -----------------------------------------------------------------------------------------

    def _job_operation(self) -> tuple[str, Callable[[], Any] | None]:
        jobs = self.hh.jobs.list(include_finished=True)
        if not jobs:
            return "none", None
        open_jobs = [j for j in jobs if j["status"] not in ("completed", "cannot_complete", "closed", "cancelled")]
        roll = self.rng.random()
        api = self.hh.jobs
        if open_jobs and roll < 0.5:
            job = self.rng.choice(open_jobs)
            return self._lifecycle_step(job)
        job = self.rng.choice(jobs)
        if roll < 0.72:
            text = self._maybe_text() or "Checked the line."
            return "note", lambda: api.add_note(job["id"], text)
        if roll < 0.85:
            code, unit = self.rng.choice(MATERIALS)
            quantity = float(self.rng.randint(1, 20))
            return "material", lambda: api.add_material(job["id"], code, quantity, unit)
        values = self.rng.choice(
            [
                {"cause": self.rng.choice(CAUSES)},
                {"contact_name": self.rng.choice(CONTACTS)},
                {"follow_up_needed": self.rng.random() < 0.5},
                {"cause": self.rng.choice(CAUSES), "contact_name": self.rng.choice(CONTACTS)},
            ]
        )
        return "edit", lambda: api.edit(job["id"], **values)

    def _lifecycle_step(self, job: dict[str, Any]) -> tuple[str, Callable[[], Any] | None]:
        api, status, ref = self.hh.jobs, job["status"], job["id"]
        code = self.rng.choice(sorted(RESOLUTION_CODES))
        steps: dict[str, list[tuple[str, Callable[[], Any]]]] = {
            "assigned": [
                ("accept", lambda: api.accept(ref)),
                ("travel", lambda: api.start_travel(ref)),
                ("arrive", lambda: api.arrive(ref, gps={"lat": 31.2, "lon": 121.4})),
            ],
            "en_route": [("arrive", lambda: api.arrive(ref)), ("cannot", lambda: api.cannot_complete(ref, code))],
            "on_site": [
                ("hold", lambda: api.hold(ref, "Waiting for a part")),
                ("complete", lambda: api.complete(ref, code, note=self._maybe_text())),
                ("cannot", lambda: api.cannot_complete(ref, code)),
            ],
            "on_hold": [("resume", lambda: api.resume(ref)), ("cannot", lambda: api.cannot_complete(ref, code))],
        }
        options = steps.get(status)
        return self.rng.choice(options) if options else ("none", None)

    # --- bookkeeping -----------------------------------------------------------------------------------------

    def _maybe_text(self) -> str | None:
        if self.rng.random() < 0.5:
            return None
        return self.rng.choice(["Dog in the yard.", "Gate locked, neighbour had a key.", "电表箱锈蚀", "Done <ok>"])

    def _last_outbox_seq(self) -> int:
        return self.hh.store.rows("SELECT COALESCE(MAX(seq), 0) AS seq FROM outbox")[0]["seq"]

    def _record(self, name: str, before: int) -> None:
        changes = [
            row["change_id"]
            for row in self.hh.store.rows("SELECT change_id FROM outbox WHERE seq > ? ORDER BY seq", [before])
        ]
        with self.ledger.open("a") as out:
            out.write(json.dumps({"op": name, "changes": changes}) + "\n")
            out.flush()
            os.fsync(out.fileno())


def job_positions(handheld: Handheld) -> dict[str, list[int]]:
    """Each job's (round, stage) as the device shows it: the fleet checks it never goes backwards."""
    return {
        row["id"]: [row["round"], STAGE[Status(row["status"])]]
        for row in handheld.store.rows("SELECT id, round, status FROM jobs")
    }


def run_command(command: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    data_dir = Path(command["dir"])
    rng = random.Random(command["seed"])
    handheld = Handheld(
        data_dir, physical_clock=physical_clock(command.get("clock_offset_ms", 0)), transport_factory=FAST_RETRIES
    )
    try:
        done = Session(handheld, rng, data_dir / LEDGER).work(command["ops"])
        sync_result: dict[str, Any] | None = None
        if command.get("sync"):
            emit({"event": "syncing"})
            try:
                report = handheld.sync()
                sync_result = {"ok": True, "pushed": report.pushed, "pulled": report.pulled,
                               "conflicts": report.conflicts, "rejected": report.rejected, "resynced": report.resynced}
            except HandheldError as exc:
                sync_result = {"ok": False, "code": exc.code, "message": exc.message}
        emit({"event": "done", "ops": done, "sync": sync_result, "jobs": job_positions(handheld)})
    finally:
        handheld.close()


def main() -> None:
    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        if line.strip():
            run_command(json.loads(line), emit)


if __name__ == "__main__":
    main()
