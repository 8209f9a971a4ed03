"""Values for the reading tests, worked out through the client core (never through the UI)."""

from __future__ import annotations

from typing import Any

from pda_client import Handheld
from sync_protocol.readings import CheckResult


def digits(value: int, dials: int) -> str:
    """What a reader types: every dial, leading zeros included."""
    return f"{value:0{dials}d}"


def in_range_value(handheld: Handheld, meter_id: str) -> int:
    meter = handheld.readings.find_meter(meter_id)
    expected = handheld.readings.expected_range(meter_id)
    limit = 10 ** meter["dials"]
    value = (expected["low"] + ((expected["high"] - expected["low"]) % limit) // 2) % limit
    assert handheld.readings.check(meter_id, value).result is CheckResult.IN_RANGE
    return value


def out_of_range_value(handheld: Handheld, meter_id: str) -> int:
    meter = handheld.readings.find_meter(meter_id)
    expected = handheld.readings.expected_range(meter_id)
    limit = 10 ** meter["dials"]
    span = (expected["high"] - expected["low"]) % limit
    value = (expected["high"] + max(10, span)) % limit
    assert handheld.readings.check(meter_id, value).result in (CheckResult.LOW, CheckResult.HIGH)
    return value


def remaining(handheld: Handheld) -> list[dict[str, Any]]:
    route = handheld.readings.routes()[0]
    return [m for m in handheld.readings.walk(route["id"]) if m["state"] == "remaining"]
