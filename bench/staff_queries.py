"""staff_queries: the service centre's common pages over a large database (default about 1M readings, 100k
jobs, 100k customers), each loaded `repeat` times through the Flask test client signed in as staff; p50 and
p95 per page, after one untimed warm-up load.

The database is the server's own demo data (server/demo.py: heavy-tailed consumption, ten monthly reading
cycles, jobs through their whole lifecycle) on SQLite, built once as of a fixed hour (AS_OF) and kept in a
cache folder (bench/.cache/ by default) under a name of its size, seed and a digest of the seeder and the
migrations, so a re-run starts at once and a changed seeder or schema builds anew. Each run queries a copy:
signing in writes to the database, the cache stays as built. The pages' periods are fixed relative to
AS_OF, so every run asks the same questions of the same data.

The figure is the whole page as staff get it: routing, the session, the queries, and the HTML rendered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ROOT, Result, latency_ms, log, rounded, stopwatch

AS_OF = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
STAFF_USERNAME = "bench-staff"
STAFF_PASSWORD = "bench-staff-password-1"  # a throwaway benchmark database
DEFAULT_CACHE = ROOT / "bench" / ".cache"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def run(
    customers: int = 100_000,
    jobs: int = 100_000,
    months: int = 9,
    repeat: int = 20,
    cache_dir: Path | None = None,
    seed: int = 1,
) -> Result:
    """Load each staff page `repeat` times over a seeded database (built or taken from the cache)."""
    from server import create_app
    from server.extensions import db

    if repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    cache = Path(cache_dir or os.environ.get("FIELDSYNC_BENCH_CACHE") or DEFAULT_CACHE)
    database, built, about = cached_database(cache, customers=customers, jobs=jobs, months=months, seed=seed)
    sizes = {key: value for key, value in about.items() if key != "seed_s"}
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-staff-") as temp:
        directory = Path(temp)
        copy = directory / "fieldsync.db"
        shutil.copyfile(database, copy)
        app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{copy}"}, instance_path=str(directory / "instance"))
        try:
            with app.app_context():
                pages = page_list(db)
            client = app.test_client()
            _sign_in(client)
            timings: dict[str, dict[str, Any]] = {}
            for name, (url, first_chunk) in pages.items():
                log(f"staff_queries: {name} x {repeat}")
                seconds = [_load(client, url, first_chunk) for _ in range(repeat + 1)][1:]
                timings[name] = {"url": url, **latency_ms(seconds)}
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    worst = max(timings.values(), key=lambda t: t["p95_ms"])
    figures: dict[str, Any] = {
        "p95_ms": {name: t["p95_ms"] for name, t in timings.items()},
        "p50_ms": {name: t["p50_ms"] for name, t in timings.items()},
        "worst_p95_ms": worst["p95_ms"],
        "queries": timings,
        "database": sizes,
        "database_mb": rounded(database.stat().st_size / 2**20, 1),
        "seed_s": about.get("seed_s"),
        "seeded_now": built,
        "backend": "sqlite",
    }
    summary = [
        f"{sizes.get('readings', 0):,} readings, {sizes.get('jobs', 0):,} jobs"
        + (" (seeded now" if built else " (from the cache, seeded")
        + f" in {about.get('seed_s', 0):.0f} s)"
    ]
    summary += [f"{name:<22} p50 {t['p50_ms']:>9.1f} ms  p95 {t['p95_ms']:>9.1f} ms" for name, t in timings.items()]
    parameters = {
        "customers": customers,
        "jobs": jobs,
        "months": months,
        "repeat": repeat,
        "seed": seed,
        "as_of": AS_OF.isoformat(),
    }
    return Result("staff_queries", parameters, figures, summary)


def page_list(db: Any) -> dict[str, tuple[str, bool]]:
    """The pages timed: name -> (URL, time only the first chunk). Ids are picked from the data (a busy
    route, the customer with the most jobs) so every page has something to show."""
    import sqlalchemy as sa

    customer = db.session.execute(
        sa.text("SELECT customer_id FROM jobs GROUP BY customer_id ORDER BY COUNT(*) DESC, customer_id LIMIT 1")
    ).scalar()
    route = db.session.execute(sa.text("SELECT id FROM routes ORDER BY id LIMIT 1 OFFSET 4")).scalar()
    route = route or db.session.execute(sa.text("SELECT id FROM routes ORDER BY id LIMIT 1")).scalar()
    end = (AS_OF - dt.timedelta(days=1)).date()
    month = (AS_OF - dt.timedelta(days=30)).date()
    year = (AS_OF - dt.timedelta(days=365)).date()
    quarter = (AS_OF - dt.timedelta(days=90)).date()
    return {
        "jobs_search": ("/jobs?q=Wang", False),
        "jobs_filtered": (
            f"/jobs?status=assigned&status=en_route&status=on_site&priority=1&priority=2"
            f"&created_from={quarter}&sort=-created",
            False,
        ),
        "jobs_open_vip": ("/jobs?status=new&status=assigned&vip=true", False),
        "readings_recent": ("/readings", False),
        "readings_filtered": (
            f"/readings?route_id={route}&date_from={month}&date_to={end}&exceptions_only=true",
            False,
        ),
        "readings_meter": ("/readings?meter=A12", False),
        "customer_search": ("/customers?q=Zhang", False),
        "customer_page": (f"/customers/{customer}", False),
        "route_progress": ("/readings/routes", False),
        "kpis": (f"/kpis?preset=custom&start={month}&end={end}", False),
        "abc_analysis": (f"/analysis?start={year}&end={end}", False),
        "readings_csv_first_chunk": (f"/readings?format=csv&date_from={month}&date_to={end}", True),
    }


def _load(client: Any, url: str, first_chunk: bool) -> float:
    """Seconds to load a page (the whole body, or only the first chunk of a streamed export)."""
    started = time.perf_counter()
    response = client.get(url, buffered=not first_chunk)
    if first_chunk:
        next(iter(response.response), b"")
        seconds = time.perf_counter() - started
        response.close()
    else:
        response.get_data()
        seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    return seconds


def _sign_in(client: Any) -> None:
    match = CSRF.search(client.get("/login").get_data(as_text=True))
    assert match, "no CSRF token on /login"
    response = client.post(
        "/login", data={"username": STAFF_USERNAME, "password": STAFF_PASSWORD, "csrf_token": match.group(1)}
    )
    assert response.status_code == 302, f"signing in failed: {response.status_code}"


# --- the seeded database ---------------------------------------------------------------------------------------


def _digest() -> str:
    """Changes when the seeder or the schema does: a cached database is only reused for the same code."""
    digest = hashlib.sha256((ROOT / "server" / "demo.py").read_bytes())
    for path in sorted((ROOT / "server" / "migrations" / "versions").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cached_database(cache: Path, *, customers: int, jobs: int, months: int, seed: int) -> tuple[Path, bool, dict]:
    """The seeded database file (built if the cache lacks it), whether it was built now, and what it holds
    (row counts, and `seed_s`: the seconds its seeding took, when it was built)."""
    name = f"staff-c{customers}-j{jobs}-m{months}-s{seed}-{AS_OF:%Y%m%d%H}-{_digest()}"
    path = cache / f"{name}.db"
    about = cache / f"{name}.json"
    if path.exists() and about.exists():
        return path, False, json.loads(about.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# databases of a gigabyte: never committed\n*\n")
    building = cache / f"{name}.building-{os.getpid()}.db"
    log(f"staff_queries: seeding {customers:,} customers, {jobs:,} jobs, {months} months into {path}")
    with stopwatch() as elapsed:
        sizes: dict[str, Any] = _seed(building, customers=customers, jobs=jobs, months=months, seed=seed)
    for suffix in ("-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    building.replace(path)  # only a complete database ever has the cache's name
    sizes["seed_s"] = rounded(elapsed(), 1)
    about.write_text(json.dumps(sizes, indent=1) + "\n")
    log(f"staff_queries: seeded in {elapsed():.0f} s")
    return path, True, sizes


def _seed(path: Path, *, customers: int, jobs: int, months: int, seed: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from server import create_app, demo
    from server.cli import init_database
    from server.extensions import db
    from server.services import users

    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-seed-") as instance:
        app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"}, instance_path=instance)
        with app.app_context():
            try:
                init_database()
                sizes = demo.seed_demo(seed=seed, customers=customers, jobs=jobs, months=months, as_of=AS_OF)
                users.create_user(STAFF_USERNAME, "staff", "Benchmark staff", STAFF_PASSWORD)
                db.session.commit()
                db.session.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))
            except BaseException:
                db.session.rollback()
                path.unlink(missing_ok=True)
                raise
            finally:
                db.session.remove()
                db.engine.dispose()
    return sizes
