"""The local database: durable settings, in-place migration that never touches the outbox, refusal of a
file written by a newer app, and atomic transactions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from pda_client import Handheld
from pda_client.errors import DatabaseTooNew
from pda_client.migrations import SCHEMA_VERSION, STEPS, current_version, migrate
from pda_client.store import LocalStore

# Outbox rows exactly as the first release wrote them (gaps in seq: some were already acknowledged).
OLD_OUTBOX = [
    {
        "seq": 3,
        "change_id": "0b6c7d1e-0000-4000-8000-000000000003",
        "entity": "meter_reading",
        "entity_id": "MR-old-1",
        "payload": json.dumps(
            {
                "change_id": "0b6c7d1e-0000-4000-8000-000000000003",
                "entity": "meter_reading",
                "entity_id": "MR-old-1",
                "hlc": "1749000000000-0000-D-old",
                "data": {
                    "meter_id": "M-1",
                    "value": 12345,
                    "read_at": "2025-06-04T01:20:00.000Z",
                    "note": "Zaun kaputt \u2013 Hund \u72d7",
                },
            },
            ensure_ascii=False,
            sort_keys=True,
        ),
        "created_at": "2025-06-04T01:20:00.125Z",
        "attempts": 2,
        "last_error": "the server answered 503",
    },
    {
        "seq": 7,
        "change_id": "0b6c7d1e-0000-4000-8000-000000000007",
        "entity": "job_event",
        "entity_id": "E-old-2",
        "payload": '{"change_id": "0b6c7d1e-0000-4000-8000-000000000007", "data": {"job_id": "J-1", '
        '"kind": "note", "recorded_at": "2025-06-04T01:21:00.000Z", "text": "  spaces kept  "}, '
        '"entity": "job_event", "entity_id": "E-old-2", "hlc": "1749000000001-0000-D-old"}',
        "created_at": "2025-06-04T01:21:00.000Z",
        "attempts": 0,
        "last_error": None,
    },
    {
        "seq": 8,
        "change_id": "0b6c7d1e-0000-4000-8000-000000000008",
        "entity": "job",
        "entity_id": "J-1",
        "payload": '{"base": {"cause": null}, "change_id": "0b6c7d1e-0000-4000-8000-000000000008", '
        '"data": {"cause": "tree on line"}, "entity": "job", "entity_id": "J-1", '
        '"hlc": "1749000000002-0000-D-old"}',
        "created_at": "2025-06-04T01:22:00.000Z",
        "attempts": 0,
        "last_error": None,
    },
]


def raw_outbox(path: Path) -> list[tuple]:
    """The outbox as stored bytes, in seq order, read without the app's code."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT seq, change_id, entity, entity_id, CAST(payload AS BLOB), created_at, attempts, last_error,"
            " typeof(payload) FROM outbox ORDER BY seq"
        ).fetchall()
    finally:
        connection.close()


def write_version_1_database(path: Path) -> None:
    """A handheld database as the first release left it: schema 1, enrolled, three changes waiting."""
    db = sqlite_utils.Database(path)
    migrate(db, target=1)
    db["outbox"].insert_all(OLD_OUTBOX)
    for key, value in (
        ("device_id", "D-old"),
        ("token", "tok-old"),
        ("user_id", "U-lena"),
        ("server_url", "https://fieldsync.example.net"),
        ("cursor", "c-41"),
        ("hlc_last", "1749000000002-0000-D-old"),
    ):
        db["meta"].insert({"key": key, "value": json.dumps(value)})
    db.close()


def test_version_1_database_migrates_in_place_keeping_every_outbox_row_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "handheld.db"
    write_version_1_database(path)
    before = raw_outbox(path)
    assert [row[0] for row in before] == [3, 7, 8]

    store = LocalStore(path)
    try:
        assert current_version(store.db) == SCHEMA_VERSION
        assert {"conflicts", "rejected", "resync_seen"} <= set(store.db.table_names())
        assert store.meta("token") == "tok-old"
        assert store.meta("cursor") == "c-41"
    finally:
        store.close()

    assert raw_outbox(path) == before


def test_migrated_database_still_pushes_its_old_changes_in_order(tmp_path: Path) -> None:
    write_version_1_database(tmp_path / "handheld.db")
    handheld = Handheld(tmp_path)
    try:
        assert handheld.enrolled
        assert handheld.status()["pending_changes"] == 3
        assert [entry["payload"]["change_id"] for entry in handheld.outbox()] == [r["change_id"] for r in OLD_OUTBOX]
        assert handheld.outbox()[0]["payload"]["data"]["note"] == "Zaun kaputt \u2013 Hund \u72d7"
        # the restored clock continues after the old app's last stamp
        assert str(handheld.clock.now()) > "1749000000002-0000-D-old"
    finally:
        handheld.close()


def test_new_changes_after_migration_queue_behind_the_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "handheld.db"
    write_version_1_database(path)
    store = LocalStore(path)
    try:
        with store.transaction():
            store.db["outbox"].insert(
                {
                    "change_id": "new-1",
                    "entity": "job_event",
                    "entity_id": "E-new",
                    "payload": "{}",
                    "created_at": "2025-06-05T00:00:00.000Z",
                }
            )
        seqs = [r["seq"] for r in store.rows("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        store.close()
    assert seqs == [3, 7, 8, 9]


def test_database_from_a_newer_app_is_refused_with_a_clear_error_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "handheld.db"
    store = LocalStore(path)
    with store.transaction():
        store.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
        store.db.execute("CREATE TABLE photos (id TEXT PRIMARY KEY, data BLOB)")
        store.db["outbox"].insert(
            {
                "change_id": "c-1",
                "entity": "job_event",
                "entity_id": "E-1",
                "payload": "{}",
                "created_at": "2025-06-05T00:00:00.000Z",
            }
        )
    store.close()
    before = path.read_bytes()

    with pytest.raises(DatabaseTooNew, match=r"newer app.*update the app") as refused:
        LocalStore(path)

    assert f"{SCHEMA_VERSION + 1} > {SCHEMA_VERSION}" in refused.value.message
    assert refused.value.code == "database_too_new"
    assert path.read_bytes() == before
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION + 1),
        )
        assert connection.execute("SELECT change_id FROM outbox").fetchall() == [("c-1",)]
    finally:
        connection.close()


def test_refused_database_is_not_left_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused file is released at once (a handheld must be able to replace or back it up)."""
    path = tmp_path / "handheld.db"
    store = LocalStore(path)
    with store.transaction():
        store.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    store.close()
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def spy(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        opened.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", spy)
    with pytest.raises(DatabaseTooNew, match="newer app"):
        LocalStore(path)
    monkeypatch.undo()
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "handheld.db"
    LocalStore(path).close()
    store = LocalStore(path)
    try:
        schema_before = store.rows("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        with store.transaction():
            assert migrate(store.db) == SCHEMA_VERSION
        assert store.rows("SELECT type, name, sql FROM sqlite_master ORDER BY name") == schema_before
        assert current_version(store.db) == SCHEMA_VERSION == len(STEPS)
    finally:
        store.close()


def test_store_runs_in_wal_mode_with_full_synchronous_writes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "handheld.db")
    try:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        store.close()


def test_transaction_rolls_back_every_write_when_interrupted(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "handheld.db")
    try:
        with pytest.raises(KeyboardInterrupt), store.transaction():
            store.set_meta("a", 1)
            with store.transaction():  # nested: joins the outer one
                store.db["outbox"].insert(
                    {"change_id": "c-1", "entity": "job", "entity_id": "J-1", "payload": "{}", "created_at": "x"}
                )
            raise KeyboardInterrupt
        assert store.meta("a") is None
        assert store.rows("SELECT * FROM outbox") == []
        store.set_meta("a", 2)  # the store is usable afterwards
        assert store.meta("a") == 2
    finally:
        store.close()


def test_upsert_ignores_fields_this_app_version_does_not_know(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "handheld.db")
    try:
        with store.transaction():
            store.upsert("customers", {"id": "C-1", "name": "Ann", "vip": 0, "loyalty_tier": "gold"})
        assert store.get("customers", "C-1")["name"] == "Ann"
        assert "loyalty_tier" not in {c.name for c in store.db["customers"].columns}
    finally:
        store.close()
