"""Applying pulled pages and settling push answers in batches: what the batching must not change, and what
it keeps (a record the handheld cannot read is left out and reported, the rest stored)."""

from __future__ import annotations

from collections.abc import Callable

from pda_client import Handheld
from pda_client.sync import SyncEngine
from tests.client.conftest import NOW, FakeClock
from tests.client.loopback import PULL, PUSH, Loopback, Reply, Seen, str_stamp
from tests.client.scope import customer, premise, reading_record, removal, stamp

MakeEngine = Callable[..., SyncEngine]


def test_a_record_the_handheld_cannot_read_is_left_out_and_reported_and_the_rest_of_the_page_stored(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine
) -> None:
    bad = reading_record("MR-bad", "M-1", 12_400, NOW, stamp(NOW))
    bad["data"]["value"] = 12_400.5  # an integer field: refused, never truncated
    page = [customer("C-8", "Mei Zhang"), bad, premise("P-8", "C-8", "8 Harbour St")]
    server.script(PULL, server.page(page, "c-1"))

    engine = make_engine()
    engine.run()

    (message,) = [m for m in engine.report.messages if "MR-bad" in m]
    assert "meter_reading" in message and "data.value" in message
    assert handheld.store.get("readings", "MR-bad") is None
    assert handheld.store.get("customers", "C-8")["name"] == "Mei Zhang"  # before and after it in the page
    assert handheld.store.get("premises", "P-8") is not None
    assert handheld.store.meta("cursor") == "c-1"


def test_an_upsert_replaces_the_row_and_a_removal_after_it_in_the_page_wins(
    handheld: Handheld, pull: Callable[..., SyncEngine]
) -> None:
    pull(customer("C-1", "Ann Lee-Wong", vip=True), customer("C-3", "Bo Chen"), removal("customer", "C-3"))
    row = handheld.store.get("customers", "C-1")
    assert (row["name"], row["vip"], row["segment"]) == ("Ann Lee-Wong", 1, "standard")
    assert handheld.store.get("customers", "C-3") is None


def test_many_readings_in_one_page_are_all_stored_as_sent(handheld: Handheld, pull: Callable[..., SyncEngine]) -> None:
    records = [reading_record(f"MR-{n:03d}", "M-1", 12_000 + n, NOW, stamp(NOW, n)) for n in range(250)]
    engine = pull(*records)
    assert engine.report.pulled == 250
    stored = handheld.store.rows(
        "SELECT id, value, hlc, pending FROM readings WHERE id GLOB 'MR-[0-9][0-9][0-9]' ORDER BY id"
    )
    assert [(r["id"], r["value"], r["hlc"], r["pending"]) for r in stored] == [
        (f"MR-{n:03d}", 12_000 + n, stamp(NOW, n), 0) for n in range(250)
    ]


def test_a_settled_batch_journals_the_acknowledged_releases_all_and_keeps_the_rejected_apart(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    readings = []
    for number, value in (("A0001", 12_300), ("A0002", 120), ("A0004", 5_300)):
        readings.append(handheld.readings.record(number, value)["id"])
        clock.advance(seconds=30)
    first, refused, last = readings

    def answer(seen: Seen) -> Reply:
        return server.results(
            seen,
            **{
                refused: {"status": "rejected", "hlc": None, "error": {"code": "reading_invalid", "message": "no"}},
                last: {"flags": ["clock_skew"]},
            },
        )

    server.handlers[PUSH] = answer
    report = make_engine().run()

    assert (report.pushed, report.applied, report.rejected) == (3, 2, 1)
    assert handheld.outbox() == []
    assert {r["change_id"] for r in handheld.store.rows("SELECT change_id FROM journal")} == {first, last}
    assert handheld.store.meta("last_ack") == last  # the newest acknowledged change of the batch
    assert [r["change_id"] for r in handheld.rejected()] == [refused]
    assert handheld.store.get("readings", refused) is None  # it lives on in `rejected`, with its payload
    settled = handheld.store.get("readings", last)
    assert (settled["pending"], settled["flags"]) == (0, ["clock_skew"])
    assert settled["hlc"] == str_stamp(clock.ms, 2)  # the stamp the server stored, as it answered
    assert handheld.store.get("readings", first)["pending"] == 0
