"""A fleet of handhelds against a real server through a fault-injecting proxy, checked against the sync
invariants at the end.

    python -m tests.reliability.fleet --devices 200 --operations 100000 --backend postgresql \
        --json docs/reliability-last-run.json

What happens in a run (seeded: the same seed makes the same world, work and fault decisions):
- a real gunicorn server (3 workers) on a fresh SQLite file or PostgreSQL schema, holding field users with
  routes and jobs; some users carry two handhelds, so their edits can collide;
- device processes (the real client core, tests/reliability/device_worker.py) run sessions of random field
  work, each followed by a sync through a loopback proxy that drops connections before and after the server
  commits, delays, truncates, duplicates and resets; some syncs are ended by SIGKILL and the device carries on
  in a new process; one device's clock runs a day ahead, another's jumps two hours back mid-run;
- the office cancels, reassigns, returns, closes and creates jobs through the staff pages meanwhile;
- the server is killed (SIGKILL, workers and all) and restarted mid-run;
- finally every device syncs twice with the faults off and the invariants are checked
  (tests/reliability/invariants.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pda_client import Handheld
from pda_client.store import LocalStore
from server import create_app
from server.extensions import db
from server.models import ChangeReceipt
from sync_protocol.lifecycle import STAGE, Status
from tests.e2e.conftest import ROOT, LiveServer, start_server

from . import invariants
from .device_worker import FAST_RETRIES
from .faultproxy import FaultProxy
from .fleet_world import FleetWorld, build_fleet_world, enrollment_codes
from .office import Office

DAY_MS = 86_400_000
DEFAULT_FAULTS = {"drop_before": 0.05, "drop_after": 0.06, "delay": 0.05, "truncate": 0.04, "duplicate": 0.05,
                  "reset": 0.03}


@dataclass
class FleetConfig:
    devices: int = 12
    operations: int = 1_500
    backend: str = "sqlite"
    seed: int = 1
    processes: int = 4  # device processes working at once
    ops_per_session: int = 12
    kill_share: float = 0.1  # syncs ended by a process kill
    server_restarts: int = 1
    office_pause_s: float = 0.3
    meters_per_route: int = 25
    jobs_per_lineman: int = 4
    shared_user_share: float = 0.25  # users with two handhelds
    faults: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FAULTS))
    progress: bool = False  # a line on stderr every 30 s (the large run)


@dataclass
class Device:
    index: int
    name: str
    data_dir: Path
    user_id: str
    clock_offset_ms: int = 0
    jumps_back_at: int | None = None  # the session after which the clock is set two hours back
    sessions: int = 0
    positions: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))

    def offset(self) -> int:
        if self.jumps_back_at is not None and self.sessions >= self.jumps_back_at:
            return self.clock_offset_ms - 2 * 3_600_000
        return self.clock_offset_ms


class DeviceProcess:
    """A worker process running device sessions one after another; killed and replaced at will."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        with self.log.open("a") as errors:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.device_worker"],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True, bufsize=1,
            )

    def session(self, command: dict[str, Any], kill_after_s: float | None) -> dict[str, Any] | None:
        """Run one session; with `kill_after_s`, SIGKILL the process that long after its sync began and
        start a new one. Returns the session's report, or None when it was killed before reporting."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"a device process died on its own: see {self.log}")
            message = json.loads(line)
            if message["event"] == "syncing" and kill_after_s is not None:
                time.sleep(kill_after_s)
                self.process.send_signal(signal.SIGKILL)
                self.close()
                self.process = self._spawn()
                return None
            if message["event"] == "done":
                return message

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a pipe to a killed process
                    stream.close()
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(30)


@dataclass
class FleetRun:
    config: FleetConfig
    directory: Path
    live: LiveServer
    world: FleetWorld
    devices: list[Device]
    proxy: FaultProxy
    rng: random.Random
    engine: sa.Engine
    operations: int = 0
    sessions: int = 0
    kills: int = 0
    restarts: int = 0
    sync_failures: Counter[str] = field(default_factory=Counter)
    server_positions: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the busy part ----------------------------------------------------------------------------------------

    def work(self) -> Office:
        idle: queue.Queue[Device] = queue.Queue()
        order = list(self.devices)
        self.rng.shuffle(order)
        for device in order:
            idle.put(device)
        stop = threading.Event()
        office = Office(self.live.url, self.engine, self.world, random.Random(self.config.seed + 1))
        restart_points = [
            self.config.operations * (i + 1) // (self.config.server_restarts + 1)
            for i in range(self.config.server_restarts)
        ]

        def device_loop(slot: int) -> None:
            process = DeviceProcess(self.directory / f"device-process-{slot}.log")
            try:
                while not stop.is_set():
                    try:
                        device = idle.get(timeout=1)
                    except queue.Empty:
                        continue
                    try:
                        self._session(process, device)
                    finally:
                        idle.put(device)
            finally:
                process.close()

        def office_loop() -> None:
            while not stop.is_set():
                office.act()
                self._observe_server()
                time.sleep(self.config.office_pause_s)

        threads = [threading.Thread(target=device_loop, args=(slot,), daemon=True)
                   for slot in range(self.config.processes)]
        threads.append(threading.Thread(target=office_loop, daemon=True))
        for thread in threads:
            thread.start()
        try:
            last_report = time.monotonic()
            while self.operations < self.config.operations:
                if restart_points and self.operations >= restart_points[0]:
                    restart_points.pop(0)
                    self._restart_server()
                time.sleep(0.2)
                if self.config.progress and time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    print(f"fleet: {self.operations} operations, {self.sessions} sessions, {self.kills} kills, "
                          f"{self.restarts} restarts, faults {dict(self.proxy.counts)}", file=sys.stderr, flush=True)
                for thread in threads:
                    if not thread.is_alive():
                        raise AssertionError("a simulation thread died: see the logs in " + str(self.directory))
        finally:
            stop.set()
            for thread in threads:
                thread.join(120)
        return office

    def _session(self, process: DeviceProcess, device: Device) -> None:
        with self.lock:
            seed = self.rng.randrange(2**31)
            kill = self.rng.random() < self.config.kill_share
            kill_after = self.rng.uniform(0.0, 0.4) if kill else None
        command = {"dir": str(device.data_dir), "seed": seed, "ops": self.config.ops_per_session,
                   "clock_offset_ms": device.offset(), "sync": True}
        ledger_before = _ledger_lines(device)
        report = process.session(command, kill_after)
        device.sessions += 1
        with self.lock:
            self.sessions += 1
            self.operations += _ledger_lines(device) - ledger_before
            if report is None:
                self.kills += 1
                return
            if not report["sync"]["ok"]:
                self.sync_failures[report["sync"]["code"]] += 1
        for job_id, position in report["jobs"].items():
            device.positions[job_id].append(tuple(position))

    def _observe_server(self) -> None:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id, round, status FROM jobs")).all()
        except sa.exc.OperationalError:
            return  # the database is being restarted with the server (SQLite file locked): next time
        for job_id, round_, status in rows:
            self.server_positions[job_id].append((round_, STAGE[Status(status)]))

    def _restart_server(self) -> None:
        """Kill the server outright (master and workers, mid-request) and start it again on its port."""
        process = self.live.process
        assert process is not None
        for pid in [process.pid, *self.live.worker_pids()]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(30)
        self.live.process = None
        time.sleep(0.5)
        self.live.start()
        with self.lock:
            self.restarts += 1

    # --- the end ----------------------------------------------------------------------------------------------

    def settle(self) -> list[str]:
        """Two clean syncs per device (the second brings what the others pushed in the first)."""
        problems: list[str] = []
        process = DeviceProcess(self.directory / "device-process-final.log")
        try:
            with self.proxy.clean():
                for _ in range(2):
                    for device in self.devices:
                        command = {"dir": str(device.data_dir), "seed": 0, "ops": 0,
                                   "clock_offset_ms": device.offset(), "sync": True}
                        report = process.session(command, None)
                        assert report is not None
                        if not report["sync"]["ok"]:
                            problems.append(f"{device.name}: the final sync failed: {report['sync']}")
                        for job_id, position in report["jobs"].items():
                            device.positions[job_id].append(tuple(position))
        finally:
            process.close()
        return problems

    def fresh_download(self, device: Device) -> invariants.DeviceFiles:
        """The device's scope downloaded from scratch, with its identity (no faults, no proxy)."""
        target = self.directory / "fresh" / device.name
        source = LocalStore(device.data_dir / "handheld.db")
        try:
            identity = {key: source.meta(key) for key in ("device_id", "token", "user_id", "user")}
        finally:
            source.close()
        fresh = Handheld(target, transport_factory=FAST_RETRIES)
        try:
            with fresh.store.transaction():
                for key, value in {**identity, "server_url": self.live.url}.items():
                    fresh.store.set_meta(key, value)
            fresh.sync()
        finally:
            fresh.close()
        return invariants.DeviceFiles(device.name, target)

    def check(self) -> dict[str, list[str]]:
        files = [invariants.DeviceFiles(d.name, d.data_dir) for d in self.devices]
        violations = {
            "acknowledged_or_lost": invariants.acknowledged_and_ledger(files, self.engine),
            "concurrent_overwrite_without_conflict": invariants.concurrent_overwrites(self.engine),
            "status_backwards": invariants.status_never_backwards(self.server_positions, "server"),
            "device_differs_from_server": [],
        }
        for device, mine in zip(self.devices, files, strict=True):
            violations["status_backwards"] += invariants.status_never_backwards(device.positions, device.name)
            violations["device_differs_from_server"] += invariants.same_as_server(mine, self.fresh_download(device))
        return violations


def _commit() -> str:
    """The commit checked out, marked "+changes" when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True)
    return (head.stdout.strip() or "unknown") + ("+changes" if dirty.stdout.strip() else "")


def _ledger_lines(device: Device) -> int:
    path = device.data_dir / "ledger.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


@contextmanager
def fleet(config: FleetConfig, directory: Path) -> Iterator[FleetRun]:
    """A server with the fleet's world, enrolled devices and the proxy in front; all stopped afterwards."""
    rng = random.Random(config.seed)
    shared = max(1, round(config.devices * config.shared_user_share / 2)) if config.devices >= 4 else 0
    users_needed = config.devices - shared
    readers = users_needed // 2
    linemen = users_needed - readers
    holder: dict[str, Any] = {}

    def prepare(live: LiveServer) -> None:
        app = create_app({"SQLALCHEMY_DATABASE_URI": live.database_url}, instance_path=str(directory / "office"))
        with app.app_context():
            world = build_fleet_world(rng, readers=readers, linemen=linemen,
                                      meters_per_route=config.meters_per_route,
                                      jobs_per_lineman=config.jobs_per_lineman)
            users = world.field_users
            # the first `shared` users of each kind carry a second handheld: half linemen (edits collide)
            doubled = [u.id for u in world.linemen[: (shared + 1) // 2]] + [u.id for u in world.readers[: shared // 2]]
            counts = {u.id: 1 + (u.id in doubled) for u in users}
            holder["codes"] = enrollment_codes(world, counts)
            db.session.commit()
            holder["world"] = world
            db.session.remove()
            db.engine.dispose()

    env = {"FIELDSYNC_ENROLL_ATTEMPTS": str(config.devices * 2 + 10), "FIELDSYNC_WORKERS": "3"}
    with start_server(directory / "server", config.backend, demo_data=False, env=env, prepare=prepare) as live:
        world: FleetWorld = holder["world"]
        engine = sa.create_engine(live.database_url)
        port = int(live.url.rsplit(":", 1)[1])
        with FaultProxy(("127.0.0.1", port), seed=config.seed, rates=config.faults).start() as proxy:
            devices = _enrol(config, directory, live, proxy, world, holder["codes"], rng)
            run = FleetRun(config, directory, live, world, devices, proxy, rng, engine)
            try:
                yield run
            finally:
                engine.dispose()


def _enrol(config: FleetConfig, directory: Path, live: LiveServer, proxy: FaultProxy, world: FleetWorld,
           codes: dict[str, list[str]], rng: random.Random) -> list[Device]:
    devices = []
    for user in world.field_users:
        for code in codes[user.id]:
            index = len(devices)
            device = Device(index, f"pda-{index:03d}", directory / "devices" / f"pda-{index:03d}", user.id,
                            clock_offset_ms=rng.randrange(-20_000, 20_000))
            handheld = Handheld(device.data_dir, transport_factory=FAST_RETRIES)
            try:
                handheld.enroll(live.url, code, device.name)
                handheld.store.set_meta("server_url", proxy.url)  # from now on every request meets the faults
            finally:
                handheld.close()
            devices.append(device)
    devices[0].clock_offset_ms = DAY_MS  # a clock a day ahead: flagged, can never win a merge
    if len(devices) > 1:
        devices[1].jumps_back_at = 3  # set two hours back after a few sessions (the HLC stays monotonic)
    return devices


def run_fleet(config: FleetConfig, directory: Path) -> dict[str, Any]:
    """Run the simulation and return its figures (violations listed, not raised)."""
    started, commit = time.monotonic(), _commit()  # the code the run starts with
    with fleet(config, directory) as run:
        office = run.work()
        office.close()
        final_problems = run.settle()
        violations = run.check()
        violations["final_sync_failed"] = final_problems
        counts = {row["status"]: row["n"] for row in invariants.server_rows(
            run.engine, "SELECT status, COUNT(*) AS n FROM change_receipts GROUP BY status")}
        conflicts = invariants.server_rows(run.engine, "SELECT COUNT(*) AS n FROM conflicts")[0]["n"]
        rejected = Counter(
            (row["result"].get("error") or {}).get("code", "?")
            for row in invariants.server_rows(
                run.engine, sa.select(ChangeReceipt.result).where(ChangeReceipt.status == "rejected")
            )
        )
        operations = sum(len(invariants.DeviceFiles(d.name, d.data_dir).ledger()) for d in run.devices)
        return {
            "devices": len(run.devices),
            "operations": operations,
            "faults": dict(run.proxy.counts),
            "kills": run.kills,
            "server_restarts": run.restarts,
            "violations": sum(len(v) for v in violations.values()),
            "seed": config.seed,
            "backend": config.backend,
            "details": {
                "sessions": run.sessions,
                "requests_through_proxy": run.proxy.requests,
                "upstream_unavailable": run.proxy.upstream_failures,
                "failed_syncs_by_code": dict(run.sync_failures),
                "office_actions": dict(office.done),
                "office_refused": dict(office.refused),
                "receipts_by_status": counts,
                "rejected_by_code": dict(rejected),
                "conflict_records": conflicts,
                "seconds": round(time.monotonic() - started, 1),
                "python": platform.python_version(),
                "commit": commit,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "violation_list": {k: v[:20] for k, v in violations.items() if v},
            },
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--ops-per-session", type=int, default=25)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, device stores)")
    args = parser.parse_args(argv)
    if args.backend == "postgresql" and not os.environ.get("FIELDSYNC_TEST_PG_URL"):
        parser.error("--backend postgresql needs FIELDSYNC_TEST_PG_URL")
    config = FleetConfig(devices=args.devices, operations=args.operations, backend=args.backend, seed=args.seed,
                         processes=args.processes, ops_per_session=args.ops_per_session,
                         server_restarts=max(1, args.operations // 40_000), progress=True)
    directory = Path(tempfile.mkdtemp(prefix="fieldsync-fleet-"))
    try:
        figures = run_fleet(config, directory)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    text = json.dumps(figures, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        summary = {k: figures[k] for k in ("devices", "operations", "faults", "kills", "server_restarts",
                                           "violations", "seed", "backend")}
        args.json.write_text(json.dumps({**summary, "details": figures["details"]}, indent=2) + "\n")
    return 0 if figures["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
