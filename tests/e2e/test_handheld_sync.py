"""Handhelds (the real client core and CLI) against a real server process: convergence across devices
and sync orders, a sync killed mid-way, the server down during sync, office cancellation meeting field
work, and a handheld whose clock runs a day ahead."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pda_client import Handheld
from pda_client.errors import Cancelled, NeedsConfirmation, NetworkError
from pda_client.transport import Transport
from server import create_app
from server.extensions import db
from server.models import Job, User
from server.services import office
from tests.e2e.conftest import ROOT, LiveServer

FAST_RETRIES = functools.partial(Transport, attempts=3, backoff_s=0.01, max_backoff_s=0.05)
DAY_MS = 86_400_000


@contextmanager
def service_centre(live: LiveServer, tmp_path: Path) -> Iterator[None]:
    """The office acting directly on the server's database (as its staff pages will)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": live.database_url}, instance_path=str(tmp_path / "office"))
    with app.app_context():
        try:
            yield
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()


def user_id(live: LiveServer, tmp_path: Path, username: str) -> str:
    with service_centre(live, tmp_path):
        return db.session.execute(sa.select(User.id).where(User.username == username)).scalar_one()


def new_job(live: LiveServer, tmp_path: Path, username: str, summary: str) -> str:
    """A fresh job for `username`, created and assigned by the office."""
    with service_centre(live, tmp_path):
        assignee = db.session.execute(sa.select(User.id).where(User.username == username)).scalar_one()
        job = office.create_job(
            customer_id="C000001",
            premise_id="P000001",
            job_type="line_repair",
            summary=summary,
            priority=2,
            assigned_to=assignee,
        )
        return job.id


def handheld(live: LiveServer, tmp_path: Path, username: str, name: str, **kwargs: Any) -> Handheld:
    hh = Handheld(tmp_path / name, transport_factory=FAST_RETRIES, **kwargs)
    code = live.flask("enroll-code", username).strip()
    hh.enroll(live.url, code, name)
    return hh


def server_rows(live: LiveServer, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = sa.create_engine(live.database_url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def job_view(hh: Handheld, job_id: str) -> dict[str, Any]:
    job = hh.jobs.find(job_id)
    return {k: job[k] for k in ("status", "round", "resolution_code", "resolution_note", "cause")}


def server_job(live: LiveServer, job_id: str) -> dict[str, Any]:
    (row,) = server_rows(
        live, "SELECT status, round, resolution_code, resolution_note, cause FROM jobs WHERE id = :id", id=job_id
    )
    return row


def event_ids(hh: Handheld, job_id: str) -> set[str]:
    return {r["id"] for r in hh.store.rows("SELECT id FROM job_events WHERE job_id = ?", [job_id])}


@pytest.mark.e2e
@pytest.mark.parametrize("order", ["abc", "cba", "bca"])
def test_three_handhelds_editing_offline_converge_in_any_sync_order(live_server, tmp_path, order):
    """Three handhelds of one crew work the same job offline and sync in different orders; after a final
    round every handheld shows what the server holds, and every overwritten value is a conflict record."""
    job_id = new_job(live_server, tmp_path, "lineman2", f"converge {order}")
    devices = {name: handheld(live_server, tmp_path, "lineman2", f"{order}-{name}") for name in "abc"}
    try:
        for hh in devices.values():
            hh.sync()
        a, b, c = devices["a"], devices["b"], devices["c"]
        a.jobs.start_travel(job_id)
        a.jobs.arrive(job_id)
        a.jobs.edit(job_id, cause="storm damage")
        b.jobs.arrive(job_id)
        b.jobs.hold(job_id, "waiting for parts")
        b.jobs.edit(job_id, cause="old insulator")
        c.jobs.add_note(job_id, "customer asked for a call back")
        c.jobs.edit(job_id, resolution_note="check again next week")
        for name in order:
            devices[name].sync()
        for name in order:  # a second round delivers what the others sent after each one's first sync
            devices[name].sync()
        expected = server_job(live_server, job_id)
        server_events = {
            r["id"] for r in server_rows(live_server, "SELECT id FROM job_events WHERE job_id = :j", j=job_id)
        }
        for hh in devices.values():
            assert job_view(hh, job_id) == expected
            assert event_ids(hh, job_id) == server_events
            assert hh.status()["pending_changes"] == 0
        assert expected["cause"] in ("storm damage", "old insulator")
        losers = server_rows(
            live_server, "SELECT loser FROM conflicts WHERE entity_id = :j AND field = 'cause'", j=job_id
        )
        lost_values = {str(r["loser"]).strip('"') for r in losers}
        assert ({"storm damage", "old insulator"} - {expected["cause"]}) <= lost_values
    finally:
        for hh in devices.values():
            hh.close()


@pytest.mark.e2e
def test_killed_sync_resumes_without_duplicates_or_loss(live_server, tmp_path):
    """`python -m pda_client sync` is killed (SIGKILL) at several points while pushing a large outbox;
    the next sync finishes, and the server holds every reading exactly once."""
    data = tmp_path / "killed"
    hh = handheld(live_server, tmp_path, "reader1", "killed")
    hh.sync()
    route = hh.status()["routes"][0]["id"]
    meters = [m["id"] for m in hh.readings.walk(route)][:240]
    recorded = []
    for meter_id in meters:
        meter = hh.readings.find_meter(meter_id)
        value = (meter["last_value"] + 7) % 10 ** meter["dials"]
        try:
            recorded.append(hh.readings.record(meter_id, value)["id"])
        except NeedsConfirmation:  # an out-of-range value: confirm it as a reader would
            recorded.append(hh.readings.record(meter_id, value, confirm=value)["id"])
    hh.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills = 0
    for delay in (0.15, 0.4, 0.8, 1.2):
        process = subprocess.Popen(
            [sys.executable, "-m", "pda_client", "--data", str(data), "sync"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(30)
    assert kills >= 1, "the sync finished before any kill: make the outbox larger"
    hh = Handheld(data, transport_factory=FAST_RETRIES)
    try:
        hh.sync()
        assert hh.status()["pending_changes"] == 0
        rows = server_rows(
            live_server,
            "SELECT id, COUNT(*) AS n FROM meter_readings WHERE device_id = :d GROUP BY id",
            d=hh.store.meta("device_id"),
        )
        assert {r["id"] for r in rows} == set(recorded)
        assert all(r["n"] == 1 for r in rows)
        receipts = server_rows(
            live_server, "SELECT COUNT(*) AS n FROM change_receipts WHERE device_id = :d", d=hh.store.meta("device_id")
        )
        assert receipts[0]["n"] == len(recorded)
        assert hh.readings.progress(route)["read"] >= len(set(meters))
    finally:
        hh.close()


@pytest.mark.e2e
def test_office_cancellation_meets_field_work_in_a_conflict_the_crew_sees(live_server, tmp_path):
    job_id = new_job(live_server, tmp_path, "lineman3", "cancel meets work")
    hh = handheld(live_server, tmp_path, "lineman3", "cancel")
    try:
        hh.sync()
        hh.jobs.start_travel(job_id)
        hh.jobs.arrive(job_id)  # offline, while the office cancels
        with service_centre(live_server, tmp_path):
            office.cancel_job(db.session.get(Job, job_id), reason="duplicate of another job")
        report = hh.sync()
        assert report.conflicts >= 1
        assert hh.jobs.find(job_id)["status"] == "cancelled"
        kinds = {c["kind"] for c in hh.conflicts()}
        assert "work_after_cancel" in kinds
        flagged = server_rows(
            live_server,
            "SELECT id, flags FROM job_events WHERE job_id = :j AND source = 'field'",
            j=job_id,
        )
        assert flagged and all("work_after_cancel" in str(r["flags"]) for r in flagged)
        assert server_job(live_server, job_id)["status"] == "cancelled"
    finally:
        hh.close()


@pytest.mark.e2e
def test_a_handheld_a_day_ahead_is_flagged_and_cannot_win_on_its_clock(live_server, tmp_path):
    job_id = new_job(live_server, tmp_path, "lineman4", "clock skew")
    fast = handheld(
        live_server, tmp_path, "lineman4", "fast", physical_clock=lambda: time.time_ns() // 1_000_000 + DAY_MS
    )
    honest = handheld(live_server, tmp_path, "lineman4", "honest")
    try:
        fast.sync()
        honest.sync()
        fast.jobs.edit(job_id, cause="from the fast clock")
        fast.sync()
        time.sleep(0.01)
        honest.jobs.edit(job_id, cause="from the honest clock")
        honest.sync()
        fast.sync()
        assert server_job(live_server, job_id)["cause"] == "from the honest clock"
        assert job_view(fast, job_id) == job_view(honest, job_id) == server_job(live_server, job_id)
        flags = server_rows(
            live_server, "SELECT result FROM change_receipts WHERE device_id = :d", d=fast.store.meta("device_id")
        )
        assert any("clock_skew" in str(r["result"]) for r in flags)
        assert abs(fast.status()["clock_offset_ms"] - DAY_MS) < 60_000
    finally:
        fast.close()
        honest.close()


@pytest.mark.e2e
def test_meter_reader_works_a_route_from_the_cli_and_the_server_holds_exactly_that(live_server, tmp_path):
    """The Done-when of the client issue: enrol, sync a route, read and skip offline, sync: all from the CLI."""
    data = str(tmp_path / "cli")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str, expect: int = 0) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "pda_client", "--data", data, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == expect, result.stdout + result.stderr
        return result.stdout

    code = live_server.flask("enroll-code", "reader1").strip()
    assert "Enrolled as" in cli("enroll", "--server", live_server.url, "--code", code, "--name", "cli-pda")
    assert "received" in cli("sync")
    hh = Handheld(data)
    route = hh.status()["routes"][0]["id"]
    walk = [m for m in hh.readings.walk(route) if m["state"] == "remaining"][:3]
    hh.close()
    first, second, third = walk
    in_range = first["last_value"] + int(first["avg_daily"] * 30) % 10 ** first["dials"]
    out_of_range = (second["last_value"] + int(second["avg_daily"] * 300) + 1000) % 10 ** second["dials"]
    cli("read", first["number"], str(in_range))
    assert "--confirm" in cli("read", second["number"], str(out_of_range), expect=3)
    cli("read", second["number"], str(out_of_range), "--confirm", str(out_of_range))
    cli("skip", third["number"], "locked_gate", "--note", "padlock changed")
    assert "Pending changes: 3" in cli("status")
    cli("sync")
    assert "Pending changes: 0" in cli("status")
    device_id = Handheld(data).store.meta("device_id")
    rows = server_rows(
        live_server,
        "SELECT meter_id, value, reading_type, skip_code, note, check_result FROM meter_readings WHERE device_id = :d",
        d=device_id,
    )
    by_meter = {r["meter_id"]: r for r in rows}
    assert len(rows) == 3
    assert by_meter[first["id"]]["value"] == in_range
    assert by_meter[second["id"]]["value"] == out_of_range
    assert by_meter[second["id"]]["reading_type"] == "verified"
    assert by_meter[second["id"]]["check_result"] in ("high", "low")
    assert by_meter[third["id"]]["value"] is None
    assert by_meter[third["id"]]["skip_code"] == "locked_gate"
    assert by_meter[third["id"]]["note"] == "padlock changed"


@pytest.mark.e2e
def test_server_down_during_sync_keeps_the_outbox_and_the_next_sync_succeeds(tmp_path):
    """The server process stops while a handheld syncs; nothing leaves the outbox; after a restart the
    same handheld syncs everything exactly once."""
    from tests.e2e.conftest import start_server, stop_server

    with start_server(tmp_path / "srv", "sqlite") as live:
        hh = handheld(live, tmp_path, "reader1", "down")
        hh.sync()
        route = hh.status()["routes"][0]["id"]
        meter = hh.readings.walk(route)[0]
        value = meter["last_value"]
        hh.readings.record(meter["id"], value, confirm=value)
        stop_server(live)
        with pytest.raises(NetworkError):
            hh.sync()
        assert hh.status()["pending_changes"] == 1
        assert hh.status()["last_error"]["code"] == "network"
        live.restart()
        hh.sync()
        assert hh.status()["pending_changes"] == 0
        assert hh.status()["last_error"] is None
        rows = server_rows(
            live,
            "SELECT COUNT(*) AS n FROM meter_readings WHERE meter_id = :m AND device_id = :d",
            m=meter["id"],
            d=hh.store.meta("device_id"),
        )
        assert rows[0]["n"] == 1
        hh.close()


@pytest.mark.e2e
def test_acknowledged_work_survives_a_server_restored_from_an_older_backup(tmp_path):
    """The server's database is restored from a backup taken before a handheld's last sync: the handheld
    learns it at hello (its newest acknowledged change is unknown), re-sends its journal and outbox, and
    downloads its scope again; the server ends with every reading exactly once (DESIGN.md invariant 8)."""
    import sqlite3

    from tests.e2e.conftest import start_server

    with start_server(tmp_path / "srv", "sqlite") as live:
        db_file = live.database_url.removeprefix("sqlite:///")
        hh = handheld(live, tmp_path, "reader1", "restore")
        hh.sync()
        route = hh.status()["routes"][0]["id"]
        walk = hh.readings.walk(route)
        first = hh.readings.record(walk[0]["id"], walk[0]["last_value"], confirm=walk[0]["last_value"])
        hh.sync()
        live.stop()
        backup = tmp_path / "backup.db"
        with sqlite3.connect(db_file) as source, sqlite3.connect(backup) as target:
            source.backup(target)
        live.start()
        later = [hh.readings.skip(walk[1]["id"], "dog"), hh.readings.skip(walk[2]["id"], "locked_gate")]
        # acknowledged, so they leave the outbox; the link drops before the pull, so the cursor still
        # points into the backup's history and only the acknowledgement can reveal the loss
        cancel = threading.Event()

        def stop_after_push(stage: str, done: int, total: int) -> None:
            if stage == "push" and total and done == total:
                cancel.set()

        with pytest.raises(Cancelled):
            hh.sync(progress=stop_after_push, cancel=cancel)
        assert hh.status()["pending_changes"] == 0
        live.stop()
        with sqlite3.connect(backup) as source, sqlite3.connect(db_file) as target:
            source.backup(target)  # the restore: the server forgets the two skips
        live.start()
        assert not server_rows(live, "SELECT id FROM meter_readings WHERE id = :r", r=later[0]["id"])
        report = hh.sync()
        assert report.resynced
        ids = [first["id"], *(r["id"] for r in later)]
        rows = server_rows(live, "SELECT id FROM meter_readings WHERE device_id = :d", d=hh.store.meta("device_id"))
        assert sorted(r["id"] for r in rows) == sorted(ids)
        progress = hh.readings.progress(route)
        assert (progress["read"], progress["skipped"]) == (1, 2)
        assert hh.sync().resynced is False  # and the next sync is an ordinary one
        hh.close()
