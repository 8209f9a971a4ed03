"""A handheld's field work through the client core's public API, for the benchmarks that need a real day of it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pda_client import Handheld

RESOLUTION = "repaired"


def iso_ms(text: str | None) -> int | None:
    """Milliseconds since the epoch of an ISO timestamp as the handheld stores it."""
    if not text:
        return None
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def in_band_value(meter: dict[str, Any], now_ms: int) -> int:
    """A register value whose consumption is the expected use since the last read: inside the hi/lo band,
    so the core records it without asking for a confirmation."""
    days = (now_ms - (iso_ms(meter["last_read_at"]) or now_ms)) / 86_400_000
    used = round((meter["avg_daily"] or 1) * days / (meter["multiplier"] or 1.0))
    return (meter["last_value"] + used) % 10 ** meter["dials"]


def read_meters(handheld: Handheld, count: int) -> int:
    """A reader's day: the first `count` meters of each route in walk order, read in band. Returns readings."""
    now_ms = int(handheld.now().timestamp() * 1000)
    done = 0
    for route in handheld.store.rows("SELECT id FROM routes ORDER BY code"):
        for meter in handheld.store.rows(
            "SELECT * FROM meters WHERE route_id = ? ORDER BY route_seq LIMIT ?", [route["id"], count - done]
        ):
            handheld.readings.record(meter["id"], in_band_value(meter, now_ms))
            done += 1
    return done


def work_jobs(handheld: Handheld) -> int:
    """A lineman's day: every open job travelled to, arrived at, noted and completed. Returns changes queued."""
    before = handheld.store.rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
    for job in handheld.jobs.list():
        handheld.jobs.start_travel(job["id"])
        handheld.jobs.arrive(job["id"])
        handheld.jobs.add_note(job["id"], "Replaced the fuse, supply restored")
        handheld.jobs.complete(job["id"], RESOLUTION)
    return handheld.store.rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"] - before
