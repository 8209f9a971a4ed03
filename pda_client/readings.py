"""Meter reading on the handheld: the route in walk order, progress, and recording reads and skips.

Entry follows the utility's practice: the value is checked against the expected range (sync_protocol
.readings); a value outside it is never refused but must be entered a second time (two equal entries make
a *verified* read) or explained with a remark. A meter already read this cycle gets a re-read that
supersedes the earlier one: nothing is overwritten.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Any

from sync_protocol import HLCClock
from sync_protocol.codes import COMMENT_CODES, READING_TYPES, SKIP_CODES, TROUBLE_CODES
from sync_protocol.readings import (
    Band,
    CheckResult,
    ReadingRuleError,
    check_read_time,
    check_register_value,
    expected_band,
)

from .errors import InvalidInput, NeedsConfirmation, NotFound
from .outbox import enqueue, fact_id, iso, utc_now
from .store import LocalStore, decode

# How far the device's clock may be ahead of the previous read's date before a reading is refused locally.
MAX_LOCAL_SKEW_MS = 5 * 60 * 1000


def _ms(text: str | None) -> int | None:
    if not text:
        return None
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _check_as_run(band: Band, entries: int) -> dict[str, Any]:
    """The check as the device ran it, stored with the reading. Expected use is kept to the 0.1 unit the
    office shows it with (the band it gives is in whole units), not to 15 digits that cost bytes on the
    wire and mean nothing."""
    return {
        "result": band.result.value,
        "consumption": band.consumption,
        "expected": None if band.expected is None else round(band.expected, 1),
        "low": band.low,
        "high": band.high,
        "rollover": band.rollover,
        "entries": entries,
    }


class Readings:
    def __init__(self, store: LocalStore, clock: HLCClock, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        self.now = now

    # --- routes -----------------------------------------------------------------------------------

    def routes(self) -> list[dict[str, Any]]:
        return [dict(r, progress=self.progress(r["id"])) for r in self.store.rows("SELECT * FROM routes ORDER BY code")]

    def walk(self, route_id: str) -> list[dict[str, Any]]:
        """The route's meters in walk order, each with its state this cycle: read, skipped or remaining."""
        route = self.store.get("routes", route_id)
        if route is None:
            raise NotFound(f"No route {route_id} on this handheld.")
        meters = self.store.rows(
            """SELECT m.*, p.address, p.hazards, p.access_notes, c.name AS customer_name, c.vip
               FROM meters m LEFT JOIN premises p ON p.id = m.premise_id
               LEFT JOIN customers c ON c.id = p.customer_id
               WHERE m.route_id = ? ORDER BY m.route_seq, m.number""",
            [route_id],
        )
        current = self._current_readings(route)
        walk = []
        for meter in meters:
            meter = decode("premises", meter)
            reading = current.get(meter["id"])
            meter["reading"] = reading
            meter["state"] = "remaining" if reading is None else ("skipped" if reading["skip_code"] else "read")
            walk.append(meter)
        return walk

    def progress(self, route_id: str) -> dict[str, Any]:
        walk = self.walk(route_id)
        counts = {"read": 0, "skipped": 0, "remaining": 0}
        for meter in walk:
            counts[meter["state"]] += 1
        next_meter = next((m["id"] for m in walk if m["state"] == "remaining"), None)
        return {"total": len(walk), **counts, "next_meter": next_meter}

    def find_meter(self, ref: str) -> dict[str, Any]:
        rows = self.store.rows("SELECT * FROM meters WHERE id = ? OR number = ?", [ref, ref])
        if not rows:
            raise NotFound(f"No meter {ref} on this handheld.")
        meter = rows[0]
        premise = self.store.get("premises", meter["premise_id"]) or {}
        meter["hazards"] = premise.get("hazards") or []
        meter["address"] = premise.get("address")
        return meter

    def _current_readings(self, route: Mapping[str, Any], meter_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Each meter's effective reading this cycle (or only `meter_id`'s): the latest one not superseded
        by another (a correction supersedes a reading of its own meter)."""
        since = route.get("cycle_start") or "0000"
        if meter_id is None:
            query, params = (
                """SELECT r.* FROM readings r JOIN meters m ON m.id = r.meter_id
                   WHERE m.route_id = ? AND r.read_at >= ? ORDER BY r.read_at, r.id""",
                [route["id"], since],
            )
        else:  # one meter: its index, not the whole route's cycle (every entry asks this)
            query, params = (
                "SELECT * FROM readings WHERE meter_id = ? AND read_at >= ? ORDER BY read_at, id",
                [meter_id, since],
            )
        rows = [decode("readings", r) for r in self.store.rows(query, params)]
        superseded = {r["supersedes"] for r in rows if r["supersedes"]}
        current: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["id"] not in superseded:
                current[row["meter_id"]] = row
        return current

    def current_reading(self, meter_id: str) -> dict[str, Any] | None:
        meter = self.find_meter(meter_id)
        route = self.store.get("routes", meter["route_id"]) if meter["route_id"] else None
        if route is None:
            return None
        return self._current_readings(route, meter["id"]).get(meter["id"])

    # --- entry --------------------------------------------------------------------------------------

    def check(self, meter_ref: str, value: int) -> Band:
        """The hi/lo check for `value` now (raises InvalidInput for a value the register cannot show)."""
        meter = self.find_meter(meter_ref)
        try:
            return expected_band(
                current=value,
                previous=meter["last_value"],
                previous_at_ms=_ms(meter["last_read_at"]),
                read_at_ms=int(self.now().timestamp() * 1000),
                dials=meter["dials"],
                multiplier=meter["multiplier"],
                avg_daily=meter["avg_daily"],
                low_factor=meter["low_factor"],
                high_factor=meter["high_factor"],
                previous_estimated=meter["last_read_type"] == "estimated",
            )
        except ReadingRuleError as exc:
            raise InvalidInput(str(exc), {"value": exc.rule}) from exc

    def expected_range(self, meter_ref: str) -> dict[str, Any] | None:
        """The register values the hi/lo check would accept today, for showing before entry:
        {"low": value, "high": value, "low_use": consumption, "high_use": consumption}; None without
        history. `low` > `high` means the range wraps past the register's rollover. `record` decides."""
        meter = self.find_meter(meter_ref)
        if meter["last_value"] is None:
            return None
        band = self.check(meter["id"], meter["last_value"])
        if band.low is None or band.high is None:
            return None
        limit = 10 ** meter["dials"]
        multiplier = meter["multiplier"] or 1.0
        return {
            "low": (meter["last_value"] + math.ceil(band.low / multiplier)) % limit,
            "high": (meter["last_value"] + math.floor(band.high / multiplier)) % limit,
            "low_use": band.low,
            "high_use": band.high,
        }

    def record(
        self,
        meter_ref: str,
        value: int,
        *,
        confirm: int | None = None,
        reading_type: str = "regular",
        comment_code: str | None = None,
        trouble_code: str | None = None,
        note: str | None = None,
        gps: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Record a value. Out of range: raises NeedsConfirmation unless `confirm` repeats the value
        (a verified read) or a remark (`comment_code`) explains it."""
        meter = self.find_meter(meter_ref)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInput("Enter the value as a whole number.", {"value": "not an integer"})
        if confirm is not None and confirm != value:
            raise InvalidInput("The two entries differ: enter the value again.", {"confirm": "differs"})
        self._check_codes(reading_type, comment_code, trouble_code, None)
        self._check_read_time(meter)  # a hard rule: never ask to confirm a value that cannot be recorded
        band = self.check(meter["id"], value)
        out_of_range = band.result in (CheckResult.LOW, CheckResult.HIGH)
        entries = 2 if confirm is not None else 1
        if out_of_range and confirm is None and comment_code is None:
            raise NeedsConfirmation(
                f"{value} is {'below' if band.result is CheckResult.LOW else 'above'} the expected range"
                f" ({band.low} to {band.high} used): enter it again to confirm, or pick a remark.",
                band,
            )
        if confirm is not None and reading_type == "regular":
            reading_type = "verified"
        check = _check_as_run(band, entries)
        return self._store(
            meter,
            value=value,
            reading_type=reading_type,
            comment_code=comment_code,
            trouble_code=trouble_code,
            note=note,
            gps=gps,
            check=check,
        )

    def skip(
        self,
        meter_ref: str,
        skip_code: str,
        *,
        trouble_code: str | None = None,
        note: str | None = None,
        gps: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Record that the meter could not be read, and why."""
        meter = self.find_meter(meter_ref)
        self._check_codes("regular", None, trouble_code, skip_code)
        return self._store(meter, value=None, skip_code=skip_code, trouble_code=trouble_code, note=note, gps=gps)

    def correct(self, reading_id: str, value: int, **kwargs: Any) -> dict[str, Any]:
        """A corrected value for an earlier reading: a new reading that supersedes it."""
        rows = self.store.rows("SELECT meter_id FROM readings WHERE id = ?", [reading_id])
        if not rows:
            raise NotFound(f"No reading {reading_id} on this handheld.")
        kwargs.setdefault("reading_type", "re_read")
        return self.record(rows[0]["meter_id"], value, **kwargs)

    def _check_codes(self, reading_type: str, comment: str | None, trouble: str | None, skip: str | None) -> None:
        for name, value, table in (
            ("reading_type", reading_type, READING_TYPES),
            ("comment_code", comment, COMMENT_CODES),
            ("trouble_code", trouble, TROUBLE_CODES),
            ("skip_code", skip, SKIP_CODES),
        ):
            if value is not None and value not in table:
                raise InvalidInput(f"Unknown {name.replace('_', ' ')}: {value}.", {name: "unknown"})

    def _check_read_time(self, meter: Mapping[str, Any]) -> None:
        """A reading is not dated before the meter's previous read (the device's clock is wrong)."""
        now_ms = int(self.now().timestamp() * 1000)
        try:
            check_read_time(now_ms, _ms(meter["last_read_at"]), now_ms, MAX_LOCAL_SKEW_MS)
        except ReadingRuleError as exc:
            raise InvalidInput(f"{exc} (check the handheld's date and time).", {"read_at": exc.rule}) from exc

    def _store(self, meter: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        note = fields.get("note")
        if note is not None and len(note) > 1000:
            raise InvalidInput("A reading note holds at most 1000 characters.", {"note": "too long"})
        now = self.now()
        self._check_read_time(meter)
        if fields.get("value") is not None:
            try:
                check_register_value(fields["value"], meter["dials"])
            except ReadingRuleError as exc:
                raise InvalidInput(str(exc), {"value": exc.rule}) from exc
        with self.store.transaction():
            previous = self.current_reading(meter["id"])
            data = {
                "meter_id": meter["id"],
                "value": fields.get("value"),
                "reading_type": fields.get("reading_type", "regular"),
                "skip_code": fields.get("skip_code"),
                "trouble_code": fields.get("trouble_code"),
                "comment_code": fields.get("comment_code"),
                "note": note,
                "read_at": iso(now),
                "supersedes": previous["id"] if previous else None,
                "gps": dict(fields["gps"]) if fields.get("gps") else None,
                "check": fields.get("check"),
            }
            if previous and previous["value"] is not None and data["reading_type"] == "regular":
                data["reading_type"] = "re_read"
            stamp = self.clock.now()
            reading_id = fact_id("MR", stamp)
            enqueue(self.store, self.clock, "meter_reading", reading_id, data, stamp=stamp)
            row = {
                "id": reading_id,
                **data,
                "reader_id": self.store.meta("user_id"),
                "received_at": None,
                "flags": [],
                "pending": 1,
            }
            self.store.upsert("readings", row)
        return row
