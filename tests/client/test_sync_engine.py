"""The sync engine against a real HTTP server on loopback, scripted per request: retries and backoff,
protocol errors, batch halving, crash safety of push and pull, resync and scope garbage collection,
gzip and cancellation. Invariants from DESIGN.md section 3: nothing leaves the outbox unacknowledged,
a page and its cursor commit together, a resync drops nothing with pending work."""

from __future__ import annotations

import gzip
import json
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pda_client import Handheld
from pda_client.errors import AuthError, Cancelled, NetworkError, NotEnrolled, ServerRefused, UpgradeRequired
from pda_client.sync import SyncEngine
from pda_client.transport import GZIP_ABOVE, ResyncRequired
from tests.client.conftest import NOW, FakeClock
from tests.client.loopback import HELLO, PULL, PUSH, Loopback, Reply, Seen
from tests.client.scope import Scope, customer, premise, reading_record, removal, stamp

MakeEngine = Callable[..., SyncEngine]


def outbox_ids(handheld: Handheld) -> list[str]:
    return [entry["change_id"] for entry in handheld.outbox()]


def pending_work(handheld: Handheld, clock: FakeClock, readings: int = 1) -> list[str]:
    """Some field work waiting in the outbox: readings along the route and a note on J-1."""
    for number in ("A0001", "A0002", "A0004")[:readings]:
        handheld.readings.record(number, {"A0001": 12_300, "A0002": 120, "A0004": 5_300}[number])
        clock.advance(seconds=30)
    handheld.jobs.add_note("J-1001", "Transformer humming")
    return outbox_ids(handheld)


def pushes(server: Loopback) -> list[Seen]:
    return server.requests_to(PUSH)


# --- retries and backoff ------------------------------------------------------------------------------------


def test_push_keeps_the_outbox_when_the_server_fails_every_attempt(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, sleeps: list[float], clock: FakeClock
) -> None:
    queued = pending_work(handheld, clock, readings=2)
    server.handlers[PUSH] = lambda seen: server.error("internal_error")

    with pytest.raises(NetworkError, match=r"answered 500.*kept on the handheld"):
        make_engine(attempts=4, backoff_s=0.5).run()

    assert len(pushes(server)) == 4
    assert all(seen.change_ids == queued for seen in pushes(server))
    assert outbox_ids(handheld) == queued
    assert handheld.store.rows("SELECT pending FROM readings") == [{"pending": 1}, {"pending": 1}]
    assert len(sleeps) == 3  # between attempts, not after the last
    for attempt, slept in enumerate(sleeps):
        assert 0 <= slept <= 0.5 * 2**attempt
    assert handheld.store.meta("last_error")["code"] == "network"
    assert server.requests_to(PULL) == []  # no pull after a failed push


def test_backoff_is_full_jitter_exponential_and_capped(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, sleeps: list[float], clock: FakeClock
) -> None:
    pending_work(handheld, clock)
    server.handlers[PUSH] = lambda seen: server.error("unavailable")
    random.seed(20250616)

    with pytest.raises(NetworkError):
        make_engine(attempts=7, backoff_s=1.0, max_backoff_s=4.0).run()

    caps = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert len(sleeps) == len(caps)
    assert all(0 <= slept <= cap for slept, cap in zip(sleeps, caps, strict=True))
    assert any(slept < cap * 0.9 for slept, cap in zip(sleeps, caps, strict=True))  # jittered, not fixed
    assert len(set(sleeps)) == len(sleeps)


def test_push_succeeds_after_two_503s(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, sleeps: list[float], clock: FakeClock
) -> None:
    queued = pending_work(handheld, clock)
    server.script(PUSH, server.error("unavailable"), server.error("unavailable"))

    report = make_engine(attempts=3).run()

    assert len(pushes(server)) == 3
    assert pushes(server)[0].raw == pushes(server)[1].raw == pushes(server)[2].raw  # the same batch, resent
    assert len(sleeps) == 2
    assert handheld.outbox() == []
    assert (report.pushed, report.applied, report.rejected) == (len(queued), len(queued), 0)
    reading = handheld.store.rows("SELECT pending, hlc FROM readings")[0]
    assert reading["pending"] == 0
    assert reading["hlc"].endswith("-server")  # the stamp the server stored
    assert handheld.store.meta("last_error") is None
    assert handheld.store.meta("last_success_at") is not None


@pytest.mark.parametrize("path", [HELLO, PUSH, PULL])
def test_an_answer_cut_off_in_its_headers_is_retried_not_taken_for_an_empty_answer(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock, path: str
) -> None:
    # a dying link can leave the client "200 OK" with no body: that is not the server's answer
    queued = pending_work(handheld, clock)
    server.script(path, Reply(200, cut=True))

    report = make_engine(attempts=3).run()

    assert len(server.requests_to(path)) == 2
    assert handheld.outbox() == []
    assert report.pushed == len(queued)


def test_answers_cut_off_on_every_attempt_are_a_network_error_that_keeps_the_outbox(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    queued = pending_work(handheld, clock)
    server.script(PUSH, *[Reply(200, cut=True)] * 3)

    with pytest.raises(NetworkError, match="cut off"):
        make_engine(attempts=3).run()

    assert outbox_ids(handheld) == queued


def test_retry_after_from_the_server_sets_the_wait(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, sleeps: list[float], clock: FakeClock
) -> None:
    pending_work(handheld, clock)
    server.script(PUSH, server.error("rate_limited", **{"Retry-After": "7"}))
    make_engine(attempts=3, max_backoff_s=30.0).run()
    assert sleeps == [7.0]
    assert handheld.outbox() == []


def test_connection_refused_is_a_network_error_that_keeps_the_outbox(
    handheld: Handheld, make_engine: MakeEngine, sleeps: list[float], clock: FakeClock, server: Loopback
) -> None:
    queued = pending_work(handheld, clock)
    engine = make_engine(attempts=2)
    server.stop()  # nothing listens on the port any more
    with pytest.raises(NetworkError, match="cannot reach the server"):
        engine.run()
    assert outbox_ids(handheld) == queued
    assert len(sleeps) == 1


# --- protocol errors ----------------------------------------------------------------------------------------


def test_unauthorized_asks_to_re_enrol_without_retrying(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    queued = pending_work(handheld, clock)
    server.script(HELLO, server.error("unauthorized", "This device was revoked."))

    with pytest.raises(AuthError) as refused:
        make_engine().run()

    assert refused.value.code == "reenrol"
    assert "Enrol this handheld again" in refused.value.message
    assert "This device was revoked." in refused.value.message
    assert [seen.path for seen in server.seen] == [HELLO]
    assert server.seen[0].headers["authorization"] == "Bearer tok-test-1"
    assert outbox_ids(handheld) == queued
    assert handheld.store.meta("last_error")["code"] == "reenrol"


@pytest.mark.parametrize("path", [HELLO, PUSH])
def test_unsupported_protocol_version_asks_to_update_the_app(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock, path: str
) -> None:
    queued = pending_work(handheld, clock)
    server.script(path, server.error("upgrade_required", "Update the app to version 2."))

    with pytest.raises(UpgradeRequired, match=r"Update the app to version 2\."):
        make_engine().run()

    assert len(server.requests_to(path)) == 1
    assert outbox_ids(handheld) == queued


def test_every_sync_request_carries_the_protocol_version(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    pending_work(handheld, clock)
    make_engine().run()
    assert [seen.path for seen in server.seen] == [HELLO, PUSH, PULL]
    assert {seen.headers["fieldsync-protocol"] for seen in server.seen} == {"1"}
    assert server.seen[0].query == {"protocol_min": "1", "protocol_max": "1", "device_time_ms": str(clock.ms)}
    assert pushes(server)[0].body["protocol"] == 1
    assert server.requests_to(PULL)[0].query == {"cursor": "c-0"}


def test_answer_that_does_not_match_the_batch_removes_nothing(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    queued = pending_work(handheld, clock)

    def wrong_answer(seen: Seen) -> Reply:
        reply = server.results(seen)
        reply.body["results"] = reply.body["results"][:-1]  # one result missing
        return reply

    server.script(PUSH, wrong_answer)
    with pytest.raises(ServerRefused, match="nothing was removed"):
        make_engine().run()
    assert outbox_ids(handheld) == queued


# --- batches ------------------------------------------------------------------------------------------------


def test_payload_too_large_halves_the_batch_and_sends_everything_in_order(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    for n in range(6):
        handheld.jobs.add_note("J-1001", f"note {n}")
    queued = outbox_ids(handheld)
    server.max_batch_changes = 4
    server.handlers[PUSH] = lambda seen: (
        server.error("payload_too_large") if len(seen.body["changes"]) > 2 else server.results(seen)
    )

    report = make_engine().run()

    assert [len(seen.change_ids) for seen in pushes(server)] == [4, 2, 2, 2]
    assert [cid for seen in pushes(server)[1:] for cid in seen.change_ids] == queued
    assert handheld.outbox() == []
    assert report.pushed == 6


def test_a_single_change_too_large_is_rejected_and_does_not_block_the_queue(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    handheld.jobs.add_note("J-1001", "before")
    big = handheld.jobs.add_note("J-1001", "the big one")
    handheld.jobs.add_note("J-1001", "after")
    server.handlers[PUSH] = lambda seen: (
        server.error("payload_too_large")
        if big["id"] in [c["entity_id"] for c in seen.body["changes"]]
        else server.results(seen)
    )

    report = make_engine().run()

    assert handheld.outbox() == []
    (rejected,) = handheld.rejected()
    assert (rejected["entity_id"], rejected["code"]) == (big["id"], "payload_too_large")
    assert rejected["payload"]["data"]["text"] == "the big one"
    assert report.rejected == 1
    notes = handheld.store.rows("SELECT text FROM job_events WHERE kind = 'note' ORDER BY recorded_at, hlc")
    assert [n["text"] for n in notes] == ["before", "after"]


# --- crash safety -------------------------------------------------------------------------------------------


def test_crash_before_settling_keeps_the_outbox_and_the_next_push_resends_the_same_changes(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = pending_work(handheld, clock, readings=2)
    engine = make_engine()
    real_settle = SyncEngine._settle
    settled: list[str] = []

    def power_lost_midway(self: SyncEngine, entry: dict, result: dict, touched: set) -> None:
        if settled:  # the first answer is recorded, the second is not
            raise KeyboardInterrupt("battery died while settling")
        settled.append(entry["change_id"])
        real_settle(self, entry, result, touched)

    monkeypatch.setattr(SyncEngine, "_settle", power_lost_midway)
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    monkeypatch.undo()

    # the server applied the batch, but nothing left the outbox: the first settle was rolled back
    assert outbox_ids(handheld) == queued
    assert handheld.store.rows("SELECT pending FROM readings") == [{"pending": 1}, {"pending": 1}]
    assert handheld.store.rows("SELECT change_id FROM rejected") == []

    make_engine().run()

    first, second = pushes(server)
    assert first.change_ids == second.change_ids == queued
    assert first.body["changes"] == second.body["changes"]  # byte for byte the same changes
    assert handheld.outbox() == []
    assert handheld.store.rows("SELECT pending FROM readings") == [{"pending": 0}, {"pending": 0}]


def test_pull_page_and_its_cursor_commit_together(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = [
        customer("C-8", "Mei Zhang"),
        premise("P-8", "C-8", "8 Harbour St"),
        scope.job("J-8", number="J-1008", customer_id="C-8", premise_id="P-8", priority=2),
        *scope.job_events("J-8"),
    ]
    server.script(PULL, server.page(page, "c-1"), server.page(page, "c-1"))
    real_row = SyncEngine._row

    def fails_on_the_job(self: SyncEngine, entity: str, record_id: str, data: dict) -> dict:
        if record_id == "J-8":
            raise RuntimeError("disk full")
        return real_row(self, entity, record_id, data)

    monkeypatch.setattr(SyncEngine, "_row", fails_on_the_job)
    with pytest.raises(RuntimeError, match="disk full"):
        make_engine().run()
    monkeypatch.undo()

    assert handheld.store.meta("cursor") == "c-0"
    assert handheld.store.get("customers", "C-8") is None
    assert handheld.store.get("premises", "P-8") is None

    make_engine().run()
    assert [seen.query for seen in server.requests_to(PULL)] == [{"cursor": "c-0"}, {"cursor": "c-0"}]
    assert handheld.store.meta("cursor") == "c-1"
    assert handheld.jobs.find("J-1008")["status"] == "assigned"


def test_pull_pages_until_has_more_is_false(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, scope: Scope
) -> None:
    server.script(
        PULL,
        server.page([customer("C-8", "Mei Zhang")], "c-1", has_more=True),
        server.page([customer("C-9", "Wei Liu")], "c-2", has_more=True),
        server.page([], "c-3"),
    )
    report = make_engine().run()
    assert [seen.query.get("cursor") for seen in server.requests_to(PULL)] == ["c-0", "c-1", "c-2"]
    assert handheld.store.meta("cursor") == "c-3"
    assert (report.pages, report.pulled) == (3, 2)


def test_page_that_lags_behind_our_accepted_work_cannot_move_the_job_back(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, scope: Scope
) -> None:
    """The page was built before the server's job row caught up with our push: the job's status is the
    maximum over every status event the device holds, so it stays where the crew put it."""
    handheld.jobs.arrive("J-1001")
    handheld.jobs.edit("J-1001", cause="tree on line")
    server.handlers[PUSH] = lambda seen: server.results(seen, status="merged")  # accepted, not yet current
    server.script(PULL, server.page([scope.job("J-1"), *scope.job_events("J-1")], "c-1"))

    make_engine().run()

    job = handheld.jobs.find("J-1001")
    # accepted changes left the outbox; the stale page could not move the job back
    assert handheld.outbox() == []
    assert job["status"] == "on_site"


# --- resync ---------------------------------------------------------------------------------------------------


def test_resync_pushes_the_outbox_then_takes_a_fresh_snapshot_and_drops_what_left_the_scope(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, scope: Scope, clock: FakeClock
) -> None:
    """The server was restored from a backup. While the sync runs, the crew keeps working: a reading
    recorded before the resync is pushed first; a note on J-1 (which meanwhile left the scope) recorded
    during the snapshot keeps J-1 on the device."""
    full = {r["id"]: r for r in scope.records()}
    work: dict[str, Any] = {}

    def restored_from_backup(seen: Seen) -> Reply:
        work["reading"] = handheld.readings.record("A0001", 12_300)  # the crew, on the UI thread
        return server.error("resync_required", "The server's database was replaced (new epoch): resync.")

    def first_page(seen: Seen) -> Reply:
        assert seen.query == {}  # a snapshot starts without a cursor
        clock.advance(minutes=1)
        work["note"] = handheld.jobs.add_note("J-1001", "Still no power here")
        work["skip"] = handheld.readings.skip("A0004", "dog")  # M-4 is leaving the route
        records = [full[i] for i in ("C-1", "C-3", "P-1", "P-2", "P-3", "R-1")]
        return server.page(records, "s-1", has_more=True)

    def last_page(seen: Seen) -> Reply:
        pushed = work["reading"]
        records = [full[i] for i in ("M-1", "M-2", "M-3", "J-2", "E-J-2-new", "E-J-2-assigned")]
        records.append(reading_record(pushed["id"], "M-1", 12_300, NOW, stamp(NOW, 3)))
        return server.page(records, "s-2")

    server.script(PULL, restored_from_backup, first_page, last_page)

    report = make_engine().run()

    assert [(s.path, s.query.get("cursor")) for s in server.seen] == [
        (HELLO, None),
        (PULL, "c-0"),
        (PUSH, None),
        (PULL, None),
        (PULL, "s-1"),
    ]
    assert pushes(server)[0].body["changes"][0]["entity_id"] == work["reading"]["id"]
    assert report.resynced
    assert handheld.store.meta("cursor") == "s-2"
    assert handheld.store.meta("snapshot_active") is False
    assert handheld.store.rows("SELECT * FROM resync_seen") == []

    store = handheld.store
    # what the new snapshot did not contain is gone
    assert store.get("meters", "M-4") is None
    assert store.get("premises", "P-4") is None
    # the reading pushed before the snapshot came back from the server and is settled
    assert store.get("readings", work["reading"]["id"])["pending"] == 0
    # J-1 left the scope, but the crew's note on it is still waiting: the job stays, whole
    assert [entry["entity_id"] for entry in handheld.outbox()] == [work["note"]["id"], work["skip"]["id"]]
    assert store.get("job_events", work["note"]["id"])["pending"] == 1
    assert store.get("readings", work["skip"]["id"])["pending"] == 1  # its meter left, the work stays
    detail = handheld.jobs.detail("J-1001")
    assert detail["customer"]["name"] == "City Hospital"
    assert detail["premise"]["address"] == "1 Hospital Way"
    assert [e["status"] for e in detail["events"] if e["kind"] == "status"] == ["new", "assigned"]
    # everything in the snapshot is there
    assert [m["id"] for m in handheld.readings.walk("R-1")] == ["M-1", "M-2", "M-3"]
    assert [j["number"] for j in handheld.jobs.list()] == ["J-1001", "J-1002"]


def test_a_second_resync_request_in_one_sync_stops_with_an_error(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine
) -> None:
    server.handlers[PULL] = lambda seen: server.error("resync_required")
    with pytest.raises(ResyncRequired, match="cannot continue from this cursor"):
        make_engine().run()
    assert handheld.store.meta("last_error")["code"] == "resync_required"
    assert len(server.requests_to(PULL)) == 2


# --- scope changes ------------------------------------------------------------------------------------------


def test_removing_a_job_purges_its_events_premise_and_customer(
    handheld: Handheld, pull: Callable[..., SyncEngine]
) -> None:
    engine = pull(removal("job", "J-1"))
    store = handheld.store
    assert store.get("jobs", "J-1") is None
    assert store.rows("SELECT id FROM job_events WHERE job_id = 'J-1'") == []
    assert store.get("premises", "P-5") is None
    assert store.get("customers", "C-2") is None
    assert engine.report.removed == 1
    # the other job is untouched
    assert len(store.rows("SELECT id FROM job_events WHERE job_id = 'J-2'")) == 2


def test_removing_a_job_keeps_a_premise_and_customer_referenced_elsewhere(
    handheld: Handheld, pull: Callable[..., SyncEngine]
) -> None:
    pull(removal("job", "J-2"))
    store = handheld.store
    assert store.get("jobs", "J-2") is None
    assert store.rows("SELECT id FROM job_events WHERE job_id = 'J-2'") == []
    assert store.get("premises", "P-2")["address"] == "3 Riverside Rd"  # meter M-2 is there
    assert store.get("customers", "C-1")["name"] == "Ann Lee"


@pytest.mark.parametrize("work", ["status", "note", "edit"])
def test_removing_a_job_with_pending_work_keeps_it_whole(
    handheld: Handheld, pull: Callable[..., SyncEngine], work: str
) -> None:
    {
        "status": lambda: handheld.jobs.arrive("J-1001"),
        "note": lambda: handheld.jobs.add_note("J-1001", "on my way"),
        "edit": lambda: handheld.jobs.edit("J-1001", contact_name="Nurse Wang"),
    }[work]()
    pending = outbox_ids(handheld)

    pull(removal("job", "J-1"))

    store = handheld.store
    assert store.get("jobs", "J-1") is not None
    assert len(store.rows("SELECT id FROM job_events WHERE job_id = 'J-1' AND pending = 0")) == 2
    assert store.get("premises", "P-5") is not None
    assert store.get("customers", "C-2") is not None
    assert outbox_ids(handheld) == pending


def test_removing_a_route_drops_its_meters_and_their_settled_readings_only(
    handheld: Handheld, pull: Callable[..., SyncEngine], clock: FakeClock
) -> None:
    pull(reading_record("MR-settled", "M-1", 12_250, NOW, stamp(NOW, 1)))
    clock.advance(minutes=1)
    pending = handheld.readings.record("A0002", 120)

    pull(removal("route", "R-1"))

    store = handheld.store
    assert store.rows("SELECT id FROM meters") == []
    assert store.get("readings", "MR-settled") is None
    assert store.get("readings", pending["id"])["pending"] == 1  # unsent work is never dropped
    assert store.get("premises", "P-4") is None
    assert store.get("premises", "P-2") is not None  # J-2 is there


# --- wire details -------------------------------------------------------------------------------------------


def test_push_bodies_above_1_kb_are_gzipped(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    handheld.jobs.add_note("J-1001", "short")
    make_engine().run()
    handheld.readings.record("A0001", 12_300, note="Meter behind the shed, " + "x" * 900)
    make_engine().run()

    small, large = pushes(server)
    assert "content-encoding" not in small.headers
    assert len(small.raw) <= GZIP_ABOVE
    assert json.loads(small.raw)["changes"][0]["data"]["text"] == "short"
    assert large.headers["content-encoding"] == "gzip"
    assert large.raw[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(large.raw))["changes"][0]["data"]["note"].startswith("Meter behind the shed")
    assert len(large.raw) < len(gzip.decompress(large.raw))
    assert "gzip" in large.headers["accept-encoding"]


def test_gzipped_pull_page_is_read(handheld: Handheld, server: Loopback, make_engine: MakeEngine) -> None:
    many = [customer(f"C-{n}", f"Customer number {n}") for n in range(100, 140)]
    server.script(PULL, server.page(many, "c-1", gzip=True))
    make_engine().run()
    assert handheld.store.get("customers", "C-139")["name"] == "Customer number 139"


def test_hello_adopts_the_server_clock_and_warns_about_a_wrong_device_clock(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    server_clock = FakeClock(NOW)
    server_clock.advance(minutes=-12)  # the handheld runs 12 minutes ahead
    server.clock = server_clock

    report = make_engine().run()

    assert report.clock_offset_ms == 12 * 60_000
    assert handheld.store.meta("clock_offset_ms") == 12 * 60_000
    assert any("12 min ahead" in message for message in report.messages)


# --- cancellation ---------------------------------------------------------------------------------------------


def test_cancel_before_start_sends_nothing(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    queued = pending_work(handheld, clock)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="nothing was lost"):
        make_engine(cancel=cancel).run()
    assert server.seen == []
    assert outbox_ids(handheld) == queued
    assert handheld.store.meta("last_error")["code"] == "cancelled"


def test_cancel_between_pages_keeps_the_committed_page_and_resumes_after_it(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine
) -> None:
    cancel = threading.Event()
    server.script(
        PULL,
        server.page([customer("C-8", "Mei Zhang")], "c-1", has_more=True),
        server.page([customer("C-9", "Wei Liu")], "c-2"),
    )

    def cancel_after_first_page(stage: str, done: int, total: int) -> None:
        if stage == "pull":
            cancel.set()

    with pytest.raises(Cancelled):
        make_engine(cancel=cancel, progress=cancel_after_first_page).run()

    assert handheld.store.meta("cursor") == "c-1"
    assert handheld.store.get("customers", "C-8") is not None
    assert handheld.store.get("customers", "C-9") is None
    assert len(server.requests_to(PULL)) == 1

    make_engine().run()
    assert server.requests_to(PULL)[-1].query == {"cursor": "c-1"}
    assert handheld.store.get("customers", "C-9") is not None
    assert handheld.store.meta("cursor") == "c-2"


def test_cancel_during_backoff_stops_retrying_and_keeps_the_outbox(
    handheld: Handheld, server: Loopback, make_engine: MakeEngine, clock: FakeClock
) -> None:
    queued = pending_work(handheld, clock)
    cancel = threading.Event()
    server.handlers[PUSH] = lambda seen: server.error("unavailable")

    with pytest.raises(Cancelled):
        make_engine(attempts=5, cancel=cancel, sleep=lambda seconds: cancel.set()).run()

    assert len(pushes(server)) == 1
    assert outbox_ids(handheld) == queued
    assert handheld.store.rows("SELECT pending FROM readings") == [{"pending": 1}]


def test_handheld_sync_refuses_before_enrolment(tmp_path: Path) -> None:
    handheld = Handheld(tmp_path)
    try:
        with pytest.raises(NotEnrolled):
            handheld.sync()
    finally:
        handheld.close()
