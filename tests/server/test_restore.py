"""DESIGN invariant 8, restore-safe: after the server's database is restored from a backup, a device is
told resync_required, on its next pull when its cursor names a change-log row the restored database does
not hold, or on hello when the last change the server acknowledged to it (`last_ack`) has no receipt.
It pushes its changes again (idempotent), takes a fresh snapshot, and nothing it pushed is lost.
`flask rotate-epoch` forces a resync of every device.

Backups are taken the way docs/operations.md tells operators to: SQLite with sqlite3's online backup
API, PostgreSQL with pg_dump / pg_restore.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from server.extensions import db
from server.models import ChangeReceipt, MeterReading
from tests.server.world import Handheld, enrol


class Backup:
    """Takes one backup of the app's database and restores it over the live one."""

    def __init__(self, app: Flask, database_url: str, directory: Path) -> None:
        self.app = app
        self.url = sa.make_url(database_url)
        self.file = directory / ("backup.db" if self.url.get_backend_name() == "sqlite" else "backup.dump")

    def _close_connections(self) -> None:
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()

    def _libpq(self) -> tuple[str, str]:
        """A libpq URL without the search_path option, and the schema that option names."""
        options = self.url.query.get("options", "")
        schema = str(options).removeprefix("-csearch_path=")
        plain = self.url.set(drivername="postgresql").difference_update_query(["options"])
        return plain.render_as_string(hide_password=False), schema

    def take(self) -> None:
        self._close_connections()
        if self.url.get_backend_name() == "sqlite":
            with sqlite3.connect(self.url.database) as live, sqlite3.connect(self.file) as copy:
                live.backup(copy)
            return
        url, schema = self._libpq()
        subprocess.run(["pg_dump", "--format=custom", f"--schema={schema}", f"--file={self.file}", url],
                       check=True, capture_output=True)

    def restore(self) -> None:
        self._close_connections()
        if self.url.get_backend_name() == "sqlite":
            with sqlite3.connect(self.file) as copy, sqlite3.connect(self.url.database) as live:
                copy.backup(live)
            return
        url, schema = self._libpq()
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:  # restore into an emptied schema
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        finally:
            engine.dispose()
        subprocess.run(["pg_restore", "--single-transaction", "--exit-on-error", f"--dbname={url}", str(self.file)],
                       check=True, capture_output=True)


@pytest.fixture
def backup(app: Flask, database_url: str, tmp_path: Path) -> Backup:
    if database_url.startswith("postgresql") and not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("PostgreSQL backup tests need pg_dump and pg_restore on PATH")
    return Backup(app, database_url, tmp_path)


class Journal:
    """Every change the device pushed with the server's answer. A handheld keeps its pushed changes
    after acknowledgement so it can push them again on resync_required (DESIGN invariant 8)."""

    def __init__(self, device: Handheld) -> None:
        self.device = device
        self.entries: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def push(self, *changes: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.device.push(*changes)
        assert response.status_code == 200, response.get_json()
        results = response.get_json()["results"]
        assert [r["status"] for r in results] == ["applied"] * len(changes), results
        self.entries.extend(zip(changes, results, strict=True))
        return results

    def push_again(self) -> list[dict[str, Any]]:
        response = self.device.push(*(change for change, _ in self.entries))
        assert response.status_code == 200, response.get_json()
        return response.get_json()["results"]

    @property
    def results(self) -> list[dict[str, Any]]:
        return [result for _, result in self.entries]


def _pull(device: Handheld) -> Any:
    return device.client.get("/api/v1/sync/pull", query_string={"cursor": device.cursor}, headers=device.headers)


def _stored_readings(app: Flask, ids: list[str]) -> dict[str, int]:
    with app.app_context():
        readings = db.session.execute(
            sa.select(MeterReading.id, MeterReading.value).where(MeterReading.id.in_(ids))
        ).all()
        receipts = db.session.execute(
            sa.select(sa.func.count()).select_from(ChangeReceipt).where(ChangeReceipt.entity_id.in_(ids))
        ).scalar_one()
        db.session.rollback()
    assert receipts == len(ids), "one receipt per change, however often it was pushed"
    return dict(readings)


def test_restored_backup_forces_resync_and_nothing_pushed_is_lost(app, client, world, backup):
    with app.app_context():
        device = enrol(client, "reader")
    journal = Journal(device)
    before = device.reading("M1", 1300)
    journal.push(before)
    device.pull_all()

    backup.take()
    after = [device.reading("M2", 1310), device.reading("M3", 99_600)]
    journal.push(*after)
    assert device.pull_all() == []  # its own readings are not echoed, but the cursor moves past them
    backup.restore()

    response = _pull(device)
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"]["code"] == "resync_required"

    # resync: push everything again, then download the scope afresh
    assert journal.push_again() == journal.results, "a re-push answers exactly as the first push did"
    device.cursor = None
    snapshot = device.pull_all()
    readings = {r["id"]: r["data"]["value"] for r in snapshot if r["entity"] == "meter_reading"}
    ids = [before["entity_id"], *(c["entity_id"] for c in after)]
    assert readings == {before["entity_id"]: 1300, after[0]["entity_id"]: 1310, after[1]["entity_id"]: 99_600}
    assert journal.push_again() == journal.results, "and a second retry changes nothing"
    assert _stored_readings(app, ids) == readings

    # back to incremental pulls on the restored database
    assert device.pull_all() == []
    with app.app_context():
        spare = enrol(client, "reader", "spare")  # the same reader's second handheld
    spare.pull_all()
    extra = device.reading("M4", 1320)
    journal.push(extra)
    assert device.pull_all() == []  # its own change is not echoed back
    assert [r["id"] for r in spare.pull_all()] == [extra["entity_id"]]


def test_cursor_from_before_the_backup_stays_servable(app, client, world, backup):
    """A device that had not pulled past the backup point loses nothing to the restore: its cursor is
    still good, and it continues without a resync."""
    with app.app_context():
        device = enrol(client, "reader")
    device.pull_all()
    backup.take()
    backup.restore()
    assert _pull(device).status_code == 200
    change = device.reading("M1", 1300)
    Journal(device).push(change)
    assert device.pull_all() == []  # served (no resync); its own change is not echoed back


def _hello(device: Handheld, last_ack: str) -> Any:
    return device.client.get("/api/v1/sync/hello", query_string={"last_ack": last_ack}, headers=device.headers)


def test_restore_is_detected_after_a_push_without_a_pull(app, client, world, backup):
    """A push acknowledged after the backup, then no pull before the restore: the cursor still names a
    row the restored database holds, so only the device's last acknowledged change id (hello's
    `last_ack`) reveals that the server lost acknowledged work."""
    with app.app_context():
        device = enrol(client, "reader")
    journal = Journal(device)
    journal.push(device.reading("M1", 1290))
    device.pull_all()
    backup.take()
    lost = device.reading("M2", 1300)
    journal.push(lost)  # acknowledged; the pull that would follow never happens
    backup.restore()

    response = _hello(device, last_ack=lost["change_id"])
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"]["code"] == "resync_required"

    assert journal.push_again() == journal.results
    assert _hello(device, last_ack=lost["change_id"]).status_code == 200
    device.cursor = None
    assert lost["entity_id"] in {r["id"] for r in device.pull_all() if r["entity"] == "meter_reading"}


def test_rotate_epoch_forces_resync(app, client, world, runner):
    with app.app_context():
        device = enrol(client, "reader")
    epoch = device.hello().get_json()["epoch"]
    device.pull_all()

    result = runner.invoke(args=["rotate-epoch"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("new epoch ")

    response = _pull(device)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "resync_required"
    new_epoch = device.hello().get_json()["epoch"]
    assert new_epoch != epoch and result.output.split()[-1] == new_epoch
    device.cursor = None
    assert {("route", "R1"), ("meter", "M1")} <= {(r["entity"], r["id"]) for r in device.pull_all()}
    assert _pull(device).status_code == 200
