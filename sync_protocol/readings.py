"""Meter-reading rules shared by the handheld (at entry) and the server (on receipt and in reports).

Conventions (docs/protocol.md, "Meter readings"):
- Register values are whole numbers of the meter's dials, 0 <= value < 10**dials.
- Consumption = (current - previous) x multiplier. A lower value after an *actual* previous read is a
  rollover: (10**dials - previous) + current. After an *estimated* previous read it is not a rollover:
  the estimate was too high and the consumption is negative.
- Expected-range ("hi/lo") check: expected = average daily consumption x days since the previous actual
  read; the consumption must lie in [floor(expected x low_factor), ceil(expected x high_factor)], the
  whole-unit bounds stored with the check. A value outside the band is never refused: the reader
  re-enters it (two equal entries make a verified read) or picks a remark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

MS_PER_DAY = 86_400_000
ACTUAL_TYPES = frozenset({"regular", "verified", "customer_read", "re_read"})

# Default (low, high) factors by meter class; the server may configure others per class.
DEFAULT_FACTORS: dict[str, tuple[float, float]] = {
    "residential": (0.5, 2.0),
    "commercial": (0.6, 1.6),
    "industrial": (0.7, 1.4),
}


class CheckResult(StrEnum):
    IN_RANGE = "in_range"
    LOW = "low"
    HIGH = "high"
    NO_HISTORY = "no_history"  # no previous actual read or no average: nothing to compare with


class ReadingRuleError(ValueError):
    """A reading that breaks a hard rule (these are refused, unlike out-of-band values)."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(message)


@dataclass(frozen=True)
class Band:
    result: CheckResult
    consumption: float | None
    expected: float | None
    low: float | None  # consumption bounds
    high: float | None
    rollover: bool = False


def register_limit(dials: int) -> int:
    return 10**dials


def check_register_value(value: int, dials: int) -> None:
    if not 0 <= value < register_limit(dials):
        raise ReadingRuleError(
            "value_out_of_register", f"a {dials}-dial register reads 0 to {register_limit(dials) - 1}"
        )


def consumption(
    previous: int, current: int, dials: int, multiplier: float = 1.0, previous_estimated: bool = False
) -> tuple[float, bool]:
    """(consumption, rolled_over) between two register values, by the convention above."""
    if current >= previous or previous_estimated:
        return (current - previous) * multiplier, False
    return (register_limit(dials) - previous + current) * multiplier, True


def expected_band(
    *,
    current: int,
    previous: int | None,
    previous_at_ms: int | None,
    read_at_ms: int,
    dials: int,
    multiplier: float,
    avg_daily: float | None,
    low_factor: float,
    high_factor: float,
    previous_estimated: bool = False,
) -> Band:
    """Run the hi/lo check of `current` against the previous read."""
    check_register_value(current, dials)
    if previous is None or previous_at_ms is None:
        return Band(CheckResult.NO_HISTORY, None, None, None, None)
    used, rolled = consumption(previous, current, dials, multiplier, previous_estimated)
    if not avg_daily or avg_daily <= 0:
        return Band(CheckResult.NO_HISTORY, used, None, None, None, rolled)
    days = max(read_at_ms - previous_at_ms, 0) / MS_PER_DAY
    expected = avg_daily * days
    # Compare with the whole-unit bounds that are shown and stored with the check, so the stored
    # result never contradicts them (e.g. expected 1, band [0.5, 2] shown as 0..2: 0 is in range).
    low, high = math.floor(expected * low_factor), math.ceil(expected * high_factor)
    if used < low:
        result = CheckResult.LOW
    elif used > high:
        result = CheckResult.HIGH
    else:
        result = CheckResult.IN_RANGE
    return Band(result, used, expected, low, high, rolled)


def check_read_time(
    read_at_ms: int, previous_at_ms: int | None, now_ms: int, max_skew_ms: int
) -> None:
    """A reading is not dated before the previous one, nor in the future beyond the allowed skew."""
    if read_at_ms > now_ms + max_skew_ms:
        raise ReadingRuleError("read_in_future", "the reading is dated in the future: check the clock")
    if previous_at_ms is not None and read_at_ms < previous_at_ms:
        raise ReadingRuleError("read_before_previous", "the reading is dated before the previous read")


def check_skip_or_value(value: int | None, skip_code: str | None) -> None:
    """Exactly one of a value or a skip code."""
    if (value is None) == (skip_code is None):
        raise ReadingRuleError("value_or_skip", "a reading has either a value or a skip code")
