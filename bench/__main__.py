"""`python -m bench <name> [sizes] [--json] [--out FILE]`: run one benchmark and print its result.

    python -m bench push_pull --records 50000 --json
    python -m bench first_sync --meters 5000 --json
    python -m bench fleet --devices 200 --json          # PostgreSQL when FIELDSYNC_TEST_PG_URL is set
    python -m bench fleet --spread 0 --threads 4 --json  # all in one instant; 4 threads a worker
    python -m bench device_ops --rows 100000 --json
    python -m bench staff_queries --json                # 1M readings, 100k jobs (seeded once, cached)

With --json, stdout is one JSON object: {"benchmark", "commit", "machine", "versions", "parameters",
"figures"}; without it, a short summary. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Result

BACKENDS = ["sqlite", "postgresql", "auto"]
WORKERS_HELP = "gunicorn workers (default 2 x cores + 1, as in production)"


def _push_pull(args: argparse.Namespace) -> Result:
    module = importlib.import_module("bench.push_pull")
    return module.run(
        records=args.records, meters=args.meters, backend=args.backend, seed=args.seed, workers=args.workers
    )


def _first_sync(args: argparse.Namespace) -> Result:
    module = importlib.import_module("bench.first_sync")
    return module.run(meters=args.meters, jobs=args.jobs, backend=args.backend, seed=args.seed, workers=args.workers)


def _fleet(args: argparse.Namespace) -> Result:
    module = importlib.import_module("bench.fleet")
    return module.run(
        devices=args.devices,
        readings=args.readings,
        jobs=args.jobs,
        processes=args.processes,
        workers=args.workers,
        backend=args.backend,
        seed=args.seed,
        spread=args.spread,
        burst=args.burst,
        threads=args.threads,
    )


def _device_ops(args: argparse.Namespace) -> Result:
    module = importlib.import_module("bench.device_ops")
    return module.run(rows=args.rows, operations=args.operations, seed=args.seed)


def _staff_queries(args: argparse.Namespace) -> Result:
    module = importlib.import_module("bench.staff_queries")
    return module.run(
        customers=args.customers,
        jobs=args.jobs,
        months=args.months,
        repeat=args.repeat,
        cache_dir=args.cache_dir,
        seed=args.seed,
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    names = main.add_subparsers(dest="name", required=True, metavar="name")

    def add(name: str, runner: Callable[[argparse.Namespace], Result], help_text: str) -> argparse.ArgumentParser:
        sub = names.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
        sub.add_argument("--out", type=Path, help="also write the JSON object to this file (e.g. bench/results/)")
        sub.add_argument("--seed", type=int, default=1)
        sub.set_defaults(runner=runner)
        return sub

    sub = add("push_pull", _push_pull, "N readings pushed through the real server and pulled by a fresh handheld")
    sub.add_argument("--records", type=int, default=50_000)
    sub.add_argument("--meters", type=int, help="meters on the route (default records / 10)")
    sub.add_argument("--backend", choices=BACKENDS, default="sqlite")
    sub.add_argument("--workers", type=int, help=WORKERS_HELP)

    sub = add("first_sync", _first_sync, "a fresh handheld downloads a long route: time, bytes, peak memory")
    sub.add_argument("--meters", type=int, default=5_000)
    sub.add_argument("--jobs", type=int, help="open jobs assigned to the same user (default meters / 50)")
    sub.add_argument("--backend", choices=BACKENDS, default="sqlite")
    sub.add_argument("--workers", type=int, help=WORKERS_HELP)

    sub = add("fleet", _fleet, "D handhelds syncing a day of work at once against gunicorn")
    sub.add_argument("--devices", type=int, default=200)
    sub.add_argument("--readings", type=int, default=40, help="readings per meter reader's handheld")
    sub.add_argument("--jobs", type=int, default=3, help="jobs per lineman (each: travel, arrive, note, complete)")
    sub.add_argument("--processes", type=int, help="device processes (default min(8, devices))")
    sub.add_argument(
        "--spread", type=float, metavar="SECONDS",
        help="devices start at seeded uniformly random offsets within this window; 0: all at the same instant "
        "(default: the app's reachability probe period, 30 s)",
    )  # fmt: skip
    sub.add_argument(
        "--burst", action=argparse.BooleanOptionalAction, default=True,
        help="also run every device at the same instant (spread 0) on a fresh server: figures.burst, capacity",
    )  # fmt: skip
    sub.add_argument("--workers", type=int, help=WORKERS_HELP)
    sub.add_argument("--threads", type=int, help="threads per gunicorn worker (more than 1: gthread workers)")
    sub.add_argument("--backend", choices=BACKENDS, default="auto")

    sub = add("device_ops", _device_ops, "recording a reading and a job status change on a full handheld")
    sub.add_argument("--rows", type=int, default=100_000)
    sub.add_argument("--operations", type=int, default=200, help="timed operations of each kind")

    sub = add("staff_queries", _staff_queries, "the service centre's searches, KPI and ABC pages on a large database")
    sub.add_argument("--customers", type=int, default=100_000, help="customers (one meter each)")
    sub.add_argument("--jobs", type=int, default=100_000)
    sub.add_argument("--months", type=int, default=9, help="reading cycles of history before the current one")
    sub.add_argument("--repeat", type=int, default=20, help="timed runs of each query (after one warm-up)")
    sub.add_argument("--cache-dir", type=Path, help="where seeded databases are kept (default bench/.cache)")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: Result = args.runner(args)
    text: Any = result.json()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text if args.json else result.text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
