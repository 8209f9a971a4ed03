"""DESIGN invariant 3, no missed change on pull: a change whose sequence number was assigned before
another's but which commits after it is still delivered.

Writers run in separate OS processes (the 'spawn' context, each with its own app and connections, as
gunicorn workers have) on the same SQLite file or PostgreSQL schema; the reader is a handheld pulling
through the test client with its cursor.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from server.extensions import db
from server.models import ChangeLog, Job, JobEvent, User
from server.services.pull import pull_page
from tests.server import writers
from tests.server.world import enrol

SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT_S = 60  # a spawned writer imports the server and connects first


def _wait_for(event: Any, results: Any, timeout: float = START_TIMEOUT_S) -> None:
    """Wait for a child's event; fail at once with the child's traceback if it reported an error."""
    deadline = time.monotonic() + timeout
    while not event.wait(0.05):
        try:
            message = results.get_nowait()
        except queue.Empty:
            message = None
        if message is not None:
            assert "error" not in message[0], message[-1]
            results.put(message)  # not ours to consume
        assert time.monotonic() < deadline, "a writer process did not get there in time"


def _drain(results: Any) -> list[tuple]:
    messages = []
    while True:
        try:
            messages.append(results.get(timeout=0.2))
        except queue.Empty:
            return messages


@contextmanager
def _processes(*processes: Any) -> Iterator[None]:
    """Start the processes; however the test ends, none is left running."""
    for process in processes:
        process.start()
    try:
        yield
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)


def _seqs(entity_ids: set[str]) -> dict[str, int]:
    rows = db.session.execute(
        sa.select(ChangeLog.entity_id, ChangeLog.seq).where(
            ChangeLog.entity == "job_event", ChangeLog.entity_id.in_(entity_ids)
        )
    ).all()
    db.session.rollback()
    return dict(rows)


def _pull_in_process(app: Any, device: Any) -> list[dict[str, Any]]:
    """Pull every page with the device's cursor through the pull service itself.

    Used while a writer stalls inside its transaction: over HTTP a pull also stamps the device's
    last_pull_at, a write that on SQLite queues behind the stalled writer's lock."""
    records: list[dict[str, Any]] = []
    with app.app_context():
        user = db.session.get(User, device.user_id)
        while True:
            page = pull_page(user, device.cursor)
            records.extend(page["records"])
            device.cursor = page["cursor"]
            if not page["has_more"]:
                break
        db.session.rollback()
    return records


def _named_connections(database_url: str, application_name: str) -> str:
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}application_name={application_name}"


def _wait_until_waiting_on_counter_lock(
    database_url: str, application_name: str, committed: Any
) -> dict[str, str] | None:
    """Poll pg_stat_activity until the named connection is blocked on a lock while updating the counter;
    None if its transaction committed instead (which the design must never allow)."""
    engine = sa.create_engine(database_url)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not committed.is_set():
            with engine.connect() as conn:
                row = conn.execute(
                    sa.text(
                        "SELECT wait_event_type, wait_event, query FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": application_name},
                ).mappings().first()
            if row and row["wait_event_type"] == "Lock" and "sync_counter" in row["query"]:
                return dict(row)
            assert time.monotonic() < deadline, f"writer B never blocked on the counter lock: {row}"
            time.sleep(0.05)
        return None
    finally:
        engine.dispose()


def test_pull_never_misses_late_commit(app, client, world, database_url, tmp_path):
    """A takes its sequence numbers and stalls before COMMIT; B writes meanwhile; the device pulls in
    between and afterwards. B cannot commit ahead of A (it waits for A's counter lock, or on SQLite for
    the write lock), so B's number is later than A's and the device sees both changes."""
    with app.app_context():
        device = enrol(client, "lineman")
    device.pull_all()
    postgres = database_url.startswith("postgresql")
    b_name = f"fs-writer-b-{random.randrange(10**9)}"
    b_url = _named_connections(database_url, b_name) if postgres else database_url
    sequenced, release, started, committed = (SPAWN.Event() for _ in range(4))
    results = SPAWN.Queue()
    writer_a = SPAWN.Process(
        target=writers.stalled_office_note,
        args=(database_url, str(tmp_path / "a"), world.jobs["outage"], "A: late commit", sequenced, release,
              results),
    )
    writer_b = SPAWN.Process(  # starts writing once A holds its sequence numbers
        target=writers.office_note,
        args=(b_url, str(tmp_path / "b"), world.jobs["repair"], "B: in between", sequenced, started, committed,
              results),
    )
    try:
        with _processes(writer_a, writer_b):
            _wait_for(sequenced, results)
            _wait_for(started, results)
            if postgres:  # B ran its transaction and now waits for the counter row A holds
                blocked = _wait_until_waiting_on_counter_lock(database_url, b_name, committed)
                assert blocked is None or "UPDATE sync_counter" in blocked["query"], blocked
            else:  # B waits for the database's write lock (BEGIN IMMEDIATE) A holds
                committed.wait(0.5)
            b_committed_while_a_stalled = committed.is_set()
            between = _pull_in_process(app, device)  # the reader pulls while A holds its numbers
            release.set()
    finally:
        release.set()
    messages = {m[0]: m[1] for m in _drain(results)}
    assert not [m for k, m in messages.items() if k.endswith("error")], messages
    a_event, b_event = messages["A-committed"], messages["B-committed"]

    after = device.pull_all()
    received = {r["id"] for r in between + after if r["entity"] == "job_event"}
    assert {a_event, b_event} <= received, "the device missed a committed change"
    assert between == [], "nothing was committed while A stalled, so nothing could be delivered"
    assert not b_committed_while_a_stalled, "B committed while A held earlier sequence numbers"
    with app.app_context():
        seqs = _seqs({a_event, b_event})
    assert seqs[a_event] < seqs[b_event]
    assert messages["A-sequenced"] == seqs[a_event]  # A really had its number while it stalled
    assert device.pull_all() == []


WRITERS = 4
CHANGES_PER_WRITER = 12
PAGE_RECORDS = 3  # small pages: many page boundaries, and repeated entries of one job within a page


def test_pull_sees_every_commit_under_concurrent_writers(app, client, world, database_url, tmp_path):
    """Writer processes (half pushing as a handheld, half writing as the office) commit notes and job
    edits with random stalls; one reader pulls continuously, in small pages, with its cursor. It ends with
    exactly the notes committed and every job as it is now."""
    with app.app_context():
        reader = enrol(client, "lineman", "reader")
    with app.app_context():
        pusher = enrol(client, "lineman", "pusher")
    reader.pull_all()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    jobs = [world.jobs["outage"], world.jobs["repair"]]
    start = SPAWN.Barrier(WRITERS + 1, timeout=START_TIMEOUT_S)
    halfway = SPAWN.Barrier(WRITERS + 1, timeout=START_TIMEOUT_S)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=writers.random_writer,
            args=(database_url, str(tmp_path / f"w{i}"), f"w{i}", jobs, CHANGES_PER_WRITER,
                  pusher.token if i % 2 else None, seed + i, start, halfway, results),
        )
        for i in range(WRITERS)
    ]
    received: set[str] = set()
    summaries: dict[str, str] = {}  # the reader's copy of each job's summary

    def pull() -> None:
        for record in reader.pull_all(limit=PAGE_RECORDS):
            if record["entity"] == "job_event":
                received.add(record["id"])
            elif record["entity"] == "job":
                summaries[record["id"]] = record["data"]["summary"]

    with _processes(*processes):
        start.wait()  # every writer has its app: they overlap from here
        halfway.wait()  # every writer has committed half its notes and goes on while we pull
        pull()
        seen_halfway = len(received)
        while any(p.is_alive() for p in processes):
            pull()
            time.sleep(rng.choice((0, 0.05, 0.2)))  # sometimes a backlog builds up, as on a real device
    pull()

    messages = _drain(results)
    errors = [m for m in messages if m[0] == "error"]
    assert not errors, f"seed {seed}: {errors}"
    committed = {event_id for _, _, ids in messages for event_id in ids}
    assert len(committed) == WRITERS * CHANGES_PER_WRITER
    with app.app_context():
        stored = set(db.session.execute(sa.select(JobEvent.id).where(JobEvent.id.in_(committed))).scalars())
        current = dict(db.session.execute(sa.select(Job.id, Job.summary).where(Job.id.in_(jobs))).all())
        db.session.rollback()
    assert stored == committed
    missed, unexpected = sorted(committed - received), sorted(received - committed)
    assert not missed and not unexpected, (
        f"seed {seed}: missed {len(missed)} of {len(committed)} notes (e.g. {missed[:3]}), unexpected {unexpected[:3]}"
    )
    assert summaries == current, f"seed {seed}: the reader missed a job edit"
    assert seen_halfway >= WRITERS * (CHANGES_PER_WRITER // 2), "the halfway pull missed committed notes"
