"""The server's hybrid logical clock: one per process, with its own node id."""

from __future__ import annotations

import os
import secrets
import threading

from sync_protocol import HLC, HLCClock
from sync_protocol.hlc import wall_clock_ms

# Device stamps reach this clock only after push bounded them (sync_protocol.bound_skew, configured by
# FIELDSYNC_MAX_CLOCK_SKEW_MS), so the clock itself accepts whatever it is given up to a day ahead.
MAX_DRIFT_MS = 86_400_000

__all__ = ["now_hlc", "server_clock", "wall_clock_ms"]

_clock: HLCClock | None = None
_pid: int | None = None
_start_lock = threading.Lock()  # gthread workers: two first requests must not start two clocks


def server_clock() -> HLCClock:
    """This process's clock (a forked gunicorn worker gets its own node id)."""
    global _clock, _pid
    with _start_lock:
        if _clock is None or _pid != os.getpid():
            _clock, _pid = HLCClock(f"srv-{secrets.token_hex(4)}", max_drift_ms=MAX_DRIFT_MS), os.getpid()
        return _clock


def now_hlc() -> HLC:
    return server_clock().now()
