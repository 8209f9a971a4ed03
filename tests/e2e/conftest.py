"""A real server for end-to-end tests: gunicorn with 3 workers (server/gunicorn.conf.py) on a free
loopback port, over a fresh SQLite file or, when FIELDSYNC_TEST_PG_URL is set, a fresh PostgreSQL schema.
The database is prepared with the administration commands an operator runs (`flask --app server ...`).

`live_server` (module-scoped, one per backend) serves a whole test module; `start_server(directory,
backend)` gives a test a server of its own, which it may stop (`stop_server`) and `restart()` at the
same address."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.server.conftest import BACKENDS, PG_URL, pg_schema_url

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
# Enrolment attempts per client address per window: above what a test module enrols from loopback
ENROLL_ATTEMPTS = 40
BOOT_TIMEOUT_S = 60
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


@dataclass
class LiveServer:
    database_url: str
    env: dict[str, str]
    log: Path
    url: str = ""  # http://127.0.0.1:<port>, fixed once the server first listened
    process: subprocess.Popen | None = None

    def flask(self, *args: str) -> str:
        """Run `flask --app server <args>` against this server's database; its stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "server", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"

    def start(self) -> None:
        """Start gunicorn (on the port it had before, if it ran already) and wait until it is healthy."""
        assert self.process is None, "already running"
        env = dict(self.env)
        if self.url:
            env["FIELDSYNC_BIND"] = self.url.removeprefix("http://")
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "server" / "gunicorn.conf.py")],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            self.url = self._wait_until_listening(offset)
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: the master stops its workers); kill if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def worker_pids(self) -> list[int]:
        """The gunicorn master's worker processes (its direct children), read from /proc."""
        assert self.process is not None, "not running"
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # exited meanwhile
                if int(fields[1]) == self.process.pid:
                    found.append(int(entry.name))
        return sorted(found)

    def _output(self, offset: int = 0) -> str:
        return self.log.read_text()[offset:]

    def _wait_until_listening(self, offset: int) -> str:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            match = LISTENING.search(self._output(offset))
            if match:
                return match.group(1)
            assert self.process is not None and self.process.poll() is None, f"gunicorn exited:\n{self._output()}"
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not start listening:\n{self._output()}")

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, f"gunicorn exited:\n{self._output()}"
            try:
                if requests.get(self.api("/health"), timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # listening, but the workers are still booting
            time.sleep(0.1)
        raise AssertionError(f"the server never became healthy:\n{self._output()}")


def stop_server(server: LiveServer) -> None:
    server.stop()


def _server_env(database_url: str, instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIELDSYNC_", "FLASK_"))}
    env.update(
        DATABASE_URL=database_url,
        FIELDSYNC_INSTANCE_PATH=str(instance),
        FIELDSYNC_BIND="127.0.0.1:0",  # gunicorn picks a free port and logs it
        FIELDSYNC_WORKERS=str(WORKERS),
        FIELDSYNC_TRUSTED_PROXIES="1",  # as behind a load balancer: X-Forwarded-For names the client
        FIELDSYNC_ENROLL_ATTEMPTS=str(ENROLL_ATTEMPTS),
        FIELDSYNC_ACCESS_LOG="-",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def _database(directory: Path, backend: str) -> Iterator[str]:
    """A fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'fieldsync.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need FIELDSYNC_TEST_PG_URL (set by .ci/run); skipped")
    schema = f"fs_e2e_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield pg_schema_url(PG_URL, schema)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def start_server(
    directory: Path,
    backend: str,
    *,
    demo_data: bool = True,
    env: dict[str, str] | None = None,
    prepare: Callable[[LiveServer], None] | None = None,
) -> Iterator[LiveServer]:
    """A running server over a new database initialised and seeded with demo data, as an operator would
    (`init-db`, `seed-demo`); stopped and its database dropped afterwards. `env` adds server settings;
    `prepare` fills the database (instead of, or after, the demo data) before the server starts."""
    directory.mkdir(parents=True, exist_ok=True)
    with _database(directory, backend) as database_url:
        server_env = {**_server_env(database_url, directory / "instance"), **(env or {})}
        server = LiveServer(database_url, server_env, directory / "gunicorn.log")
        server.flask("init-db")
        if demo_data:
            server.flask("seed-demo", "--customers", "300", "--jobs", "30")
        if prepare is not None:
            prepare(server)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def live_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(tmp_path_factory.mktemp(f"live-{request.param}"), request.param) as server:
        yield server
