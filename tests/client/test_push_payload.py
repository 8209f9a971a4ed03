"""What a handheld sends up: compact changes (fields equal to the server's defaults left out), a fact's
own id as its change id, the check to the precision the office shows. The same change to the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pda_client import Handheld
from sync_protocol import load_change
from sync_protocol.schemas import MeterReadingDataSchema
from tests.client.conftest import FakeClock
from tests.e2e.conftest import LiveServer, start_server
from tests.e2e.test_handheld_sync import handheld as enrolled_handheld
from tests.e2e.test_handheld_sync import server_rows


def queued(handheld: Handheld) -> list[dict]:
    return [entry["payload"] for entry in handheld.outbox()]


def test_a_reading_is_queued_without_the_fields_the_server_fills_in(handheld: Handheld) -> None:
    reading = handheld.readings.record("A0001", 12_300)
    (change,) = queued(handheld)
    assert change["data"] == {
        "meter_id": "M-1",
        "value": 12_300,
        "read_at": reading["read_at"],
        "check": reading["check"],
    }
    full = {name: reading[name] for name in MeterReadingDataSchema().fields}  # the same reading, every field
    assert load_change(change).fingerprint() == load_change({**change, "data": full}).fingerprint()


def test_a_fact_is_its_own_change_and_its_id_is_its_stamp(handheld: Handheld, clock: FakeClock) -> None:
    reading = handheld.readings.record("A0001", 12_300)
    clock.advance(seconds=5)
    note = handheld.jobs.add_note("J-1001", "Transformer humming")
    reading_change, note_change = queued(handheld)
    assert reading_change["change_id"] == reading_change["entity_id"] == reading["id"] == f"MR-{reading_change['hlc']}"
    assert note_change["change_id"] == note_change["entity_id"] == note["id"] == f"E-{note_change['hlc']}"


def test_a_correction_is_a_new_fact_with_its_own_change_id(handheld: Handheld, clock: FakeClock) -> None:
    first = handheld.readings.record("A0001", 12_300)
    clock.advance(minutes=2)
    second = handheld.readings.correct(first["id"], 12_310)
    ids = [change["change_id"] for change in queued(handheld)]
    assert ids == [first["id"], second["id"]] and first["id"] != second["id"]
    assert second["supersedes"] == first["id"]


def test_the_check_keeps_expected_use_to_the_tenth_the_office_shows(handheld: Handheld) -> None:
    check = handheld.readings.record("A0001", 12_300)["check"]
    assert check["expected"] == round(check["expected"], 1)
    assert isinstance(check["low"], int) and isinstance(check["high"], int)


def test_a_job_edit_keeps_an_explicit_none_it_means_to_send(handheld: Handheld) -> None:
    handheld.jobs.edit("J-1001", cause=None, contact_name="Ann")
    (change,) = queued(handheld)
    assert change["data"] == {"cause": None, "contact_name": "Ann"}
    assert change["change_id"] != change["entity_id"]  # a job is not a fact: every edit has its own id


# --- against the real server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(tmp_path_factory.mktemp("payload-live"), "sqlite") as server:
        yield server


@pytest.mark.e2e
def test_compact_readings_reach_the_server_whole_and_come_back_to_another_handheld(
    live: LiveServer, tmp_path: Path
) -> None:
    sender = enrolled_handheld(live, tmp_path, "reader1", "sender")
    receiver = enrolled_handheld(live, tmp_path, "reader1", "receiver")
    try:
        sender.sync()
        route = sender.readings.routes()[0]["id"]
        first, second, third = [m for m in sender.readings.walk(route) if m["state"] == "remaining"][:3]
        band = sender.readings.expected_range(first["id"])
        read = sender.readings.record(first["id"], band["low"], note="meter behind the shed")
        corrected = sender.readings.correct(read["id"], band["high"])
        skipped = sender.readings.skip(second["id"], "locked_gate", trouble_code=None)
        report = sender.sync()
        assert (report.pushed, report.rejected) == (3, 0)

        rows = server_rows(
            live,
            "SELECT id, meter_id, value, reading_type, skip_code, trouble_code, comment_code, note, supersedes, gps,"
            " [check] AS chk FROM meter_readings WHERE device_id = :d ORDER BY id",
            d=sender.store.meta("device_id"),
        )
        by_id = {row["id"]: row for row in rows}
        assert set(by_id) == {read["id"], corrected["id"], skipped["id"]}
        for local in (read, corrected, skipped):
            row = by_id[local["id"]]
            for name in ("meter_id", "value", "reading_type", "skip_code", "trouble_code", "comment_code", "note"):
                assert row[name] == local[name], (local["id"], name)
            assert row["supersedes"] == local["supersedes"]
        assert by_id[corrected["id"]]["reading_type"] == "re_read"

        receiver.sync()
        for local in (read, corrected, skipped):
            pulled = receiver.store.get("readings", local["id"])
            for name in ("value", "reading_type", "skip_code", "note", "supersedes", "read_at"):
                assert pulled[name] == local[name], (local["id"], name)
            if local["check"] is not None:
                assert pulled["check"] == local["check"]  # as the device ran it
        assert third["id"] not in {r["meter_id"] for r in rows}
    finally:
        sender.close()
        receiver.close()
