"""A handheld process that kills itself mid-write: `python -m tests.client.crash_child DATA_DIR MODE SEED KILL_AT`.

It opens the Handheld in DATA_DIR and performs a seeded random sequence of field operations through the
real client core (readings in and out of range, skips, corrections, the job lifecycle, notes, materials,
outcome edits). Around each operation it appends to DATA_DIR/ledger.jsonl, flushed and fsync'd:
`{"begin": i, "op", "args", "expect"}` before the call (`expect`: how many outbox changes the operation
makes) and `{"done": i, "op", "result", "changes"}` after it returned, with every outbox row it added. A
`done` line is what the crew was told is saved; the test checks each one survived the kill.

MODE picks the kill, which is SIGKILL to itself (no cleanup, no close, as a battery dying):
- `statement`: when the connection starts its KILL_AT-th SQL statement (BEGIN and COMMIT included), so
  kills land between the statements of a transaction and just before a COMMIT runs;
- `vm`: at the KILL_AT-th SQLite progress callback (one per VM instruction), so kills land inside a
  statement, including COMMIT's program after its WAL write and before the call returns;
- `external`: no hook; the operations loop until the test kills the process (KILL_AT is its delay);
- `sync_statement`: the operations run unhooked, then `Handheld.sync()` against the enrolled server with
  the statement kill armed, counting from the start of the sync (small push batches, so a push has several
  acknowledgements to be killed between). Sync stages go to the ledger as `{"stage", "statement"}` lines;
- `sync`: no operations and no kill, only the sync: the clean one after a crash, from a fresh process.

`python -m tests.client.crash_child --serve` is the same run without paying the interpreter's start-up and
imports each time (the suite runs many): it reads `DATA_DIR MODE SEED KILL_AT` lines on stdin, runs each in
a forked process and answers with one JSON line, `{"returncode": ...}` as subprocess reports it (-9: killed).
In the external mode it is the one that kills, KILL_AT microseconds after the run's first ledger line: the
forked process is its own unreaped child until then, so the signal cannot reach another process.

KILL_AT 0 never kills: the run then writes DATA_DIR/trace.json, every statement with its index, the
progress-callback count when it started, its first keyword and the operation it belonged to, from which
the test picks kill points.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pda_client import Handheld, sync
from pda_client.errors import HandheldError, NeedsConfirmation
from pda_client.store import decode
from sync_protocol.codes import COMMENT_CODES, RESOLUTION_CODES, SKIP_CODES, TROUBLE_CODES

LEDGER = "ledger.jsonl"
TRACE = "trace.json"
CLOCK = "clock.json"
OPERATIONS = 14  # per run in the hooked modes: enough for every kind, few enough to stay quick
EXTERNAL_OPERATIONS = 2_000  # the external mode's loop ends here if the test never kills it
SYNC_BATCH = 3  # changes per push batch in sync_statement mode
NOTES = ("Transformer humming", "Kunde nicht da — Nachbar informiert", "变压器有异响", "Cable sheath cracked")
CAUSES = ("tree contact", "corroded joint", "overload", "animal")
CONTACTS = ("Mr Wang", "Ms Li", "Caretaker")
MATERIALS = (("CABLE-16", "m"), ("FUSE-63A", "pcs"), ("CLAMP-01", "pcs"))


class Ledger:
    """Append-only JSON lines, each on disk before the next step (a killed process keeps what it wrote)."""

    def __init__(self, path: Path) -> None:
        self.file: TextIO = path.open("a", encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


class Tripwire:
    """Counts what the store's connection executes and SIGKILLs this process at the chosen point."""

    def __init__(self, connection: sqlite3.Connection, mode: str, kill_at: int) -> None:
        self.mode = mode
        self.kill_at = kill_at
        self.statements = 0
        self.steps = 0
        self.operation: int | None = None  # the operation call under way (None while choosing the next one)
        self.trace: list[list[Any]] | None = [] if kill_at == 0 and mode in ("statement", "vm") else None
        connection.set_trace_callback(self._statement)
        if mode == "vm" or self.trace is not None:
            connection.set_progress_handler(self._step, 1)

    def _statement(self, sql: str) -> None:
        self.statements += 1
        if self.trace is not None:
            self.trace.append([self.statements, self.steps, sql.split(None, 1)[0].upper(), self.operation])
        if self.mode in ("statement", "sync_statement") and self.statements == self.kill_at:
            die()

    def _step(self) -> int:
        self.steps += 1
        if self.mode == "vm" and self.steps == self.kill_at:
            die()
        return 0  # go on


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def physical_clock(data_dir: Path) -> Callable[[], int] | None:
    """The handheld's clock: from DATA_DIR/clock.json's `start_ms` on, running in real time (a prepared
    scope is dated, and the real date would put its meters' last reads months back); without the file,
    the real clock (a real server checks reading dates against its own)."""
    path = data_dir / CLOCK
    if not path.exists():
        return None
    start_ms = int(json.loads(path.read_text())["start_ms"])
    began = time.monotonic()
    return lambda: start_ms + int((time.monotonic() - began) * 1000)


class FieldWork:
    """Seeded random field operations that are valid in the handheld's current state."""

    def __init__(self, handheld: Handheld, rng: random.Random) -> None:
        self.hh = handheld
        self.rng = rng

    def next(self) -> tuple[str, dict[str, Any], int, Callable[[], dict[str, Any]]] | None:
        """(operation, arguments, outbox changes it makes, the call), or None when nothing can be done."""
        choices: list[tuple[str, dict[str, Any], int, Callable[[], dict[str, Any]]]] = []
        meters = [row["id"] for row in self.hh.store.rows("SELECT id FROM meters ORDER BY route_seq, id")]
        if meters:
            choices += self._reading_ops(self.rng.choice(meters))
        jobs = [row["id"] for row in self.hh.store.rows("SELECT id FROM jobs ORDER BY id")]
        if jobs:
            choices += self._job_ops(self.rng.choice(jobs))
        return self.rng.choice(choices) if choices else None

    def _reading_ops(self, meter_id: str) -> list[tuple[str, dict[str, Any], int, Callable[[], dict[str, Any]]]]:
        readings = self.hh.readings
        meter = readings.find_meter(meter_id)
        limit = 10 ** meter["dials"]
        span = readings.expected_range(meter_id)
        if span is None:
            inside = outside = self.rng.randrange(limit)
        else:
            middle = (span["low_use"] + span["high_use"]) / 2 / (meter["multiplier"] or 1.0)
            inside = (meter["last_value"] + round(middle)) % limit
            outside = (meter["last_value"] + max(0, int(span["low_use"] / (meter["multiplier"] or 1.0)) // 4)) % limit
        skip = self.rng.choice(sorted(SKIP_CODES))
        trouble = self.rng.choice([None, *sorted(TROUBLE_CODES)])
        remark = self.rng.choice(sorted(COMMENT_CODES))
        current = readings.current_reading(meter_id)
        ops = [
            ("read", {"meter": meter_id, "value": inside}, 1, lambda: self._read(meter_id, inside)),
            (
                "read_out_of_range",
                {"meter": meter_id, "value": outside},
                1,
                lambda: self._read(meter_id, outside),
            ),
            (
                "read_with_remark",
                {"meter": meter_id, "value": outside, "comment_code": remark},
                1,
                lambda: readings.record(meter_id, outside, comment_code=remark, note="checked twice"),
            ),
            (
                "skip",
                {"meter": meter_id, "skip_code": skip, "trouble_code": trouble},
                1,
                lambda: readings.skip(meter_id, skip, trouble_code=trouble),
            ),
        ]
        if current is not None:
            ops.append(
                (
                    "correct",
                    {"reading": current["id"], "value": inside},
                    1,
                    lambda: self._correct(current["id"], inside),
                )
            )
        return ops

    def _read(self, meter_id: str, value: int) -> dict[str, Any]:
        """As a reader does: enter the value; if the app asks, enter it again to confirm."""
        try:
            return self.hh.readings.record(meter_id, value)
        except NeedsConfirmation:
            return self.hh.readings.record(meter_id, value, confirm=value)

    def _correct(self, reading_id: str, value: int) -> dict[str, Any]:
        try:
            return self.hh.readings.correct(reading_id, value)
        except NeedsConfirmation:
            return self.hh.readings.correct(reading_id, value, confirm=value)

    def _job_ops(self, job_id: str) -> list[tuple[str, dict[str, Any], int, Callable[[], dict[str, Any]]]]:
        jobs = self.hh.jobs
        detail = jobs.detail(job_id)
        note = self.rng.choice(NOTES)
        code, unit = self.rng.choice(MATERIALS)
        quantity = self.rng.choice((1.0, 2.5, 12.0))
        field, value = self.rng.choice(
            [
                ("cause", self.rng.choice(CAUSES)),
                ("contact_name", self.rng.choice(CONTACTS)),
                ("resolution_note", self.rng.choice(NOTES)),
                ("follow_up_needed", self.rng.choice((True, False))),
            ]
        )
        resolution = self.rng.choice(sorted(RESOLUTION_CODES))
        ops: list[tuple[str, dict[str, Any], int, Callable[[], dict[str, Any]]]] = [
            ("note", {"job": job_id, "text": note}, 1, lambda: jobs.add_note(job_id, note)),
            (
                "material",
                {"job": job_id, "code": code, "quantity": quantity, "unit": unit},
                1,
                lambda: jobs.add_material(job_id, code, quantity, unit),
            ),
            ("edit", {"job": job_id, field: value}, 1, lambda: jobs.edit(job_id, **{field: value})),
        ]
        if detail["status"] in ("completed", "cannot_complete", "closed", "cancelled"):
            return ops
        if not detail["accepted"]:
            ops.append(("accept", {"job": job_id}, 1, lambda: jobs.accept(job_id)))
        gps = {"lat": 23.1, "lon": 113.3}
        for action in detail["actions"]:
            if action == "start_travel":
                ops.append((action, {"job": job_id}, 1, lambda: jobs.start_travel(job_id)))
            elif action == "arrive":
                ops.append((action, {"job": job_id, "gps": gps}, 1, lambda: jobs.arrive(job_id, gps=gps)))
            elif action == "hold":
                ops.append(("hold", {"job": job_id, "reason": note}, 2, lambda: jobs.hold(job_id, note)))
            elif action == "resume":
                ops.append((action, {"job": job_id}, 1, lambda: jobs.resume(job_id)))
            elif action == "complete" and self.rng.random() < 0.5:  # keep jobs open a while
                ops.append(
                    (
                        action,
                        {"job": job_id, "resolution_code": resolution, "note": note},
                        2,
                        lambda: jobs.complete(job_id, resolution, note),
                    )
                )
        return ops


def new_outbox_rows(handheld: Handheld, after: int) -> list[dict[str, Any]]:
    return [
        decode("outbox", row)
        for row in handheld.store.rows(
            "SELECT seq, change_id, entity, entity_id, payload FROM outbox WHERE seq > ? ORDER BY seq", [after]
        )
    ]


def run(data_dir: Path, mode: str, seed: int, kill_at: int) -> None:
    ledger = Ledger(data_dir / LEDGER)
    handheld = Handheld(data_dir, physical_clock=physical_clock(data_dir))
    # a sync run's field work goes unhooked: its kill is armed when the sync starts
    tripwire = Tripwire(handheld.store.db.conn, "none" if mode.startswith("sync") else mode, kill_at)
    rng = random.Random(seed)
    work = FieldWork(handheld, rng)
    last_seq = max([0, *(r["seq"] for r in handheld.store.rows("SELECT seq FROM outbox"))])
    count = {"external": EXTERNAL_OPERATIONS, "sync": 0}.get(mode, OPERATIONS)
    ledger.write({"ready": True, "mode": mode, "seed": seed, "kill_at": kill_at})
    for index in range(count):
        chosen = work.next()
        if chosen is None:
            break
        name, args, expect, call = chosen
        ledger.write({"begin": index, "op": name, "args": args, "expect": expect})
        tripwire.operation = index
        try:
            result = call()
        except HandheldError as exc:  # a rule said no: nothing may have been written
            ledger.write({"refused": index, "op": name, "error": exc.code, "message": exc.message})
            continue
        finally:
            tripwire.operation = None
        changes = new_outbox_rows(handheld, last_seq)
        if changes:
            last_seq = changes[-1]["seq"]
        result_id = result.get("id") or result.get("change_id")
        ledger.write({"done": index, "op": name, "result": result_id, "changes": changes})
    if mode.startswith("sync"):
        sync.BATCH_SIZE = SYNC_BATCH
        tripwire.mode = mode
        tripwire.statements = 0

        def progress(stage: str, done: int, total: int) -> None:
            ledger.write({"stage": stage, "progress": [done, total], "statement": tripwire.statements})

        report = handheld.sync(progress=progress)
        ledger.write({"synced": True, "pushed": report.pushed, "pages": report.pages})
    if tripwire.trace is not None:
        totals = {"statements": tripwire.statements, "steps": tripwire.steps, "statements_list": tripwire.trace}
        (data_dir / TRACE).write_text(json.dumps(totals))
    ledger.write({"finished": True})
    ledger.file.close()
    handheld.close()


def serve() -> None:
    for line in sys.stdin:
        folder, mode, seed, kill_at = line.split()
        data_dir = Path(folder)
        pid = os.fork()
        if pid == 0:  # the run: its errors to its own folder, and no cleanup of the server's state on exit
            code = 1
            try:
                log = os.open(data_dir / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(log, 2)
                run(data_dir, mode, int(seed), int(kill_at))
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        if mode == "external":
            kill_later(pid, data_dir / LEDGER, int(kill_at) / 1e6)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


def kill_later(pid: int, ledger: Path, delay_s: float) -> None:
    """SIGKILL the run `delay_s` after its first ledger line. Until the caller reaps it, the pid stays
    this process's child (a zombie at worst), so the signal cannot reach anything else."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (ledger.exists() and ledger.stat().st_size):
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return  # it ended before it began working
        time.sleep(0.002)
    time.sleep(delay_s)
    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        run(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
