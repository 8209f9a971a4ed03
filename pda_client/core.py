"""The client core: everything the handheld does except drawing the screen. The Kivy app and the
command-line interface call only this object's public methods and attributes (jobs, readings)."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync_protocol import HLCClock

from .errors import HandheldError, InvalidInput, NotEnrolled
from .jobs import Jobs
from .outbox import load_clock, utc_now
from .readings import Readings
from .store import LocalStore, decode
from .sync import Progress, SyncEngine, SyncReport
from .transport import Transport

DEFAULT_DATA_DIR = Path(os.environ.get("FIELDSYNC_DATA", Path.home() / ".fieldsync"))
# When a handheld syncs on its own (the app's timers; bench fleet models a fleet's arrivals on them):
AUTO_SYNC_S = 5 * 60  # periodic sync
PROBE_S = 30  # reachability probe: a sync starts as soon as the server answers again


class Handheld:
    """One user's handheld database and its operations."""

    def __init__(
        self,
        data_dir: str | Path = DEFAULT_DATA_DIR,
        *,
        physical_clock: Callable[[], int] | None = None,
        transport_factory: Callable[..., Transport] = Transport,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.store = LocalStore(self.data_dir / "handheld.db")
        self._physical = physical_clock
        self._transport_factory = transport_factory
        self.clock: HLCClock = load_clock(self.store, physical_clock)
        self.jobs = Jobs(self.store, self.clock, self.now)
        self.readings = Readings(self.store, self.clock, self.now)
        self._sync_lock = threading.Lock()

    def now(self) -> dt.datetime:
        if self._physical is None:
            return utc_now()
        return dt.datetime.fromtimestamp(self._physical() / 1000, dt.UTC)

    def close(self) -> None:
        self.store.close()

    # --- enrolment --------------------------------------------------------------------------------

    @property
    def enrolled(self) -> bool:
        return bool(self.store.meta("token"))

    def enroll(self, server_url: str, code: str, device_name: str) -> dict[str, Any]:
        """Exchange a one-time code for this handheld's identity; keeps any work already on the device."""
        if not server_url.startswith(("http://", "https://")):
            raise InvalidInput("The server address starts with https:// (or http:// on a test network).")
        transport = self._transport_factory(server_url, attempts=2)
        body = transport.request(
            "POST",
            "/api/v1/devices/enroll",
            body={"code": code.strip(), "device_name": device_name[:80] or "handheld", "platform": "python"},
        )
        with self.store.transaction():
            for key, value in (
                ("server_url", server_url.rstrip("/")),
                ("device_id", body["device_id"]),
                ("token", body["token"]),
                ("user_id", body["user"]["id"]),
                ("user", body["user"]),
                ("cursor", None),
                ("snapshot_active", False),
            ):
                self.store.set_meta(key, value)
            self.clock = load_clock(self.store, self._physical)
            self.store.set_meta("hlc_last", str(self.clock.now()))
            self.jobs.clock = self.readings.clock = self.clock
        return body["user"]

    # --- sync ----------------------------------------------------------------------------------------

    def sync(self, progress: Progress | None = None, cancel: threading.Event | None = None) -> SyncReport:
        """Push the outbox and pull the scope. One sync at a time (a second caller waits)."""
        if not self.enrolled:
            raise NotEnrolled("Enrol this handheld first (server address and the code from the office).")
        with self._sync_lock:
            transport = self._transport_factory(self.store.meta("server_url"), self.store.meta("token"))
            engine = SyncEngine(self.store, transport, self.clock, progress=progress, cancel=cancel, now=self.now)
            return engine.run()

    def server_reachable(self, timeout_s: float = 3.0) -> bool:
        """One light probe of the server's health endpoint (no retries, no token): True when it answers
        healthy. The app calls it off the UI thread to show online/offline and to sync when a link returns."""
        server_url = self.store.meta("server_url")
        if not server_url:
            return False
        transport = self._transport_factory(server_url, attempts=1, timeout=(timeout_s, timeout_s))
        try:
            transport.request("GET", "/api/v1/health")
        except HandheldError:
            return False
        finally:
            transport.session.close()
        return True

    # --- what the home screen shows ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        pending = self.store.rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        return {
            "enrolled": self.enrolled,
            "server_url": self.store.meta("server_url"),
            "device_id": self.store.meta("device_id"),
            "user": self.store.meta("user"),
            "pending_changes": pending,
            "last_success_at": self.store.meta("last_success_at"),
            "last_error": self.store.meta("last_error"),
            "clock_offset_ms": self.store.meta("clock_offset_ms"),
            "open_jobs": len(self.jobs.list()),
            "routes": [
                {"id": r["id"], "code": r["code"], "name": r["name"], **r["progress"]} for r in self.readings.routes()
            ],
            "unseen_conflicts": self.store.rows("SELECT COUNT(*) AS n FROM conflicts WHERE seen = 0")[0]["n"],
            "rejected": self.store.rows("SELECT COUNT(*) AS n FROM rejected")[0]["n"],
        }

    def conflicts(self) -> list[dict[str, Any]]:
        return [decode("conflicts", r) for r in self.store.rows("SELECT * FROM conflicts ORDER BY created_at DESC")]

    def mark_conflicts_seen(self) -> None:
        with self.store.transaction():
            self.store.db.execute("UPDATE conflicts SET seen = 1")

    def rejected(self) -> list[dict[str, Any]]:
        return [decode("rejected", r) for r in self.store.rows("SELECT * FROM rejected ORDER BY rejected_at DESC")]

    def outbox(self) -> list[dict[str, Any]]:
        return [decode("outbox", r) for r in self.store.rows("SELECT * FROM outbox ORDER BY seq")]


__all__ = ["DEFAULT_DATA_DIR", "Handheld", "HandheldError"]
