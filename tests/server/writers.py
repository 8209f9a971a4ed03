"""Writer processes for the concurrency tests: each builds its own app on the shared database, as a
gunicorn worker would, and changes data through the server's own write path.

The functions here run in child processes started with the 'spawn' context, so they take only
picklable arguments (URLs, ids, multiprocessing Events and Queues) and import the server themselves.
"""

from __future__ import annotations

import random
import time
import traceback
import uuid
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

STALL_LIMIT_S = 20.0  # a writer never waits longer than this for the test to release it


def _app(database_url: str, instance_path: str) -> Any:
    from server import create_app

    return create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "test"},
        instance_path=instance_path,
    )


def _after_sequencing(hook: Callable[[Session], None]) -> None:
    """Run `hook` inside every commit of this process, after the change log got its sequence numbers
    (changefeed's before_commit listener, registered by create_app, runs first) and before COMMIT:
    the transaction then holds the sync counter's lock and its uncommitted change-log rows."""
    from server.services import changefeed

    def listener(session: Session) -> None:
        if changefeed.PENDING_KEY in session.info:
            raise AssertionError("the stall hook ran before the change log was sequenced")
        hook(session)

    event.listen(Session, "before_commit", listener)


def _office_note(job_id: str, text: str) -> str:
    from server.extensions import db
    from server.models import Job
    from server.services import office

    job = db.session.get(Job, job_id)
    return office.add_note(job, text, None).id


def stalled_office_note(
    database_url: str,
    instance_path: str,
    job_id: str,
    text: str,
    sequenced: Event,
    release: Event,
    results: Queue,
) -> None:
    """Writer A: add an office note to a job; after its change-log rows got their sequence numbers,
    signal `sequenced` and wait for `release` before committing."""
    try:
        app = _app(database_url, instance_path)

        def stall(session: Session) -> None:
            from server.models import ChangeLog

            seqs = session.execute(select(ChangeLog.seq).order_by(ChangeLog.seq.desc()).limit(1)).scalar()
            results.put(("A-sequenced", seqs))
            sequenced.set()
            if not release.wait(STALL_LIMIT_S):
                raise RuntimeError("writer A was never released")

        _after_sequencing(stall)
        with app.app_context():
            from server.database import write_transaction

            event_id = write_transaction(lambda: _office_note(job_id, text))
        results.put(("A-committed", event_id))
    except BaseException:
        results.put(("A-error", traceback.format_exc()))


def office_note(
    database_url: str,
    instance_path: str,
    job_id: str,
    text: str,
    go: Event,
    started: Event,
    committed: Event,
    results: Queue,
) -> None:
    """Writer B: once `go` is set, add an office note to a job in one write transaction, signalling
    before and after."""
    try:
        app = _app(database_url, instance_path)
        with app.app_context():
            from server.database import write_transaction
            from server.extensions import db

            db.session.connection()  # connect (and so log in) before announcing the start
            db.session.rollback()
            if not go.wait(STALL_LIMIT_S):
                raise RuntimeError("writer B was never told to go")
            started.set()
            event_id = write_transaction(lambda: _office_note(job_id, text))
        committed.set()
        results.put(("B-committed", event_id))
    except BaseException:
        results.put(("B-error", traceback.format_exc()))


def random_writer(
    database_url: str,
    instance_path: str,
    name: str,
    job_ids: list[str],
    changes: int,
    token: str | None,
    seed: int,
    start: Barrier,
    halfway: Barrier,
    results: Queue,
) -> None:
    """A stress writer: `changes` notes on the given jobs, one or two per transaction, with random stalls
    before the flush and after sequencing. With a device token it pushes them as the field would;
    without one it writes them as the service centre does. Halfway it meets the other writers and the
    reader, so at least one pull surely happens while writing goes on. Reports every note id it committed."""
    rng = random.Random(seed)
    try:
        app = _app(database_url, instance_path)
        _after_sequencing(lambda _session: time.sleep(rng.choice((0, 0, 0.002, 0.01, 0.03))))
        client = app.test_client()
        start.wait(STALL_LIMIT_S)  # all writers and the reader begin together
        done: list[str] = []
        met = False
        while len(done) < changes:
            if not met and len(done) >= changes // 2:
                halfway.wait(STALL_LIMIT_S)
                met = True
            batch = min(changes - len(done), rng.choice((1, 1, 2)))
            texts = [f"{name} note {len(done) + i}" for i in range(batch)]
            if token:
                done.extend(_push_notes(client, token, rng, job_ids, texts))
            else:
                with app.app_context():
                    done.extend(_office_notes(rng, job_ids, texts))
        results.put(("done", name, done))
    except BaseException:
        results.put(("error", name, traceback.format_exc()))


def _office_notes(rng: random.Random, job_ids: list[str], texts: list[str]) -> list[str]:
    """The notes in one transaction; now and then, first a few transactions that only edit every job's
    summary: the same jobs then appear in the change log again and again, with nothing else between,
    which a pull must collapse without skipping anything after them."""
    from server.database import write_transaction
    from server.extensions import db
    from server.models import Job
    from server.services import office

    def edit_jobs() -> None:
        for job_id in sorted(job_ids):  # one lock order for every writer
            office.edit_job(db.session.get(Job, job_id), {"summary": f"{texts[0]} (edited)"})

    def add_notes() -> list[str]:
        ids = [_office_note(rng.choice(job_ids), text) for text in texts]
        time.sleep(rng.choice((0, 0.005, 0.02)))
        db.session.flush()
        return ids

    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        write_transaction(edit_jobs)
    return write_transaction(add_notes)


def _push_notes(client: Any, token: str, rng: random.Random, job_ids: list[str], texts: list[str]) -> list[str]:
    from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, HLCClock

    clock = HLCClock(f"dev-{uuid.uuid4().hex[:8]}")
    changes = []
    for text in texts:
        event_id = f"E-{uuid.uuid4().hex[:12]}"
        data = {"job_id": rng.choice(job_ids), "kind": "note", "text": text, "recorded_at": _now_iso()}
        changes.append(
            {"change_id": uuid.uuid4().hex, "entity": "job_event", "entity_id": event_id,
             "hlc": str(clock.now()), "data": data}
        )
    body = {"protocol": PROTOCOL_VERSION, "batch_id": uuid.uuid4().hex, "changes": changes}
    headers = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    response = client.post("/api/v1/sync/push", json=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"push failed: {response.status_code} {response.get_json()}")
    results = response.get_json()["results"]
    if any(r["status"] != "applied" for r in results):
        raise RuntimeError(f"push not applied: {results}")
    return [c["entity_id"] for c in changes]


def _now_iso() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
