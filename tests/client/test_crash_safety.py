"""Crash safety of the handheld's store (issue 7): a process killed at random points (between the
statements of a transaction, inside a statement, just before and just after COMMIT, at an arbitrary
moment, in the middle of a sync) leaves the database intact, every operation whole or absent, and every
operation the crew was told is saved in the outbox with its exact content, ready to sync exactly once.

The writer is a separate process (tests/client/crash_child.py) that kills itself with SIGKILL at a chosen
SQL statement or SQLite VM step; it logs each operation to an fsync'd ledger once it has returned. Kill
points come from a calibration run of the same seed, which lists every statement it executed. Reproduce
one run with the command printed in a failure message.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pda_client import Handheld
from pda_client.migrations import SCHEMA_VERSION, current_version
from pda_client.transport import Transport
from sync_protocol import HLC
from tests.client.conftest import NOW
from tests.client.crash_child import CLOCK, LEDGER, TRACE
from tests.client.loopback import PUSH, Loopback
from tests.e2e.conftest import LiveServer, start_server
from tests.e2e.test_handheld_sync import handheld as enrolled_handheld
from tests.e2e.test_handheld_sync import new_job, server_rows

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

ROOT = Path(__file__).resolve().parents[2]
CHILD = "tests.client.crash_child"
PARALLEL = 2  # child processes at a time (the suite runs on small machines)
STATEMENT_SEEDS = (701, 702, 703)
VM_SEEDS = (801, 802)
EXTERNAL_SEEDS = tuple(range(901, 909))
KILLED = -signal.SIGKILL


# --- running the child --------------------------------------------------------------------------------------


@dataclass
class Run:
    folder: Path
    mode: str
    seed: int
    kill_at: int
    returncode: int | None = None
    stderr: str = ""

    @property
    def label(self) -> str:
        return (
            f"seed={self.seed} mode={self.mode} kill_at={self.kill_at} returncode={self.returncode} in {self.folder} "
            f"(reproduce in a fresh copy of the prepared folder: python -m {CHILD} DIR {self.mode} {self.seed} "
            f"{self.kill_at})"
        )


def prepare(folder: Path, database: Path) -> Path:
    """A copy of the prepared handheld database, with the child's clock at the scope's moment."""
    folder.mkdir(parents=True)
    shutil.copyfile(database, folder / "handheld.db")
    (folder / CLOCK).write_text(json.dumps({"start_ms": int(NOW.timestamp() * 1000)}))
    return folder


class ForkServer:
    """`crash_child --serve`: runs children by forking one process that has paid the imports already."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", CHILD, "--serve"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def run(self, run: Run) -> Run:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{run.folder} {run.mode} {run.seed} {run.kill_at}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"the fork server died: {self._log.name}"
        run.returncode = json.loads(answer)["returncode"]
        errors = run.folder / "stderr.txt"
        run.stderr = errors.read_text() if errors.exists() else ""
        return run

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(60)
        self.process.stdout.close()
        self._log.close()


@pytest.fixture
def forkservers(tmp_path: Path) -> Iterator[list[ForkServer]]:
    servers = [ForkServer(tmp_path / f"forkserver-{n}.log") for n in range(PARALLEL)]
    yield servers
    for server in servers:
        server.close()


def run_all(servers: list[ForkServer], runs: list[Run]) -> list[Run]:
    """Each server takes every PARALLEL-th run, one after another."""
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda n: [servers[n].run(r) for r in runs[n :: len(servers)]], range(len(servers))))
    return runs


# --- the ledger ----------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    done: list[dict[str, Any]] = field(default_factory=list)
    in_flight: dict[str, Any] | None = None  # begun and not returned when the process died
    stages: list[dict[str, Any]] = field(default_factory=list)
    synced: bool = False

    @property
    def changes(self) -> list[dict[str, Any]]:
        return [change for entry in self.done for change in entry["changes"]]


def read_ledger(folder: Path, name: str = LEDGER) -> Ledger:
    ledger = Ledger()
    path = folder / name
    lines = path.read_text(encoding="utf-8").split("\n") if path.exists() else []
    # every line is written whole and fsync'd; a line the kill cut short (no newline) was never written
    for line in lines[:-1]:
        entry = json.loads(line)
        if "begin" in entry:
            ledger.in_flight = entry
        elif "done" in entry or "refused" in entry:
            if "done" in entry:
                ledger.done.append(entry)
            ledger.in_flight = None
        elif "stage" in entry:
            ledger.stages.append(entry)
        elif "synced" in entry:
            ledger.synced = True
    return ledger


# --- what must hold after a kill ---------------------------------------------------------------------------


def assert_intact(path: Path, tables: set[str], label: str) -> None:
    """SQLite's own checks, on a plain connection before the app opens (and recovers) the file."""
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], label
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == [], label
    names = schema_tables(path)  # e.g. no probe table of sqlite-utils' left behind by a kill
    assert names == tables, f"{label}: tables left behind or lost: {names ^ tables}"


def assert_record(hh: Handheld, change: dict[str, Any], label: str) -> None:
    """The local record a pending change describes exists and holds what the change says."""
    entity, entity_id, data = change["entity"], change["entity_id"], change["data"]
    if entity == "job":
        assert hh.store.get("jobs", entity_id) is not None, f"{label}: job {entity_id} gone"
        return
    table = {"meter_reading": "readings", "job_event": "job_events"}[entity]
    row = hh.store.get(table, entity_id)
    assert row is not None, f"{label}: {entity} {entity_id} is in the outbox but not in {table}"
    assert row["pending"] == 1, label
    assert {name: row[name] for name in data} == data, f"{label}: {entity} {entity_id} differs from its change"
    if entity == "job_event":
        assert row["hlc"] == change["hlc"], label


def assert_jobs_follow_their_changes(hh: Handheld, outbox: list[dict[str, Any]], label: str) -> None:
    """A job's row was refreshed in the transaction that queued its change: its status is its latest
    status event (field statuses only move forward, on site/on hold by the later stamp) and its outcome
    fields hold the latest local edits."""
    status: dict[str, str] = {}
    fields: dict[str, dict[str, Any]] = {}
    for entry in outbox:
        change = entry["payload"]
        if change["entity"] == "job_event" and change["data"]["kind"] == "status":
            status[change["data"]["job_id"]] = change["data"]["status"]
        elif change["entity"] == "job":
            fields.setdefault(change["entity_id"], {}).update(change["data"])
    for job_id in status.keys() | fields.keys():
        job = hh.store.get("jobs", job_id)
        assert job is not None, label
        if job_id in status:
            assert job["status"] == status[job_id], f"{label}: job {job_id}"
        for name, value in fields.get(job_id, {}).items():
            assert job[name] == value, f"{label}: job {job_id} field {name}"


def assert_consistent(run: Run, tables: set[str]) -> tuple[Ledger, list[str]]:
    """Every operation the ledger holds is whole in the store, in order; the one under way when the
    process died is whole or absent; nothing else is there. Returns the ledger and the outbox's change ids."""
    label = run.label
    assert run.returncode in (KILLED, 0), f"{label}: the child failed:\n{run.stderr[-3000:]}"
    assert_intact(run.folder / "handheld.db", tables, label)
    ledger = read_ledger(run.folder)
    hh = Handheld(run.folder)
    try:
        assert current_version(hh.store.db) == SCHEMA_VERSION, label
        outbox = hh.outbox()
        logged = ledger.changes
        assert [e["change_id"] for e in outbox[: len(logged)]] == [c["change_id"] for c in logged], (
            f"{label}: the outbox does not start with the ledger's changes, in order"
        )
        for entry, change in zip(outbox, logged, strict=False):
            assert entry["payload"] == change["payload"], f"{label}: change {change['change_id']} altered"
        for done in ledger.done:
            produced = {c["entity_id"] for c in done["changes"]} | {c["change_id"] for c in done["changes"]}
            assert done["result"] in produced, f"{label}: operation {done['done']} returned {done['result']}"
        extra = outbox[len(logged) :]
        if extra:  # committed, then killed before the operation returned: all of it, never part
            assert ledger.in_flight is not None, f"{label}: outbox rows no operation wrote: {extra}"
            assert len(extra) == ledger.in_flight["expect"], (
                f"{label}: operation {ledger.in_flight} left {len(extra)} of its {ledger.in_flight['expect']} changes"
            )
        for entry in outbox:
            assert_record(hh, entry["payload"], label)
        pending = {
            row["id"]
            for table in ("readings", "job_events")
            for row in hh.store.rows(f"SELECT id FROM [{table}] WHERE pending = 1")
        }
        queued = {e["entity_id"] for e in outbox if e["entity"] in ("meter_reading", "job_event")}
        assert pending == queued, f"{label}: pending records without a change: {pending - queued}"
        assert_jobs_follow_their_changes(hh, outbox, label)
        if outbox:  # the clock's last stamp was saved with them: a restart never reissues an older one
            last = HLC.parse(hh.store.meta("hlc_last"))
            assert all(HLC.parse(e["payload"]["hlc"]) <= last for e in outbox), label
        return ledger, [e["change_id"] for e in outbox]
    finally:
        hh.close()


class Transports:
    """A transport factory for `Handheld.sync` that keeps its transports, to close their sessions."""

    def __init__(self) -> None:
        self.made: list[Transport] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Transport:
        transport = Transport(*args, **{"attempts": 2, "backoff_s": 0.01, **kwargs})
        self.made.append(transport)
        return transport

    def close(self) -> None:
        for transport in self.made:
            transport.session.close()


def assert_usable(run: Run, queued: list[str], server: Loopback) -> None:
    """The store takes new work after the crash and syncs it all, each change once."""
    label = run.label
    transports = Transports()
    hh = Handheld(run.folder, transport_factory=transports)
    try:
        event = hh.jobs.add_note("J-1001", "after the crash")
        newest = hh.outbox()[-1]
        assert newest["entity_id"] == event["id"], label
        assert all(HLC.parse(e["payload"]["hlc"]) < HLC.parse(newest["payload"]["hlc"]) for e in hh.outbox()[:-1]), (
            label
        )
        hh.store.set_meta("server_url", server.url)
        seen = len(server.seen)
        hh.sync()
        pushed = Counter(cid for s in server.seen[seen:] if s.path == PUSH for cid in s.change_ids)
        assert pushed == Counter([*queued, newest["change_id"]]), f"{label}: pushed {pushed}"
        assert hh.outbox() == [], label
        journal = {r["change_id"] for r in hh.store.rows("SELECT change_id FROM journal")}
        assert journal >= set(pushed), label
        assert hh.store.rows("SELECT id FROM readings WHERE pending = 1") == [], label
    finally:
        hh.close()
        transports.close()


def schema_tables(database: Path) -> set[str]:
    with closing(sqlite3.connect(database)) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# --- kill points -------------------------------------------------------------------------------------------


def calibrate(
    servers: list[ForkServer], tmp_path: Path, database: Path, seeds: tuple[int, ...]
) -> dict[int, dict[str, Any]]:
    """A run of each seed that never kills and lists every statement it executed."""
    runs = [Run(prepare(tmp_path / f"calibrate-{seed}", database), "statement", seed, 0) for seed in seeds]
    traces = {}
    for run in run_all(servers, runs):
        assert run.returncode == 0, f"{run.label}:\n{run.stderr[-3000:]}"
        traces[run.seed] = json.loads((run.folder / TRACE).read_text())
    return traces


def transactions(trace: dict[str, Any]) -> list[list[list[Any]]]:
    """The statements of each transaction an operation ran, BEGIN to COMMIT; each statement is
    [index, progress callbacks before it, keyword, operation]."""
    found: list[list[list[Any]]] = []
    current: list[list[Any]] | None = None
    for statement in trace["statements_list"]:
        keyword, operation = statement[2], statement[3]
        if operation is None:
            continue
        if keyword == "BEGIN":
            current = [statement]
        elif current is not None:
            current.append(statement)
            if keyword == "COMMIT":
                found.append(current)
                current = None
    return found


def statement_kill_points(trace: dict[str, Any], rng: random.Random) -> list[int]:
    """Just before a COMMIT; just after one (committed, the call not yet returned); between the statements
    of a transaction; anywhere. And before the last COMMIT of every operation that commits more than
    once: an operation must not be left half done."""
    groups = transactions(trace)
    commits = [group[-1][0] for group in groups]
    inside = [s[0] for group in groups for s in group[1:-1]]
    points = {*rng.sample(commits, 3), *(c + 1 for c in rng.sample(commits, 3)), *rng.sample(inside, 3)}
    points.add(rng.randint(1, trace["statements"]))
    per_operation = Counter(group[0][3] for group in groups)
    points |= {group[-1][0] for group in groups if per_operation[group[0][3]] > 1}
    return sorted(points)


def vm_kill_points(trace: dict[str, Any], rng: random.Random) -> list[int]:
    """Progress callbacks: the last one of a COMMIT (its WAL write is done, the call has not returned),
    the first one of a write, and one at random inside a write."""
    statements = trace["statements_list"]
    after = {s[0]: nxt[1] for s, nxt in itertools.pairwise(statements)}
    groups = transactions(trace)
    commits = [group[-1] for group in groups if group[-1][0] in after]
    writes = [s for group in groups for s in group if s[2] in ("INSERT", "UPDATE", "DELETE") and s[0] in after]
    points = {after[c[0]] for c in rng.sample(commits, 3)}
    points |= {w[1] + 1 for w in rng.sample(writes, 2)}
    points |= {rng.randint(w[1] + 1, after[w[0]]) for w in rng.sample(writes, 3)}
    return sorted(p for p in points if 0 < p <= trace["steps"])


# --- the tests ------------------------------------------------------------------------------------------------


@pytest.fixture
def tables(loaded_database: Path) -> set[str]:
    return schema_tables(loaded_database)


def check_all(runs: list[Run], tables: set[str], server: Loopback) -> Counter[str]:
    """Check every run; count where the kills landed."""
    landed: Counter[str] = Counter()
    for run in runs:
        ledger, queued = assert_consistent(run, tables)
        assert_usable(run, queued, server)
        if run.returncode == 0:
            landed["finished"] += 1
        elif ledger.in_flight is None:
            landed["between operations"] += 1
        elif len(queued) > len(ledger.changes):
            landed["committed, not yet returned"] += 1
        else:
            landed["inside an operation, rolled back"] += 1
    return landed


def test_kill_between_statements_leaves_each_operation_whole_or_absent(
    forkservers: list[ForkServer], tmp_path: Path, loaded_database: Path, tables: set[str], server: Loopback
) -> None:
    traces = calibrate(forkservers, tmp_path, loaded_database, STATEMENT_SEEDS)
    runs = [
        Run(prepare(tmp_path / f"statement-{seed}-{point}", loaded_database), "statement", seed, point)
        for seed in STATEMENT_SEEDS
        for point in statement_kill_points(traces[seed], random.Random(seed))
    ]
    landed = check_all(run_all(forkservers, runs), tables, server)
    print(f"statement kills: {len(runs)} runs, {dict(landed)}")
    assert landed["committed, not yet returned"] and landed["inside an operation, rolled back"], landed
    assert landed["finished"] == 0, f"kill points past the end: the trace is not reproducible ({landed})"


def test_kill_inside_a_statement_leaves_each_operation_whole_or_absent(
    forkservers: list[ForkServer], tmp_path: Path, loaded_database: Path, tables: set[str], server: Loopback
) -> None:
    traces = calibrate(forkservers, tmp_path, loaded_database, VM_SEEDS)
    runs = [
        Run(prepare(tmp_path / f"vm-{seed}-{point}", loaded_database), "vm", seed, point)
        for seed in VM_SEEDS
        for point in vm_kill_points(traces[seed], random.Random(seed))
    ]
    landed = check_all(run_all(forkservers, runs), tables, server)
    print(f"vm kills: {len(runs)} runs, {dict(landed)}")
    assert landed["committed, not yet returned"] and landed["inside an operation, rolled back"], landed
    assert landed["finished"] == 0, landed


def test_kill_at_a_random_moment_leaves_each_operation_whole_or_absent(
    forkservers: list[ForkServer], tmp_path: Path, loaded_database: Path, tables: set[str], server: Loopback
) -> None:
    runs = [
        Run(
            prepare(tmp_path / f"external-{seed}", loaded_database),
            "external",
            seed,
            random.Random(seed).randrange(30_000, 400_000),  # µs after the child's first ledger line
        )
        for seed in EXTERNAL_SEEDS
    ]
    landed = check_all(run_all(forkservers, runs), tables, server)
    print(f"external kills: {len(runs)} runs, {dict(landed)}")
    assert landed["finished"] == 0, landed
    worked = sum(1 for run in runs if read_ledger(run.folder).done)
    assert worked >= len(runs) // 2, f"only {worked} runs got work done before the kill: raise the delays"


# --- a sync killed against a real server ---------------------------------------------------------------------

SYNC_SEED = 1001
# Statements from the start of `Handheld.sync()`. The first run's sync is the first download (~900 records,
# one page, ~1,900 statements: a page is written with one executemany per table); later ones push 14-16
# changes in batches of 3: hello ~4-14, the push ~14-95 (a batch settled every ~15), the pull page ~90-110.
SYNC_KILL_POINTS = (1_000, 20, 50, 70, 90, 96, 100)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(tmp_path_factory.mktemp("crash-live"), "sqlite") as server:
        yield server


def kill_stage(ledger: Ledger, run: Run) -> str:
    """Where in the sync the kill landed, from the progress lines written before it."""
    if ledger.synced:
        return "finished"
    stages = [entry for entry in ledger.stages if entry["statement"] < run.kill_at]
    if not stages:
        return "hello"
    last = stages[-1]
    if last["stage"] == "push" and last["progress"][0] == last["progress"][1]:
        return "pull"  # the push reports its last batch, the pull its first page only once it is applied
    return last["stage"]


def assert_nothing_lost(run: Run, logged: dict[str, dict[str, Any]], tables: set[str]) -> None:
    """Every change the crew was told is saved is still queued or acknowledged, never neither, and its
    record's pending flag moved with it."""
    label = run.label
    assert run.returncode in (KILLED, 0), f"{label}: the child failed:\n{run.stderr[-3000:]}"
    assert_intact(run.folder / "handheld.db", tables, label)
    hh = Handheld(run.folder)
    try:
        queued = {e["change_id"] for e in hh.outbox()}
        journal = {r["change_id"] for r in hh.store.rows("SELECT change_id FROM journal")}
        rejected = {r["change_id"] for r in hh.store.rows("SELECT change_id FROM rejected")}
        assert queued <= logged.keys(), label
        assert not queued & journal, f"{label}: both queued and acknowledged: {queued & journal}"
        lost = logged.keys() - queued - journal - rejected
        assert not lost, f"{label}: changes neither queued nor acknowledged: {lost}"
        for change_id, change in logged.items():
            table = {"meter_reading": "readings", "job_event": "job_events"}.get(change["entity"])
            if table is None:
                continue
            row = hh.store.get(table, change["entity_id"])
            assert row is not None, f"{label}: {change['entity']} {change['entity_id']} gone"
            assert row["pending"] == (change_id in queued), f"{label}: {change['entity_id']} pending flag"
    finally:
        hh.close()


def local_ids(hh: Handheld) -> dict[str, set[str]]:
    return {
        table: {r["id"] for r in hh.store.rows(f"SELECT id FROM [{table}]")} for table in ("readings", "job_events")
    }


@pytest.mark.e2e
def test_kill_during_sync_loses_nothing_and_the_next_sync_delivers_each_change_once(
    live: LiveServer, tmp_path: Path, forkservers: list[ForkServer]
) -> None:
    new_job(live, tmp_path, "reader1", "crash safety")  # job work for the reader, beside the route
    device = enrolled_handheld(live, tmp_path, "reader1", "device")
    device_id = device.store.meta("device_id")
    folder = device.data_dir
    device.close()
    tables = schema_tables(folder / "handheld.db")
    logged: dict[str, dict[str, Any]] = {}  # every change of every run's ledger, by id
    landed: Counter[str] = Counter()
    for number, kill_at in enumerate(SYNC_KILL_POINTS):
        run = forkservers[0].run(Run(folder, "sync_statement", SYNC_SEED + number, kill_at))
        name = f"ledger-{number}.jsonl"
        (folder / LEDGER).rename(folder / name)
        ledger = read_ledger(folder, name)
        logged.update((c["change_id"], c) for c in ledger.changes)
        landed[kill_stage(ledger, run)] += 1
        assert_nothing_lost(run, logged, tables)

        clean = forkservers[0].run(Run(folder, "sync", SYNC_SEED + number, 0))  # a fresh process, as after a restart
        assert clean.returncode == 0, f"{run.label}: the sync after the kill failed:\n{clean.stderr[-3000:]}"
        (folder / LEDGER).unlink()
        hh = Handheld(folder)
        try:
            assert hh.outbox() == [], run.label
            held = local_ids(hh)
        finally:
            hh.close()
        receipts = server_rows(live, "SELECT change_id, status FROM change_receipts WHERE device_id = :d", d=device_id)
        once = Counter(r["change_id"] for r in receipts)
        assert once == Counter(logged.keys()), f"{run.label}: receipts differ from the ledgers"
        assert all(r["status"] != "rejected" for r in receipts), f"{run.label}: {receipts}"
        for change in logged.values():
            table = {"meter_reading": "readings", "job_event": "job_events"}.get(change["entity"])
            assert table is None or change["entity_id"] in held[table], run.label
    print(f"sync kills: {len(SYNC_KILL_POINTS)} runs, {dict(landed)}")
    assert landed["push"] and landed["pull"], f"no kill landed in the push or the pull: {landed}"

    # What the device holds is what a fresh full download gives: copy it, forget the cursor, pull again.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copyfile(folder / "handheld.db", fresh / "handheld.db")
    transports = Transports()
    again = Handheld(fresh, transport_factory=transports)
    try:
        again.store.set_meta("cursor", None)
        assert again.sync().pulled > 0
        expected = local_ids(again)
    finally:
        again.close()
        transports.close()
    hh = Handheld(folder)
    try:
        assert local_ids(hh) == expected
    finally:
        hh.close()
