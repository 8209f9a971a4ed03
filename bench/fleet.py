"""fleet: D handhelds syncing a day of work at once against gunicorn with several workers, over PostgreSQL
when FIELDSYNC_TEST_PG_URL is set (SQLite otherwise).

- The world (tests/reliability/fleet_world.py): half the devices are meter readers with a route of
  `readings` meters each, half linemen with `jobs` assigned jobs each; one handheld per user.
- Setup (not timed): each handheld enrols, downloads its scope, and does its day through the core's
  public API: a reader reads every meter of the route (`readings` changes), a lineman travels to, arrives
  at, notes and completes every job (5 changes a job).
- Arrivals (timed): every handheld runs `sync()` once (hello, push, pull), starting at a seeded uniformly
  random offset within `spread` seconds of the start. The default spread is the app's reachability probe
  period (pda_client.core.PROBE_S, 30 s): when the server or the link comes back after an outage,
  every handheld holding a day of work starts its sync at its next probe, so the whole fleet arrives
  within one period, at random phases. That is the most synchronised arrival a real fleet produces (the
  periodic sync, every 5 min, spreads ten times wider). The literal reading of "at once", every device in
  the same millisecond, is measured too, as `burst` (spread 0): the server's capacity.
- Each scenario runs on a server and database of its own, over the same world (same seed), so neither
  inherits the other's data, caches or worker state.
- Devices run in `processes` processes (default min(8, D): the GIL would serialise one process's devices),
  one thread per device; the processes are released together by one event.
- Latency is per HTTP request as the handheld sees it (time from sending to the whole body read, one
  figure per attempt: a retried request counts each attempt), over every request of the scenario (hello,
  push, pull). The target p99 < 1 s is about this figure. Per-device sync durations are reported beside it.
- server_time: the same requests' time inside a worker (gunicorn's access log): latency minus the wait in
  the listen queue. When p99 is far above server_time, the fleet waits for a free worker: capacity. With
  gthread workers it also holds the wait for the worker's other threads (the GIL) and for SQLite's write
  lock. `server`: the workers, threads and worker class server/gunicorn.conf.py gave the server.
- concurrency: how much the fleet's work overlapped: requests and syncs in flight (max, time-weighted
  mean over the span from the first sync's start to the last one's end), the share of syncs that
  overlapped another, and the share of the span with at least one sync in flight.
- cpu_s: CPU seconds during the scenario used by the device processes (client), the gunicorn master and
  workers (server), and the whole machine (busy; the rest is the database and anything else running), beside
  the span's capacity (wall x cores): the devices share the machine with the server they measure.
  server_per_sync_ms is one sync's CPU in gunicorn (not the database's): in a burst, devices x that / cores
  is a floor under the wall time, whatever the workers and threads.
- errors: device syncs that failed, plus HTTP attempts answered 5xx/429 or not at all.
- changes_per_s: changes pushed (and acknowledged) by the whole fleet / the scenario's wall time. With a
  spread that is the offered load; the burst's is what the server sustains (`capacity`, with the spread
  scenario's syncs/s as a share of it).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import runpy
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pda_client import Handheld, HandheldError
from pda_client.core import PROBE_S

from .common import (
    ROOT,
    Result,
    TransportRecorder,
    choose_backend,
    latency_ms,
    live_server,
    log,
    machine_cpu_s,
    office,
    proc_cpu_s,
    rounded,
)
from .fieldwork import read_meters, work_jobs

SETUP_TIMEOUT_S = 1800
SYNC_TIMEOUT_S = 900  # after the last device's start
GUNICORN_CONF = ROOT / "server" / "gunicorn.conf.py"


def run(
    devices: int = 200,
    readings: int = 40,
    jobs: int = 3,
    processes: int | None = None,
    workers: int | None = None,
    backend: str | None = None,
    seed: int = 1,
    spread: float | None = None,
    burst: bool = True,
    threads: int | None = None,
) -> Result:
    """Sync `devices` handhelds (each with a day of work) arriving within `spread` seconds (default: the app's
    probe period), and, with `burst`, all in the same instant too; measure what they see."""
    if devices < 2:
        raise SystemExit("--devices must be at least 2 (a reader and a lineman)")
    spread = float(PROBE_S) if spread is None else spread
    if spread < 0:
        raise SystemExit("--spread must be 0 or more seconds")
    backend = choose_backend(backend, default="auto")
    processes = max(1, min(processes or 8, devices))
    shape = dict(
        devices=devices, readings=readings, jobs=jobs, processes=processes, workers=workers, threads=threads,
        backend=backend, seed=seed,
    )  # fmt: skip
    figures = _scenario(spread=spread, **shape)
    if burst and spread > 0:
        figures["burst"] = _scenario(spread=0.0, **shape)
    capacity_from = figures.get("burst", figures)
    figures["capacity"] = {
        "syncs_per_s": capacity_from["syncs_per_s"],
        "changes_per_s": capacity_from["changes_per_s"],
        "measured_in": "burst",
        # the arrivals' rate against it: near 1, the spread scenario queues too
        "offered_share": rounded(figures["syncs_per_s"] / capacity_from["syncs_per_s"], 3),
    }
    summary = _summary(f"arrivals within {spread:g} s", figures)
    if "burst" in figures:
        summary += _summary("burst (spread 0)", figures["burst"])
    parameters = {**shape, "spread": spread, "burst": burst}
    return Result("fleet", parameters, figures, summary, psycopg=backend == "postgresql")


def _summary(title: str, f: dict[str, Any]) -> list[str]:
    c, cpu = f["concurrency"], f["cpu_s"]
    return [
        f"{title}: {f['devices']} handhelds, {f['requests']} requests in {f['wall_s']:.2f} s: p50 {f['p50_ms']} ms, "
        f"p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms, errors {f['errors']}, backend {f['backend']}",
        "  inside a worker: p50 {p50_ms} ms, p99 {p99_ms} ms".format_map(f["server_time"]),
        f"  {f['changes_pushed']} changes ({f['changes_per_s']:.0f}/s), {f['syncs_per_s']:.1f} syncs/s; in flight: "
        f"requests max {c['requests_max']} mean {c['requests_mean']}, syncs max {c['syncs_max']} mean "
        f"{c['syncs_mean']}, {c['syncs_overlapping_share']:.0%} of syncs overlapped another",
        f"  CPU s: client {cpu['client']}, server {cpu['server']} ({cpu['server_per_sync_ms']} ms a sync), machine "
        f"busy {cpu['machine_busy']} of {cpu['machine_capacity']}",
    ]


def _scenario(
    *,
    devices: int,
    readings: int,
    jobs: int,
    processes: int,
    workers: int | None,
    threads: int | None,
    backend: str,
    seed: int,
    spread: float,
) -> dict[str, Any]:
    """One arrival scenario on a fresh server and database: its figures."""
    import sqlalchemy as sa

    from tests.reliability.fleet_world import build_fleet_world, enrollment_codes

    rng = random.Random(seed)  # the world: the same in every scenario
    arrivals = random.Random(f"fleet-arrivals-{seed}")
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
        if threads:
            env["FIELDSYNC_THREADS"] = str(threads)
        with live_server(directory / "server", backend, prepare, workers=workers, env=env) as live:
            plan = holder["devices"]
            for device in plan:
                device.update(url=live.url, readings=readings, offset=arrivals.uniform(0, spread) if spread else 0.0)
            log(f"fleet: {devices} handhelds in {processes} processes enrol, download and work (not timed)")
            outcome = _arrive(plan, processes, live, spread)
            outcome["server"] = gunicorn_settings(live.env)
            served_ms = _served_ms(live.log, outcome["log_offset"])
            engine = sa.create_engine(live.database_url)
            try:
                with engine.connect() as connection:
                    received = connection.execute(sa.text("SELECT COUNT(*) FROM change_receipts")).scalar_one()
            finally:
                engine.dispose()
    reports = outcome["reports"]
    attempts = [a for report in reports for a in report["attempts"]]  # (path, start, seconds, status)
    syncs = [s for report in reports for s in report["syncs"]]  # (start, end), failed ones too
    failures = [f for report in reports for f in report["failures"]]
    pushed = sum(report["pushed"] for report in reports)
    queued = sum(report["queued"] for report in reports)
    wall = max(report["finished"] for report in reports) - outcome["started"]
    bad = [a for a in attempts if a[3] is None or a[3] >= 500 or a[3] == 429]
    latency = latency_ms([a[2] for a in attempts])
    span = (min(s for s, _ in syncs), max(e for _, e in syncs))
    cores = os.cpu_count() or 1
    return {
        "devices": devices,
        "spread_s": spread,
        "p50_ms": latency["p50_ms"],
        "p95_ms": latency["p95_ms"],
        "p99_ms": latency["p99_ms"],
        "max_ms": latency["max_ms"],
        "errors": len(failures) + len(bad),
        "changes_per_s": rounded(pushed / wall, 1),
        "syncs_per_s": rounded(devices / wall, 2),
        "backend": backend,
        "requests": len(attempts),
        "changes_pushed": pushed,
        "changes_queued": queued,
        "changes_received_by_server": received,
        "wall_s": rounded(wall, 3),
        "device_sync": latency_ms([e - s for s, e in syncs]),
        "by_endpoint": {
            name: latency_ms([a[2] for a in attempts if a[0].endswith(name)])
            for name in ("/sync/hello", "/sync/push", "/sync/pull")
        },
        "server_time": latency_ms([ms / 1000 for ms in served_ms]),
        "concurrency": {
            "span_s": rounded(span[1] - span[0], 3),
            **_in_flight("requests", [(a[1], a[1] + a[2]) for a in attempts], span),
            **_in_flight("syncs", syncs, span),
            "syncs_overlapping_share": rounded(_overlapping_share(syncs), 3),
        },
        "cpu_s": {
            "client": rounded(sum(report["cpu_s"] for report in reports), 2),
            "server": rounded(outcome["server_cpu_s"], 2),
            "server_per_sync_ms": rounded(outcome["server_cpu_s"] * 1000 / devices, 1),
            "machine_busy": rounded(outcome["machine_busy_s"], 2),
            "machine_capacity": rounded(wall * cores, 2),
        },
        "failed_syncs": len(failures),
        "failed_http_attempts": len(bad),
        "failure_examples": failures[:5],
        "processes": processes,
        "server": outcome["server"],
        "setup_s": rounded(outcome["setup_s"], 1),
    }


def gunicorn_settings(env: dict[str, str]) -> dict[str, Any]:
    """Workers, threads and worker class as server/gunicorn.conf.py computes them from the server's
    environment: what the server ran with, defaults included (gunicorn runs more than one thread per
    worker only with gthread workers)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        settings = runpy.run_path(str(GUNICORN_CONF))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    threads = int(settings["threads"])
    return {
        "workers": int(settings["workers"]),
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else settings.get("worker_class", "sync"),
    }


def _in_flight(name: str, intervals: Sequence[tuple[float, float]], span: tuple[float, float]) -> dict[str, Any]:
    """How many of `intervals` were in flight: the most at once, the time-weighted mean over `span`, and (for
    syncs) the share of the span with at least one in flight."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    level = peak = 0
    area = busy = 0.0
    last = span[0]
    for at, step in events:  # at equal times an end (-1) sorts first: back-to-back is not overlap
        area += level * (at - last)
        busy += (at - last) if level else 0.0
        last, level = at, level + step
        peak = max(peak, level)
    length = (span[1] - span[0]) or 1.0
    found: dict[str, Any] = {f"{name}_max": peak, f"{name}_mean": rounded(area / length, 2)}
    if name == "syncs":
        found["busy_share"] = rounded(busy / length, 3)
    return found


def _overlapping_share(intervals: Sequence[tuple[float, float]]) -> float:
    """The share of intervals that overlap at least one other."""
    ordered = sorted(intervals)
    overlapping, latest_end = 0, float("-inf")  # the latest end among those started earlier
    for index, (start, end) in enumerate(ordered):
        after = ordered[index + 1][0] if index + 1 < len(ordered) else float("inf")
        overlapping += latest_end > start or after < end
        latest_end = max(latest_end, end)
    return overlapping / len(ordered) if ordered else 0.0


def _server_cpu_s(live: Any) -> float:
    """CPU seconds of the gunicorn master, its live workers and its replaced (exited) workers."""
    assert live.process is not None
    total = proc_cpu_s(live.process.pid, children=True) or 0.0
    return total + sum(proc_cpu_s(pid) or 0.0 for pid in live.worker_pids())


def _arrive(plan: list[dict[str, Any]], processes: int, live: Any, spread: float) -> dict[str, Any]:
    """Set the devices up in `processes` processes, then start them (each at its offset). Returns the setup's
    seconds, the start (time.time(), comparable across processes), the access log's size at the start, the
    CPU the server and the machine used meanwhile, and each process's report."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go = context.Event()
    start = context.Value("d", 0.0)
    device_processes = [
        context.Process(target=device_process, args=(plan[slot::processes], ready, go, start, results), daemon=True)
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
        log(f"fleet: {len(plan)} syncs arriving within {spread:g} s")
        log_offset = live.log.stat().st_size
        server_cpu, machine_cpu = _server_cpu_s(live), machine_cpu_s()
        start.value = time.time()
        go.set()
        reports = [results.get(timeout=spread + SYNC_TIMEOUT_S) for _ in device_processes]
        server_cpu_s = _server_cpu_s(live) - server_cpu
        machine_busy_s = (machine_cpu_s() or (0.0, 0.0))[0] - (machine_cpu or (0.0, 0.0))[0]
        finished = True
    finally:
        for process in device_processes:
            if finished:
                process.join(30)
            if process.is_alive():  # a failed setup: the others wait for a start that never comes
                process.kill()
                process.join(10)
    return {
        "setup_s": setup_s,
        "started": start.value,
        "log_offset": log_offset,
        "server_cpu_s": server_cpu_s,
        "machine_busy_s": machine_busy_s,
        "reports": reports,
    }


ACCESS_LINE = re.compile(r'"(?:GET|POST) /api/v1/sync/\S+ HTTP/[\d.]+" \d+ .* (\d+)ms$')


def _served_ms(log: Path, offset: int) -> list[int]:
    """Milliseconds each sync request of the scenario spent inside a worker (gunicorn's access log, %(M)s):
    the service time, without the wait in the listen queue that the devices' latency includes."""
    with log.open() as file:
        file.seek(offset)
        return [int(match.group(1)) for line in file if (match := ACCESS_LINE.search(line.rstrip()))]


def device_process(plan: list[dict[str, Any]], ready: Any, go: Any, start: Any, results: Any) -> None:
    """One process's share of the fleet: set every device up, wait for the start, then sync each device at
    its offset from it, one thread per device."""
    handhelds: list[tuple[Handheld, TransportRecorder, float]] = []
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
            handhelds.append((handheld, recorder, device["offset"]))
    except Exception as exc:  # reported to the parent, which stops the run
        ready.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    marks = [recorder.mark() for _, recorder, _ in handhelds]
    ready.put({"ready": len(handhelds)})
    go.wait()
    cpu_started = time.process_time()
    # HttpAttempt.started is perf_counter(): this converts it to time.time(), which all processes share
    to_epoch = time.time() - time.perf_counter()
    syncs: list[tuple[float, float]] = []
    failures: list[str] = []
    pushed = [0]
    lock = threading.Lock()

    def sync(handheld: Handheld, offset: float) -> None:
        time.sleep(max(0.0, start.value + offset - time.time()))
        began = time.time()
        try:
            report = handheld.sync()
        except HandheldError as exc:
            with lock:
                syncs.append((began, time.time()))
                failures.append(f"{exc.code}: {exc.message}")
            return
        with lock:
            syncs.append((began, time.time()))
            pushed[0] += report.pushed

    threads = [threading.Thread(target=sync, args=(handheld, offset)) for handheld, _, offset in handhelds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.time()
    cpu_s = time.process_time() - cpu_started
    attempts = [
        (a.path, a.started + to_epoch, a.seconds, a.status)
        for (_, recorder, _), mark in zip(handhelds, marks, strict=True)
        for a in recorder.since(mark)
    ]
    for handheld, _, _ in handhelds:
        handheld.close()
    results.put(
        {
            "attempts": attempts,
            "syncs": syncs,
            "failures": failures,
            "pushed": pushed[0],
            "queued": queued,
            "finished": finished,
            "cpu_s": cpu_s,
        }
    )
