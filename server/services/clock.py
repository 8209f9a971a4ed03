"""The server's hybrid logical clock: one per process, with its own node id."""

from __future__ import annotations

import os
import secrets

from sync_protocol import HLC, HLCClock

_clock: HLCClock | None = None
_pid: int | None = None


def server_clock() -> HLCClock:
    """This process's clock (a forked gunicorn worker gets its own node id)."""
    global _clock, _pid
    if _clock is None or _pid != os.getpid():
        _clock, _pid = HLCClock(f"srv-{secrets.token_hex(4)}"), os.getpid()
    return _clock


def now_hlc() -> HLC:
    return server_clock().now()
