"""A push batch is applied as one unit of work: its records are loaded with a few queries and written with
one statement per table, while every change keeps its own outcome (DESIGN.md invariants 2 and 10)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from server.extensions import db
from server.models import ChangeLog, ChangeReceipt, Job, JobEvent, MeterReading
from sync_protocol import HLC
from tests.server.helpers import counts, device, rejected, table_dump
from tests.server.test_sync_push import get, push_results

EFFECT_TABLES = ("meter_readings", "job_events", "change_receipts", "change_log", "conflicts")


@contextlib.contextmanager
def statements(app) -> Iterator[list[str]]:
    """The SQL statements sent to the database meanwhile (an executemany counts once)."""
    seen: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def readings_of(handheld, meters: list[str], n: int) -> list[dict]:
    return [handheld.reading(meters[i % len(meters)], 1300 + i) for i in range(n)]


def stored_ids(app, model) -> set[str]:
    with app.app_context():
        return set(db.session.execute(sa.select(model.id)).scalars())


# --- one unit of work -----------------------------------------------------------------------------


def test_statements_per_batch_do_not_grow_with_its_size(app, client, world):
    reader = device(app, client, "reader")
    small, large = readings_of(reader, world.meters, 4), readings_of(reader, world.meters, 60)
    with statements(app) as few:
        push_results(reader, *small)
    with statements(app) as many:
        push_results(reader, *large)
    assert len(stored_ids(app, MeterReading)) == 64
    assert len(many) == len(few), many


def test_corrections_load_their_targets_together(app, client, world):
    reader = device(app, client, "reader")
    firsts = readings_of(reader, world.meters, 4)
    push_results(reader, *firsts)
    corrections = [
        reader.reading(first["data"]["meter_id"], 1400, supersedes=first["entity_id"], reading_type="re_read")
        for first in firsts
    ]
    with statements(app) as seen:
        assert {r["status"] for r in push_results(reader, *corrections)} == {"applied"}
    reading_selects = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "meter_readings" in s]
    assert len(reading_selects) <= 2, reading_selects  # the targets, then their current correctors
    for first, correction in zip(firsts, corrections, strict=True):
        assert get(app, MeterReading, first["entity_id"]).superseded_by == correction["entity_id"]


# --- per-change outcomes --------------------------------------------------------------------------


def test_mixed_batch_rejects_each_bad_change_alone(app, client, world):
    reader = device(app, client, "reader")
    good = [reader.reading("M1", 1300), reader.reading("M2", 1290), reader.reading("M4", 1100)]
    invalid = reader.reading("M1", 1310)
    invalid["data"]["value"] = "ninety"
    unknown_meter = reader.reading("M-nope", 1300)
    other_route = reader.reading("M5", 1300)
    beyond_register = reader.reading("M3", 100_000)
    unknown_target = reader.reading("M2", 1295, supersedes="MR-nope")
    batch = [good[0], invalid, unknown_meter, good[1], other_route, beyond_register, unknown_target, good[2]]
    results = push_results(reader, *batch)
    assert [r["status"] for r in results] == ["applied", "rejected", "rejected", "applied"] + ["rejected"] * 3 + [
        "applied"
    ]
    rejected(results[1], "validation_error")
    rejected(results[2], "not_found_record")
    rejected(results[4], "not_in_scope")
    assert rejected(results[5], "reading_invalid")["fields"] == {"data": ["value_out_of_register"]}
    assert "data.supersedes" in rejected(results[6], "reading_invalid")["fields"]
    assert stored_ids(app, MeterReading) == {c["entity_id"] for c in good}
    with app.app_context():
        receipts = dict(db.session.execute(sa.select(ChangeReceipt.change_id, ChangeReceipt.status)).all())
        logged = set(db.session.execute(sa.select(ChangeLog.entity_id)).scalars())
    assert receipts == {c["change_id"]: r["status"] for c, r in zip(batch, results, strict=True)}
    assert {c["entity_id"] for c in good} <= logged
    assert not {c["entity_id"] for c in batch if c not in good} & logged


def test_readings_and_job_events_share_a_batch(app, client, world):
    lineman = device(app, client, "lineman")
    job = world.jobs["outage"]
    en_route, on_site = lineman.status(job, "en_route"), lineman.status(job, "on_site")
    note = lineman.note(job, "pole is cracked")
    elsewhere = lineman.status(world.jobs["other"], "en_route")  # lineman2's job
    results = push_results(lineman, en_route, note, elsewhere, on_site)
    assert [r["status"] for r in results] == ["applied", "applied", "rejected", "applied"]
    rejected(results[2], "not_in_scope")
    assert get(app, Job, job).status == "on_site"
    assert stored_ids(app, JobEvent) >= {en_route["entity_id"], note["entity_id"], on_site["entity_id"]}
    assert get(app, JobEvent, elsewhere["entity_id"]) is None


# --- corrections within one batch -----------------------------------------------------------------


def test_chain_of_corrections_within_one_batch(app, client, world):
    reader = device(app, client, "reader")
    first = reader.reading("M1", 1300)
    second = reader.reading("M1", 1310, supersedes=first["entity_id"], reading_type="re_read")
    third = reader.reading("M1", 1320, supersedes=second["entity_id"], reading_type="re_read")
    assert [r["status"] for r in push_results(reader, first, second, third)] == ["applied"] * 3
    assert get(app, MeterReading, first["entity_id"]).superseded_by == second["entity_id"]
    assert get(app, MeterReading, second["entity_id"]).superseded_by == third["entity_id"]
    assert get(app, MeterReading, third["entity_id"]).superseded_by is None


def test_correction_of_a_stored_reading_extended_within_the_batch(app, client, world):
    reader = device(app, client, "reader")
    first = reader.reading("M1", 1300)
    push_results(reader, first)
    second = reader.reading("M1", 1310, supersedes=first["entity_id"], reading_type="re_read")
    third = reader.reading("M1", 1320, supersedes=second["entity_id"], reading_type="re_read")
    push_results(reader, second, third)
    assert get(app, MeterReading, first["entity_id"]).superseded_by == second["entity_id"]
    assert get(app, MeterReading, second["entity_id"]).superseded_by == third["entity_id"]


def test_competing_corrections_in_one_batch_the_later_stamp_wins(app, client, world):
    reader = device(app, client, "reader")
    first = reader.reading("M1", 1300)
    push_results(reader, first)
    later = reader.reading("M1", 1320, supersedes=first["entity_id"], reading_type="re_read")
    earlier = reader.reading("M1", 1310, supersedes=first["entity_id"], reading_type="re_read")
    stamp = HLC.parse(later["hlc"])
    earlier["hlc"] = str(HLC(stamp.wall_ms - 1000, 0, stamp.node))
    assert [r["status"] for r in push_results(reader, later, earlier)] == ["applied", "applied"]
    assert get(app, MeterReading, first["entity_id"]).superseded_by == later["entity_id"]


def test_correction_of_a_reading_later_in_the_batch_or_rejected_in_it_is_refused(app, client, world):
    reader = device(app, client, "reader")
    bad = reader.reading("M2", 100_000)  # beyond the register: rejected
    of_bad = reader.reading("M2", 1300, supersedes=bad["entity_id"])
    target = reader.reading("M1", 1300)
    too_early = reader.reading("M1", 1310, supersedes=target["entity_id"])
    results = push_results(reader, bad, of_bad, too_early, target)
    assert [r["status"] for r in results] == ["rejected", "rejected", "rejected", "applied"]
    assert "data.supersedes" in rejected(results[1], "reading_invalid")["fields"]
    assert "data.supersedes" in rejected(results[2], "reading_invalid")["fields"]
    assert get(app, MeterReading, target["entity_id"]).superseded_by is None


# --- replays --------------------------------------------------------------------------------------


def test_replayed_batch_mixed_with_new_changes(app, client, world):
    reader = device(app, client, "reader")
    first = [reader.reading("M1", 1300), reader.reading("M9", 1300)]
    original = push_results(reader, *first)
    assert [r["status"] for r in original] == ["applied", "rejected"]
    before = counts(app, *EFFECT_TABLES)
    fresh = reader.reading("M1", 1310, supersedes=first[0]["entity_id"])
    again = push_results(reader, *first, fresh)
    assert again[:2] == original  # the stored answers, the refusal included
    assert again[2]["status"] == "applied"
    after = counts(app, *EFFECT_TABLES)
    assert after["change_receipts"] == before["change_receipts"] + 1
    assert after["meter_readings"] == before["meter_readings"] + 1


def test_replay_of_a_whole_batch_writes_nothing(app, client, world):
    reader = device(app, client, "reader")
    first = reader.reading("M1", 1300)
    batch = [first, reader.reading("M1", 1310, supersedes=first["entity_id"]), reader.reading("M2", 1290)]
    original = push_results(reader, *batch)
    before = table_dump(app, exclude={"devices"})
    assert push_results(reader, *batch) == original
    assert table_dump(app, exclude={"devices"}) == before


def test_same_reading_twice_in_one_batch(app, client, world):
    reader = device(app, client, "reader")
    original = reader.reading("M1", 1300)
    resent = {**original, "change_id": "resent-" + original["change_id"][:20]}
    altered = {**original, "change_id": "altered-" + original["change_id"][:20]}
    altered["data"] = {**original["data"], "value": 1400}
    first, same, other = push_results(reader, original, resent, altered)
    assert first["status"] == same["status"] == "applied"
    assert same["hlc"] == first["hlc"]  # the stored reading's stamp
    rejected(other, "id_reuse")
    with app.app_context():
        values = db.session.execute(sa.select(MeterReading.value).where(MeterReading.id == original["entity_id"]))
        assert values.scalars().all() == [1300]


def test_reused_change_id_in_a_later_batch_is_refused_beside_good_changes(app, client, world):
    reader = device(app, client, "reader")
    original = reader.reading("M1", 1300)
    push_results(reader, original)
    altered = {**original, "data": {**original["data"], "value": 1400}}
    good = reader.reading("M2", 1290)
    reused, applied = push_results(reader, altered, good)
    rejected(reused, "id_reuse")
    assert applied["status"] == "applied"
    assert get(app, MeterReading, original["entity_id"]).value == 1300
    assert get(app, ChangeReceipt, original["change_id"]).status == "applied"
