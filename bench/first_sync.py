"""first_sync: a fresh handheld downloads a long route (default 5,000 meters, their premises and customers)
and the user's open jobs, through the real server.

The handheld runs in a child process of its own (`python -m bench.first_sync --child ...`), so its peak
resident memory is the device's alone: the child reports its VmHWM (/proc/self/status: the peak resident
set of its own address space since exec) after the sync, and its VmHWM before the sync (after the imports
and the enrolment) as a baseline. The server's figure is the gunicorn workers' VmHWM after the sync: the
largest worker's (what one process must fit in: a page is served by one worker) and their sum. Invariant 9
(bounded memory) is the point: neither side may hold the whole scope.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ROOT, Result, choose_backend, live_server, log, office, rounded, server_workers_peak_mb


def run(
    meters: int = 5_000, jobs: int | None = None, backend: str | None = None, seed: int = 1, workers: int | None = None
) -> Result:
    """Time a fresh handheld's first sync of a route of `meters` meters and `jobs` open jobs."""
    from .world import reader_route  # the server's modules: never imported into the handheld's process

    jobs = meters // 50 if jobs is None else jobs
    backend = choose_backend(backend)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-first-sync-") as temp:
        directory = Path(temp)
        holder: dict[str, Any] = {}

        def prepare(live: Any) -> None:
            with office(live.database_url, directory):
                holder["world"] = reader_route(rng, meters=meters, jobs=jobs, codes=1)

        with live_server(directory / "server", backend, prepare, workers=workers) as live:
            world = holder["world"]
            server_before = server_workers_peak_mb(live)
            log(f"first_sync: a fresh handheld downloads {meters} meters and {jobs} jobs")
            child = _child(directory / "device", live.url, world.codes[0])
            server_after = server_workers_peak_mb(live)
    assert child["meters"] == meters, f"the handheld holds {child['meters']} meters, expected {meters}"
    assert child["jobs"] == jobs, f"the handheld holds {child['jobs']} jobs, expected {jobs}"
    figures: dict[str, Any] = {
        "seconds": child["seconds"],
        "bytes": child["bytes"],
        "client_peak_rss_mb": child["peak_rss_mb"],
        "server_peak_rss_mb": server_after["max"],
        "meters": meters,
        "jobs": jobs,
        "records": child["records"],
        "pages": child["pages"],
        "requests": child["requests"],
        "bytes_decoded": child["bytes_decoded"],
        "bytes_per_meter": rounded(child["bytes"] / max(meters, 1), 1),
        "client_baseline_rss_mb": child["baseline_rss_mb"],
        "server_peak_rss_mb_sum": server_after["sum"],
        "server_workers": server_after["workers"],
        "server_peak_rss_mb_before": server_before["max"],
        "backend": backend,
    }
    summary = [
        f"{child['records']:,} records in {child['pages']} pages, {child['seconds']:.2f} s, {child['bytes']:,} B",
        f"client peak {child['peak_rss_mb']} MB (after imports {child['baseline_rss_mb']} MB); "
        f"server worker peak {server_after['max']} MB (before {server_before['max']} MB)",
    ]
    return Result(
        "first_sync",
        {"meters": meters, "jobs": jobs, "backend": backend, "seed": seed, "workers": workers},
        figures,
        summary,
        psycopg=backend == "postgresql",
    )


def _child(directory: Path, url: str, code: str) -> dict[str, Any]:
    """Run the handheld in its own process; its report. (Not the child's rusage: Linux carries ru_maxrss over
    exec, so it would include the memory of this process, which the child was forked from.)"""
    errors = directory.with_suffix(".log")
    with errors.open("w") as stderr:
        result = subprocess.run(
            [sys.executable, "-m", "bench.first_sync", "--child", str(directory), url, code],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"the handheld process failed ({result.returncode}):\n{errors.read_text()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_main(argv: list[str]) -> None:
    """The handheld's side: enrol, then time one first sync; print a JSON report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path, required=True)
    parser.add_argument("url")
    parser.add_argument("code")
    args = parser.parse_args(argv)

    from pda_client import Handheld

    from .common import TransportRecorder, peak_rss_mb, traffic

    recorder = TransportRecorder()
    handheld = Handheld(args.child, transport_factory=recorder)
    try:
        handheld.enroll(args.url, args.code, "bench-first-sync")
        baseline = peak_rss_mb()
        mark = recorder.mark()
        started = time.perf_counter()
        report = handheld.sync()
        seconds = time.perf_counter() - started
        peak = peak_rss_mb()
        counts = {
            table: handheld.store.rows(f"SELECT COUNT(*) AS n FROM [{table}]")[0]["n"] for table in ("meters", "jobs")
        }
    finally:
        handheld.close()
    moved = traffic(recorder.since(mark))
    print(
        json.dumps(
            {
                "seconds": round(seconds, 4),
                "bytes": moved["bytes_down"],
                "bytes_decoded": moved["bytes_down_decoded"],
                "requests": moved["requests"],
                "records": report.pulled,
                "pages": report.pages,
                "baseline_rss_mb": baseline,
                "peak_rss_mb": peak,
                **counts,
            }
        )
    )


if __name__ == "__main__":
    child_main(sys.argv[1:])
