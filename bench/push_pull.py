"""push_pull: N meter readings pushed by one handheld through the real server, then pulled by a fresh one,
against the floor of the same rows written and read back with plain sqlite3.

- The world: one meter reader, one route of `meters` meters (default N / 10: ten reads of every meter, each
  re-read superseding the one before, as the core records them).
- Setup (not timed): handheld A enrols and downloads the route, then records the N readings through the
  core's public API (`Handheld.readings.record`, in band, several to a local transaction).
- push_s: A's `sync()` from its start until its first pull request: hello, the push batches, and settling
  each answer in the outbox. A's sync then pulls back what it pushed (the change log feeds every device of
  the user, the sender's included); that is reported apart (echo_pull_s, echo_bytes_down).
- pull_s: a second enrolment of the same user (handheld B, empty) runs its first `sync()`: the snapshot of
  the route, its meters, premises, customers and the N readings.
- floor_s: the N reading rows as B stored them, written into a table of the same columns with
  `executemany` in one transaction (same pragmas as the handheld: WAL, synchronous=FULL) and read back with
  one SELECT; the median of three runs. ratio_to_floor = (push_s + pull_s) / floor_s.
- Bytes are HTTP bodies as they crossed the wire (gzip both ways above 1 kB), headers not counted.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pda_client import Handheld

from .common import (
    Result,
    TransportRecorder,
    choose_backend,
    live_server,
    log,
    office,
    rounded,
    server_workers_peak_mb,
    stopwatch,
    traffic,
)
from .fieldwork import in_band_value
from .world import reader_route

FLOOR_RUNS = 3
CHUNK = 2000  # readings per local transaction while queueing (a reader's day is a few hundred)


def run(
    records: int = 50_000,
    meters: int | None = None,
    backend: str | None = None,
    seed: int = 1,
    workers: int | None = None,
) -> Result:
    """Push `records` readings from one handheld and pull them into a fresh one; compare with the floor."""
    if records < 1:
        raise SystemExit("--records must be at least 1")
    meters = meters or max(1, -(-records // 10))
    backend = choose_backend(backend)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-push-pull-") as temp:
        directory = Path(temp)
        holder: dict[str, Any] = {}

        def prepare(live: Any) -> None:
            with office(live.database_url, directory):
                holder["world"] = reader_route(rng, meters=meters, codes=2)

        with live_server(directory / "server", backend, prepare, workers=workers) as live:
            world = holder["world"]
            sender = TransportRecorder()
            a = Handheld(directory / "device-a", transport_factory=sender)
            b_recorder = TransportRecorder()
            b = Handheld(directory / "device-b", transport_factory=b_recorder)
            try:
                a.enroll(live.url, world.codes[0], "bench-a")
                a.sync()
                log(f"push_pull: queueing {records} readings on {meters} meters")
                with stopwatch() as setup:
                    queue_readings(a, records)
                pending = a.store.rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
                assert pending == records, f"{pending} changes queued, expected {records}"

                log("push_pull: pushing")
                mark = sender.mark()
                started = time.perf_counter()
                report_a = a.sync()
                push_sync_s = time.perf_counter() - started
                attempts = sender.since(mark)
                first_pull = next((x.started for x in attempts if x.path.endswith("/sync/pull")), None)
                push_s = (first_pull if first_pull is not None else started + push_sync_s) - started
                pushing = [x for x in attempts if x.started < started + push_s]
                echo = [x for x in attempts if x.started >= started + push_s]
                assert report_a.pushed == records and report_a.rejected == 0, report_a
                assert a.store.rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0

                log("push_pull: pulling into a fresh handheld")
                b.enroll(live.url, world.codes[1], "bench-b")
                mark = b_recorder.mark()
                with stopwatch() as pull:
                    report_b = b.sync()
                pull_s = pull()
                pulled = traffic(b_recorder.since(mark))
                readings = b.store.rows("SELECT COUNT(*) AS n FROM readings")[0]["n"]
                assert readings == records, f"the fresh handheld holds {readings} readings, expected {records}"
                server_peak = server_workers_peak_mb(live)

                log("push_pull: the sqlite3 floor")
                floor_s = floor(b, directory / "floor")
            finally:
                a.close()
                b.close()
    up = traffic(pushing)
    echo_traffic = traffic(echo)
    total = push_s + pull_s
    figures: dict[str, Any] = {
        "records": records,
        "push_s": rounded(push_s),
        "pull_s": rounded(pull_s),
        "floor_s": rounded(floor_s, 5),
        "ratio_to_floor": rounded(total / floor_s, 2),
        "bytes_up": up["bytes_up"],
        "bytes_down": pulled["bytes_down"],
        "bytes_per_record_up": rounded(up["bytes_up"] / records, 2),
        "bytes_per_record_down": rounded(pulled["bytes_down"] / records, 2),
        "bytes_down_decoded": pulled["bytes_down_decoded"],
        "records_per_s": rounded(records / total, 1),
        "meters": meters,
        "push_requests": up["requests"],
        "pull_requests": pulled["requests"],
        "records_pulled": report_b.pulled,
        "push_sync_s": rounded(push_sync_s),
        "echo_pull_s": rounded(push_sync_s - push_s),
        "echo_bytes_down": echo_traffic["bytes_down"],
        "echo_records": report_a.pulled,
        "setup_queue_s": rounded(setup(), 2),
        "server_worker_peak_rss_mb": server_peak["max"],
        "backend": backend,
    }
    summary = [
        f"push {push_s:.2f} s + pull {pull_s:.2f} s vs floor {floor_s * 1000:.1f} ms: ratio {total / floor_s:.1f}",
        f"up {up['bytes_up']:,} B ({up['bytes_up'] / records:.1f} B/record), "
        f"down {pulled['bytes_down']:,} B ({report_b.pulled:,} records incl. the route's reference data)",
        f"the pushing handheld pulled its own {report_a.pulled:,} records back in {push_sync_s - push_s:.2f} s",
    ]
    return Result(
        "push_pull",
        {"records": records, "meters": meters, "backend": backend, "seed": seed, "workers": workers},
        figures,
        summary,
        psycopg=backend == "postgresql",
    )


def queue_readings(handheld: Handheld, count: int) -> None:
    """Record `count` readings through the core's API, round-robin over the handheld's meters (each re-read
    supersedes the one before), `CHUNK` to a local transaction so setup is not one fsync per reading."""
    meters = handheld.store.rows("SELECT * FROM meters ORDER BY route_seq")
    assert meters, "the handheld holds no meters: sync it first"
    now_ms = int(handheld.now().timestamp() * 1000)
    done = 0
    while done < count:
        with handheld.store.transaction():
            for index in range(done, min(count, done + CHUNK)):
                meter = meters[index % len(meters)]
                handheld.readings.record(meter["id"], in_band_value(meter, now_ms))
        done = min(count, done + CHUNK)


def floor(handheld: Handheld, directory: Path) -> float:
    """Seconds to write the handheld's reading rows into a table of the same columns with one executemany
    in one transaction, and to read them back with one SELECT (median of FLOOR_RUNS fresh files)."""
    connection = handheld.store.db.conn
    columns = connection.execute("PRAGMA table_info(readings)").fetchall()  # (cid, name, type, notnull, ...)
    rows = connection.execute("SELECT * FROM readings").fetchall()
    definition = ", ".join(
        f"[{name}] {kind}{' PRIMARY KEY' if pk else ''}{' NOT NULL' if notnull else ''}"
        for _cid, name, kind, notnull, _default, pk in columns
    )
    placeholders = ", ".join("?" for _ in columns)
    directory.mkdir(parents=True, exist_ok=True)
    times = []
    for run_number in range(FLOOR_RUNS):
        path = directory / f"floor-{run_number}.db"
        target = sqlite3.connect(path, isolation_level=None)
        try:
            target.execute("PRAGMA journal_mode=WAL")
            target.execute("PRAGMA synchronous=FULL")
            target.execute(f"CREATE TABLE readings ({definition})")
            with stopwatch() as elapsed:
                target.execute("BEGIN")
                target.executemany(f"INSERT INTO readings VALUES ({placeholders})", rows)
                target.execute("COMMIT")
                back = target.execute("SELECT * FROM readings").fetchall()
            assert len(back) == len(rows)
            times.append(elapsed())
        finally:
            target.close()
    return statistics.median(times)
