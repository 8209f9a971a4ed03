"""Fixtures for the handheld's client core: a controllable clock, an enrolled handheld loaded with a
small scope through the real pull path, and a scripted sync server on loopback."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pda_client import Handheld
from pda_client.store import LocalStore
from pda_client.sync import SyncEngine
from pda_client.transport import Transport
from tests.client.loopback import Loopback
from tests.client.scope import Scope, apply_records, enrol_store

# A fixed moment for tests that control the clock (the handheld's wall clock is injected).
NOW = dt.datetime(2025, 6, 16, 9, 0, tzinfo=dt.UTC)


class FakeClock:
    """The handheld's physical clock, in ms since the epoch; tests move it by hand."""

    def __init__(self, start: dt.datetime) -> None:
        self.ms = int(start.timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms

    def advance(self, **delta: float) -> None:
        self.ms += int(dt.timedelta(**delta).total_seconds() * 1000)

    def set(self, moment: dt.datetime) -> None:
        self.ms = int(moment.timestamp() * 1000)

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.ms / 1000, dt.UTC)


def load_handheld(data_dir: Path, now: dt.datetime, server_url: str = "http://127.0.0.1:9") -> None:
    """Write an enrolled handheld database in `data_dir` holding the standard scope (then close it)."""
    store = LocalStore(data_dir / "handheld.db")
    try:
        enrol_store(store, server_url)
    finally:
        store.close()
    handheld = Handheld(data_dir, physical_clock=lambda: int(now.timestamp() * 1000))
    try:
        apply_records(handheld.store, handheld.clock, Scope(now).records())
    finally:
        handheld.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def scope() -> Scope:
    return Scope(NOW)


@pytest.fixture(scope="session")
def loaded_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The enrolled handheld's database, built once through the real pull path; tests get a copy."""
    folder = tmp_path_factory.mktemp("template")
    load_handheld(folder, NOW)
    assert not (folder / "handheld.db-wal").exists()  # closed cleanly: the one file is the whole database
    return folder / "handheld.db"


@pytest.fixture
def handheld(tmp_path: Path, clock: FakeClock, loaded_database: Path) -> Iterator[Handheld]:
    """An enrolled handheld (re-opened after enrolment, as after an app restart) holding the scope."""
    shutil.copyfile(loaded_database, tmp_path / "handheld.db")
    handheld = Handheld(tmp_path, physical_clock=clock)
    yield handheld
    handheld.close()


@pytest.fixture
def pull(handheld: Handheld) -> Callable[..., SyncEngine]:
    """Apply pulled records to the handheld as one pull page would."""

    def apply(*records: dict[str, Any]) -> SyncEngine:
        return apply_records(handheld.store, handheld.clock, records)

    return apply


@pytest.fixture
def server(clock: FakeClock) -> Iterator[Loopback]:
    loopback = Loopback(clock)
    loopback.start()
    yield loopback
    loopback.stop()
    assert not loopback.errors, f"the scripted server failed: {loopback.errors}"


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff sleeps the transport asked for (recorded, never slept)."""
    return []


@pytest.fixture
def make_engine(handheld: Handheld, server: Loopback, sleeps: list[float]) -> Iterator[Callable[..., SyncEngine]]:
    """Build sync engines for the handheld against the loopback server; their sessions are closed after."""
    transports: list[Transport] = []

    def build(*, attempts: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 30.0, **kwargs: Any) -> SyncEngine:
        transport = Transport(
            server.url,
            handheld.store.meta("token"),
            attempts=attempts,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            timeout=(2.0, 5.0),
            sleep=kwargs.pop("sleep", sleeps.append),
        )
        transports.append(transport)
        return SyncEngine(handheld.store, transport, handheld.clock, now=handheld.now, **kwargs)

    yield build
    for transport in transports:
        transport.session.close()
