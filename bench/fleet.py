"""fleet: D handhelds syncing a day of work at once against gunicorn with several workers, over PostgreSQL
when FIELDSYNC_TEST_PG_URL is set (SQLite otherwise).

- The world (tests/reliability/fleet_world.py): half the devices are meter readers with a route of
  `readings` meters each, half linemen with `jobs` assigned jobs each; one handheld per user.
- Setup (not timed): each handheld enrols, downloads its scope, and does its day through the core's
  public API: a reader reads every meter of the route (`readings` changes), a lineman travels to, arrives
  at, notes and completes every job (5 changes a job).
- The burst (timed): every handheld runs `sync()` at the same moment (push, then pull). Devices run in
  `processes` processes (default min(8, D): the GIL would serialise one process's devices), each syncing
  its share concurrently, one thread per device, released together by one event.
- Latency is per HTTP request as the handheld sees it (time from sending to the whole body read, one
  figure per attempt: a retried request counts each attempt), over every request of the burst (hello, push,
  pull). The target p99 < 1 s is about this figure. Per-device sync durations are reported beside it.
- server_time: the same requests' time inside a worker (gunicorn's access log): latency minus the wait in
  the listen queue. When p99 is far above server_time, the fleet waits for a free worker: capacity.
- errors: device syncs that failed, plus HTTP attempts answered 5xx/429 or not at all.
- changes_per_s: changes pushed (and acknowledged) by the whole fleet / the burst's wall time.
"""

from __future__ import annotations

import multiprocessing
import random
import re
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pda_client import Handheld, HandheldError

from .common import (
    HttpAttempt,
    Result,
    TransportRecorder,
    choose_backend,
    latency_ms,
    live_server,
    log,
    office,
    rounded,
)
from .fieldwork import read_meters, work_jobs

SETUP_TIMEOUT_S = 1800
BURST_TIMEOUT_S = 900


def run(
    devices: int = 200,
    readings: int = 40,
    jobs: int = 3,
    processes: int | None = None,
    workers: int | None = None,
    backend: str | None = None,
    seed: int = 1,
) -> Result:
    """Sync `devices` handhelds at once (each with a day of work) and measure what they see."""
    if devices < 2:
        raise SystemExit("--devices must be at least 2 (a reader and a lineman)")
    import sqlalchemy as sa

    from tests.reliability.fleet_world import build_fleet_world, enrollment_codes

    backend = choose_backend(backend, default="auto")
    processes = max(1, min(processes or 8, devices))
    rng = random.Random(seed)
    readers, linemen = devices // 2, devices - devices // 2
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-fleet-") as temp:
        directory = Path(temp)
        holder: dict[str, Any] = {}

        def prepare(live: Any) -> None:
            with office(live.database_url, directory):
                world = build_fleet_world(
                    rng, readers=readers, linemen=linemen, meters_per_route=readings, jobs_per_lineman=jobs
                )
                codes = enrollment_codes(world, {})
                holder["devices"] = [
                    {"dir": str(directory / "devices" / user.username), "code": codes[user.id][0], "role": user.role}
                    for user in world.field_users
                ]

        env = {"FIELDSYNC_ENROLL_ATTEMPTS": str(devices * 2 + 10)}
        with live_server(directory / "server", backend, prepare, workers=workers, env=env) as live:
            plan = holder["devices"]
            for device in plan:
                device.update(url=live.url, readings=readings)
            log(f"fleet: {devices} handhelds in {processes} processes enrol, download and work (not timed)")
            setup_s, started, log_offset, reports = _burst(plan, processes, live.log)
            served_ms = _served_ms(live.log, log_offset)
            engine = sa.create_engine(live.database_url)
            try:
                with engine.connect() as connection:
                    received = connection.execute(sa.text("SELECT COUNT(*) FROM change_receipts")).scalar_one()
            finally:
                engine.dispose()
    attempts = [HttpAttempt(**a) for report in reports for a in report["attempts"]]
    syncs = [s for report in reports for s in report["sync_seconds"]]
    failures = [f for report in reports for f in report["failures"]]
    pushed = sum(report["pushed"] for report in reports)
    queued = sum(report["queued"] for report in reports)
    wall = max(report["finished"] for report in reports) - started
    bad = [a for a in attempts if a.status is None or a.status >= 500 or a.status == 429]
    latency = latency_ms([a.seconds for a in attempts])
    by_endpoint = {
        name: latency_ms([a.seconds for a in attempts if a.path.endswith(name)])
        for name in ("/sync/hello", "/sync/push", "/sync/pull")
    }
    figures: dict[str, Any] = {
        "devices": devices,
        "p50_ms": latency["p50_ms"],
        "p95_ms": latency["p95_ms"],
        "p99_ms": latency["p99_ms"],
        "max_ms": latency["max_ms"],
        "errors": len(failures) + len(bad),
        "changes_per_s": rounded(pushed / wall, 1),
        "backend": backend,
        "requests": len(attempts),
        "changes_pushed": pushed,
        "changes_queued": queued,
        "changes_received_by_server": received,
        "burst_s": rounded(wall, 3),
        "device_sync": latency_ms(syncs),
        "by_endpoint": by_endpoint,
        "server_time": latency_ms([ms / 1000 for ms in served_ms]),
        "failed_syncs": len(failures),
        "failed_http_attempts": len(bad),
        "failure_examples": failures[:5],
        "processes": processes,
        "server_workers": workers or "2 x cores + 1",
        "setup_s": rounded(setup_s, 1),
    }
    summary = [
        f"{devices} handhelds, {len(attempts)} requests in {wall:.2f} s: p50 {latency['p50_ms']} ms, "
        f"p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms",
        "inside a worker: p50 {p50_ms} ms, p99 {p99_ms} ms".format_map(figures["server_time"]),
        f"{pushed} changes ({pushed / wall:.0f}/s), errors {figures['errors']}, backend {backend}",
    ]
    parameters = {
        "devices": devices,
        "readings": readings,
        "jobs": jobs,
        "processes": processes,
        "workers": workers,
        "backend": backend,
        "seed": seed,
    }
    return Result("fleet", parameters, figures, summary, psycopg=backend == "postgresql")


def _burst(plan: list[dict[str, Any]], processes: int, access_log: Path) -> tuple[float, float, int, list[dict]]:
    """Set the devices up in `processes` processes, then release them at once. Returns the setup's seconds,
    the burst's start (time.time(), comparable across processes), the access log's size at the start, and
    each process's report."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go = context.Event()
    device_processes = [
        context.Process(target=device_process, args=(plan[slot::processes], ready, go, results), daemon=True)
        for slot in range(processes)
    ]
    for process in device_processes:
        process.start()
    finished = False
    try:
        setup_started = time.monotonic()
        for _ in device_processes:
            message = ready.get(timeout=SETUP_TIMEOUT_S)
            if "error" in message:
                raise RuntimeError(f"a device process failed during setup: {message['error']}")
        setup_s = time.monotonic() - setup_started
        log("fleet: the burst")
        log_offset = access_log.stat().st_size
        started = time.time()
        go.set()
        reports = [results.get(timeout=BURST_TIMEOUT_S) for _ in device_processes]
        finished = True
    finally:
        for process in device_processes:
            if finished:
                process.join(30)
            if process.is_alive():  # a failed setup: the others wait for a start that never comes
                process.kill()
                process.join(10)
    return setup_s, started, log_offset, reports


ACCESS_LINE = re.compile(r'"(?:GET|POST) /api/v1/sync/\S+ HTTP/[\d.]+" \d+ .* (\d+)ms$')


def _served_ms(log: Path, offset: int) -> list[int]:
    """Milliseconds each sync request of the burst spent inside a worker (gunicorn's access log, %(M)s): the
    service time, without the wait in the listen queue that the devices' latency includes."""
    with log.open() as file:
        file.seek(offset)
        return [int(match.group(1)) for line in file if (match := ACCESS_LINE.search(line.rstrip()))]


def device_process(plan: list[dict[str, Any]], ready: Any, go: Any, results: Any) -> None:
    """One process's share of the fleet: set every device up, wait for the start, sync them all at once."""
    handhelds: list[tuple[Handheld, TransportRecorder]] = []
    queued = 0
    try:
        for device in plan:
            recorder = TransportRecorder()
            handheld = Handheld(device["dir"], transport_factory=recorder)
            handheld.enroll(device["url"], device["code"], Path(device["dir"]).name)
            handheld.sync()
            if device["role"] == "meter_reader":
                queued += read_meters(handheld, device["readings"])
            else:
                queued += work_jobs(handheld)
            handhelds.append((handheld, recorder))
    except Exception as exc:  # reported to the parent, which stops the run
        ready.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    marks = [recorder.mark() for _, recorder in handhelds]
    ready.put({"ready": len(handhelds)})
    go.wait()
    sync_seconds: list[float] = []
    failures: list[str] = []
    pushed = [0]
    lock = threading.Lock()

    def sync(handheld: Handheld) -> None:
        started = time.perf_counter()
        try:
            report = handheld.sync()
        except HandheldError as exc:
            with lock:
                failures.append(f"{exc.code}: {exc.message}")
            return
        with lock:
            sync_seconds.append(time.perf_counter() - started)
            pushed[0] += report.pushed

    threads = [threading.Thread(target=sync, args=(handheld,)) for handheld, _ in handhelds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.time()
    attempts = [asdict(a) for (_, recorder), mark in zip(handhelds, marks, strict=True) for a in recorder.since(mark)]
    for handheld, _ in handhelds:
        handheld.close()
    results.put(
        {
            "attempts": attempts,
            "sync_seconds": sync_seconds,
            "failures": failures,
            "pushed": pushed[0],
            "queued": queued,
            "finished": finished,
        }
    )
