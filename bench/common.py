"""What every benchmark shares: the machine and library versions a figure was measured with, percentiles,
the JSON document, memory readers (/proc), a real server (gunicorn, as tests/e2e starts it) and a
transport factory that records every HTTP attempt a handheld makes (time, status, bytes on the wire).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from pda_client.transport import Transport

ROOT = Path(__file__).resolve().parents[1]
PG_URL_VARIABLE = "FIELDSYNC_TEST_PG_URL"
LIBRARIES = ("flask", "flask-sqlalchemy", "sqlalchemy", "requests", "sqlite-utils", "gunicorn", "marshmallow")


# --- where and with what a figure was measured -----------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine a run measured: figures from different machines (or loads) do not compare."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]  # a busy machine explains slow figures
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = next((line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal:")), "")
        if total:
            info["memory_mb"] = round(int(total.split()[1]) / 1024)
    return info


def versions(*, psycopg: bool = False) -> dict[str, str | None]:
    """Versions of the libraries on the measured path (psycopg only when PostgreSQL was used)."""
    found: dict[str, str | None] = {}
    for name in (*LIBRARIES, *(("psycopg",) if psycopg else ())):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["sqlite3_library"] = sqlite3.sqlite_version
    return found


def git_commit() -> str | None:
    head = ROOT / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (ROOT / ".git" / ref[5:]).read_text().strip()[:12]
        return ref[:12]
    except OSError:
        return None


# --- numbers -------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p95/p99/max in milliseconds of a list of durations in seconds."""
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 3),
        "p95_ms": round(percentile(seconds, 95) * 1000, 3),
        "p99_ms": round(percentile(seconds, 99) * 1000, 3),
        "max_ms": round(max(seconds) * 1000, 3),
    }


def rounded(value: float, digits: int = 4) -> float:
    return round(value, digits)


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed:` ... `elapsed()` is the seconds since the block began (or its length
    once it has ended)."""
    started = time.perf_counter()
    ended: list[float] = []
    yield lambda: (ended[0] if ended else time.perf_counter()) - started
    ended.append(time.perf_counter())


# --- the result document ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """One benchmark's outcome: what it was asked (parameters), what it measured (figures), and a few lines
    for a person."""

    name: str
    parameters: dict[str, Any]
    figures: dict[str, Any]
    summary: list[str] = field(default_factory=list)
    psycopg: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "commit": git_commit(),
            "machine": machine(),
            "versions": versions(psycopg=self.psycopg),
            "parameters": self.parameters,
            "figures": self.figures,
        }

    def json(self) -> str:
        # allow_nan=False: a NaN or an infinity is a bug in the benchmark, not a figure
        return json.dumps(self.document(), allow_nan=False, ensure_ascii=False)

    def text(self) -> str:
        head = f"{self.name}: " + ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        return "\n".join([head, *(f"  {line}" for line in self.summary)])


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the result)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- memory ----------------------------------------------------------------------------------------------------


def proc_status_kb(pid: int | str, name: str) -> int | None:
    """A /proc/<pid>/status field in kB (VmHWM: peak resident set, VmRSS: current); None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    kb = proc_status_kb(pid, "VmHWM")
    return None if kb is None else round(kb / 1024, 1)


# --- CPU time ----------------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int | str, *, children: bool = False) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc/<pid>/stat; with `children`, also those of
    its children that have exited and been waited for (a gunicorn master: its replaced workers). None if
    unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the command: state is fields[0], so utime, stime, cutime, cstime are fields[11:15]
    ticks = sum(int(x) for x in fields[11 : 15 if children else 13])
    return ticks / CLOCK_TICKS


def machine_cpu_s() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat; idle and iowait are
    not busy). Deltas over a run: what every process on the machine used, this benchmark's or not."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    return (total - ticks[3] - ticks[4]) / CLOCK_TICKS, total / CLOCK_TICKS


# --- a real server ---------------------------------------------------------------------------------------------


def choose_backend(requested: str | None, *, default: str = "sqlite") -> str:
    """`requested`, or `default`; "auto" means PostgreSQL when FIELDSYNC_TEST_PG_URL is set."""
    backend = requested or default
    if backend == "auto":
        backend = "postgresql" if os.environ.get(PG_URL_VARIABLE) else "sqlite"
    if backend == "postgresql" and not os.environ.get(PG_URL_VARIABLE):
        raise SystemExit(f"the postgresql backend needs {PG_URL_VARIABLE}")
    if backend not in ("sqlite", "postgresql"):
        raise SystemExit(f"unknown backend {backend!r}")
    return backend


@contextmanager
def live_server(
    directory: Path,
    backend: str,
    prepare: Callable[[Any], None],
    *,
    workers: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Any]:
    """gunicorn on a free loopback port over a fresh database that `prepare(live)` fills before it starts
    (tests/e2e/conftest.py's start_server: the same server the end-to-end tests use). `workers` defaults to
    the production formula of server/gunicorn.conf.py (2 x cores + 1)."""
    from tests.e2e.conftest import start_server  # the test helpers import pytest: only when a server is needed

    settings = {"FIELDSYNC_WORKERS": str(workers or (os.cpu_count() or 1) * 2 + 1), **(env or {})}
    with start_server(directory, backend, demo_data=False, env=settings, prepare=prepare) as live:
        yield live


@contextmanager
def office(database_url: str, directory: Path) -> Iterator[Any]:
    """The server's app context on `database_url`, for building a world with the server's own services;
    commits at the end and releases every connection (the server starts afterwards)."""
    from server import create_app
    from server.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url}, instance_path=str(directory / "office"))
    with app.app_context():
        try:
            yield app
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()


def server_workers_peak_mb(live: Any) -> dict[str, float | int | None]:
    """Peak resident memory of the gunicorn workers (VmHWM, MB): the largest worker's (what one process must
    fit in), their sum, and how many workers were read."""
    if live.process is None:
        return {"max": None, "sum": None, "workers": 0}
    peaks = [p for p in (peak_rss_mb(pid) for pid in live.worker_pids()) if p is not None]
    return {
        "max": max(peaks) if peaks else None,
        "sum": round(sum(peaks), 1) if peaks else None,
        "workers": len(peaks),
    }


# --- what a handheld sends and receives -------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAttempt:
    """One HTTP exchange (a retried request is several). `received_wire` is the body as it crossed the wire
    (gzip-compressed when the server compressed it), `received` the decoded body; headers are not counted."""

    method: str
    path: str
    started: float  # time.perf_counter()
    seconds: float
    status: int | None  # None: no answer (connection refused, reset, timeout)
    sent: int
    received_wire: int
    received: int


class RecordingSession(requests.Session):
    """A requests session that logs every attempt; the handheld's Transport runs its retries through it."""

    def __init__(self, attempts: list[HttpAttempt]) -> None:
        super().__init__()
        self.attempts = attempts

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        data = kwargs.get("data")
        sent = len(data) if isinstance(data, bytes | bytearray) else 0
        path = urlsplit(str(url)).path
        started = time.perf_counter()
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException:
            self.attempts.append(
                HttpAttempt(str(method), path, started, time.perf_counter() - started, None, sent, 0, 0)
            )
            raise
        body = response.content  # read now (not streamed): the attempt's time includes the whole body
        wire = response.raw.tell() if response.raw is not None else len(body)
        self.attempts.append(
            HttpAttempt(
                str(method), path, started, time.perf_counter() - started, response.status_code, sent, wire, len(body)
            )
        )
        return response


class TransportRecorder:
    """A `transport_factory` for `Handheld`: the real Transport over a RecordingSession. Keeps every transport
    it made (their byte counters) and one log of HTTP attempts for all of them."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.attempts: list[HttpAttempt] = []
        self.transports: list[Transport] = []

    def __call__(self, base_url: str, token: str | None = None, **kwargs: Any) -> Transport:
        transport = Transport(base_url, token, session=RecordingSession(self.attempts), **{**self.options, **kwargs})
        self.transports.append(transport)
        return transport

    def mark(self) -> int:
        """A position in the attempt log, for `since`."""
        return len(self.attempts)

    def since(self, mark: int) -> list[HttpAttempt]:
        return self.attempts[mark:]


def traffic(attempts: Sequence[HttpAttempt]) -> dict[str, int]:
    return {
        "requests": len(attempts),
        "bytes_up": sum(a.sent for a in attempts),
        "bytes_down": sum(a.received_wire for a in attempts),
        "bytes_down_decoded": sum(a.received for a in attempts),
    }
