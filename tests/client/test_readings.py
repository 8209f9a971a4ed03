"""Meter reading on the handheld: the hi/lo check, rollover, skips, re-reads and route progress.

The scope's meters were last read 30 days ago with an average of 10 units a day: expected use 300,
band [150, 600] (residential factors 0.5 and 2.0). M-2 stands at 99 900 with multiplier 2, M-3's last
read was an estimate, M-4 has four dials and a dog.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pda_client import Handheld
from pda_client.errors import InvalidInput, NeedsConfirmation, NotFound
from pda_client.readings import Readings
from sync_protocol import load_change
from sync_protocol.readings import CheckResult
from tests.client.conftest import FakeClock
from tests.client.scope import Scope


def table_counts(handheld: Handheld) -> tuple[int, int]:
    db = handheld.store.db
    return (
        db.execute("SELECT COUNT(*) FROM readings").fetchone()[0],
        db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
    )


def queued(handheld: Handheld) -> list[dict[str, Any]]:
    return [entry["payload"] for entry in handheld.outbox()]


# --- the hi/lo check --------------------------------------------------------------------------------------


def test_value_in_range_is_recorded_as_a_regular_read(handheld: Handheld) -> None:
    reading = handheld.readings.record("A0001", 12_300)

    assert reading["reading_type"] == "regular"
    assert reading["check"] == {
        "result": "in_range",
        "consumption": 300.0,
        "expected": 300.0,
        "low": 150,
        "high": 600,
        "rollover": False,
        "entries": 1,
    }
    (change,) = queued(handheld)
    assert (change["entity"], change["entity_id"]) == ("meter_reading", reading["id"])
    assert change["data"]["value"] == 12_300
    assert handheld.store.get("readings", reading["id"])["pending"] == 1


def test_value_out_of_range_needs_confirmation_and_writes_nothing(handheld: Handheld) -> None:
    with pytest.raises(NeedsConfirmation) as asked:
        handheld.readings.record("A0001", 13_000)

    band = asked.value.band
    assert (band.result, band.low, band.high, band.consumption) == (CheckResult.HIGH, 150, 600, 1000.0)
    assert "above the expected range (150 to 600" in asked.value.message
    assert table_counts(handheld) == (0, 0)


def test_value_below_range_needs_confirmation_too(handheld: Handheld) -> None:
    with pytest.raises(NeedsConfirmation) as asked:
        handheld.readings.record("A0001", 12_100)
    assert asked.value.band.result is CheckResult.LOW
    assert "below" in asked.value.message


def test_out_of_range_value_entered_twice_is_a_verified_read(handheld: Handheld) -> None:
    reading = handheld.readings.record("A0001", 13_000, confirm=13_000)
    assert reading["reading_type"] == "verified"
    assert reading["check"]["result"] == "high"
    assert reading["check"]["entries"] == 2


def test_second_entry_that_differs_is_refused(handheld: Handheld) -> None:
    with pytest.raises(InvalidInput, match="differ"):
        handheld.readings.record("A0001", 13_000, confirm=13_001)
    assert table_counts(handheld) == (0, 0)


def test_out_of_range_value_with_a_remark_is_accepted_as_regular(handheld: Handheld) -> None:
    reading = handheld.readings.record("A0001", 13_000, comment_code="high_use_confirmed")
    assert reading["reading_type"] == "regular"
    assert reading["comment_code"] == "high_use_confirmed"
    assert (reading["check"]["result"], reading["check"]["entries"]) == ("high", 1)


def test_unknown_remark_is_refused(handheld: Handheld) -> None:
    with pytest.raises(InvalidInput, match="comment code"):
        handheld.readings.record("A0001", 13_000, comment_code="looks_fine")
    assert table_counts(handheld) == (0, 0)


# --- register rules -----------------------------------------------------------------------------------------


def test_rollover_counts_from_the_register_limit_times_the_multiplier(handheld: Handheld) -> None:
    reading = handheld.readings.record("A0002", 120)
    assert reading["check"]["rollover"] is True
    assert reading["check"]["consumption"] == 220 * 2.0
    assert reading["check"]["result"] == "in_range"


def test_lower_value_after_an_estimated_read_is_not_a_rollover(handheld: Handheld) -> None:
    with pytest.raises(NeedsConfirmation) as asked:
        handheld.readings.record("A0003", 49_000)
    assert asked.value.band.rollover is False
    assert asked.value.band.consumption == -1000.0
    assert asked.value.band.result is CheckResult.LOW

    reading = handheld.readings.record("A0003", 49_000, confirm=49_000)
    assert (reading["check"]["rollover"], reading["check"]["consumption"]) == (False, -1000.0)


@pytest.mark.parametrize("value", [10_000, 123_456, -1])
def test_value_the_dials_cannot_show_is_refused(handheld: Handheld, value: int) -> None:
    with pytest.raises(InvalidInput, match="4-dial register reads 0 to 9999"):
        handheld.readings.record("A0004", value, confirm=value)
    assert table_counts(handheld) == (0, 0)


def test_value_must_be_a_whole_number(handheld: Handheld) -> None:
    with pytest.raises(InvalidInput, match="whole number"):
        handheld.readings.record("A0001", 12_300.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="whole number"):
        handheld.readings.record("A0001", True)  # type: ignore[arg-type]


def test_reading_is_refused_when_the_device_clock_is_before_the_previous_read(
    handheld: Handheld, clock: FakeClock, scope: Scope
) -> None:
    clock.set(scope.last_read_at - dt.timedelta(days=1))
    for attempt in ({}, {"confirm": 12_300}, {"comment_code": "check_next_cycle"}):
        with pytest.raises(InvalidInput, match=r"before the previous read.*date and time"):
            handheld.readings.record("A0001", 12_300, **attempt)
    with pytest.raises(InvalidInput, match="before the previous read"):
        handheld.readings.skip("A0001", "locked_gate")
    assert table_counts(handheld) == (0, 0)


def test_reading_at_the_previous_reads_moment_is_accepted(handheld: Handheld, clock: FakeClock, scope: Scope) -> None:
    clock.set(scope.last_read_at)
    reading = handheld.readings.record("A0001", 12_000)
    assert reading["check"]["consumption"] == 0.0


# --- skips --------------------------------------------------------------------------------------------------


def test_skip_records_the_reason_and_no_value(handheld: Handheld) -> None:
    reading = handheld.readings.skip("A0004", "dog", trouble_code="seal_missing", note="Big dog behind the gate")
    assert (reading["value"], reading["skip_code"], reading["trouble_code"]) == (None, "dog", "seal_missing")
    assert reading["check"] is None
    (change,) = queued(handheld)
    assert change["data"]["skip_code"] == "dog"


def test_skip_with_an_unknown_code_is_refused(handheld: Handheld) -> None:
    with pytest.raises(InvalidInput, match="Unknown skip code: alien"):
        handheld.readings.skip("A0004", "alien")
    with pytest.raises(InvalidInput, match="trouble code"):
        handheld.readings.skip("A0004", "dog", trouble_code="gremlins")
    assert table_counts(handheld) == (0, 0)


def test_reading_note_longer_than_the_wire_allows_is_refused(handheld: Handheld) -> None:
    with pytest.raises(InvalidInput, match="1000 characters"):
        handheld.readings.skip("A0004", "dog", note="n" * 1001)
    assert table_counts(handheld) == (0, 0)


# --- re-reads and progress ----------------------------------------------------------------------------------


def test_reading_a_meter_again_supersedes_the_earlier_reading(handheld: Handheld, clock: FakeClock) -> None:
    first = handheld.readings.record("A0001", 12_300)
    clock.advance(minutes=3)
    second = handheld.readings.record("A0001", 12_310)

    assert second["supersedes"] == first["id"]
    assert second["reading_type"] == "re_read"
    walk = {m["id"]: m for m in handheld.readings.walk("R-1")}
    assert walk["M-1"]["reading"]["id"] == second["id"]
    assert walk["M-1"]["reading"]["value"] == 12_310
    assert handheld.readings.progress("R-1")["read"] == 1
    # nothing is overwritten: both readings are kept and both are queued
    assert table_counts(handheld) == (2, 2)
    assert handheld.store.get("readings", first["id"])["value"] == 12_300


def test_a_read_after_a_skip_supersedes_the_skip(handheld: Handheld, clock: FakeClock) -> None:
    skip = handheld.readings.skip("A0004", "dog")
    clock.advance(minutes=20)
    read = handheld.readings.record("A0004", 5_300)
    assert read["supersedes"] == skip["id"]
    assert handheld.readings.progress("R-1")["skipped"] == 0
    assert handheld.readings.progress("R-1")["read"] == 1


def test_correction_is_a_re_read_of_the_same_meter(handheld: Handheld, clock: FakeClock) -> None:
    first = handheld.readings.record("A0001", 12_300)
    clock.advance(minutes=1)
    corrected = handheld.readings.correct(first["id"], 12_301)
    assert corrected["meter_id"] == "M-1"
    assert (corrected["supersedes"], corrected["reading_type"]) == (first["id"], "re_read")
    with pytest.raises(NotFound):
        handheld.readings.correct("MR-missing", 1)


def test_progress_counts_in_walk_order_and_points_to_the_next_meter(handheld: Handheld, clock: FakeClock) -> None:
    readings = handheld.readings
    assert readings.progress("R-1") == {"total": 4, "read": 0, "skipped": 0, "remaining": 4, "next_meter": "M-1"}

    readings.record("A0001", 12_300)
    clock.advance(minutes=5)
    readings.skip("A0003", "locked_gate")
    assert readings.progress("R-1") == {"total": 4, "read": 1, "skipped": 1, "remaining": 2, "next_meter": "M-2"}
    assert [m["state"] for m in readings.walk("R-1")] == ["read", "remaining", "skipped", "remaining"]

    clock.advance(minutes=5)
    readings.record("A0002", 120)
    assert readings.progress("R-1")["next_meter"] == "M-4"
    clock.advance(minutes=5)
    readings.record("A0004", 5_300)
    assert readings.progress("R-1") == {"total": 4, "read": 3, "skipped": 1, "remaining": 0, "next_meter": None}


def test_walk_shows_hazards_before_arrival(handheld: Handheld) -> None:
    walk = handheld.readings.walk("R-1")
    assert [(m["number"], m["hazards"]) for m in walk] == [
        ("A0001", []),
        ("A0002", []),
        ("A0003", []),
        ("A0004", ["dog"]),
    ]
    assert handheld.readings.find_meter("A0004")["hazards"] == ["dog"]


def test_unknown_meter_or_route_is_not_found(handheld: Handheld) -> None:
    with pytest.raises(NotFound, match="A9999"):
        handheld.readings.record("A9999", 1)
    with pytest.raises(NotFound, match="R-9"):
        handheld.readings.walk("R-9")


# --- what is queued -----------------------------------------------------------------------------------------


def test_every_queued_reading_passes_the_wire_schema(handheld: Handheld, clock: FakeClock) -> None:
    handheld.readings.record("A0001", 12_300)
    clock.advance(minutes=1)
    handheld.readings.record("A0001", 13_000, confirm=13_000, gps={"lat": 23.1, "lon": 113.3})
    clock.advance(minutes=1)
    handheld.readings.skip("A0004", "dog", note="barking")
    clock.advance(minutes=1)
    handheld.readings.record("A0002", 120, trouble_code="seal_missing")

    changes = [load_change(change) for change in queued(handheld)]
    assert [c.data["reading_type"] for c in changes] == ["regular", "verified", "regular", "regular"]
    assert changes[1].data["supersedes"] == changes[0].entity_id
    assert [c.hlc for c in changes] == sorted(c.hlc for c in changes)


def test_reading_and_its_outbox_entry_are_written_in_one_transaction(
    handheld: Handheld, monkeypatch: pytest.MonkeyPatch
) -> None:
    def battery_dies(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("battery died")

    monkeypatch.setattr(handheld.store, "upsert", battery_dies)  # after the outbox entry, before the row
    with pytest.raises(KeyboardInterrupt):
        handheld.readings.record("A0001", 12_300)
    monkeypatch.undo()
    assert table_counts(handheld) == (0, 0)


def test_readings_now_is_injectable(handheld: Handheld) -> None:
    moment = dt.datetime(2025, 6, 16, 10, 0, 0, 250000, tzinfo=dt.UTC)
    readings = Readings(handheld.store, handheld.clock, now=lambda: moment)
    assert readings.record("A0001", 12_300)["read_at"] == "2025-06-16T10:00:00.250Z"
