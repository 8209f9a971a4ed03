"""The handheld's local store: one SQLite file (sqlite-utils), the device's scoped copy of the server's
data, its own pending work, the outbox and the sync state.

Durability: WAL with synchronous=FULL, and every domain operation writes its record and its outbox entry
in one transaction (`LocalStore.transaction()`), so a battery dying mid-write leaves either both or
neither. The schema has a version and migrates in place (migrations.py) without touching the outbox.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from .migrations import migrate

# Copying the WAL back into the database costs ~8 ms per 1,000 pages; at SQLite's default (every 1,000
# pages, ~100 entries here) that lands on one crew entry in a hundred, i.e. on the p99. Each sync
# checkpoints instead (`checkpoint`); this bound (~40 MB, days of entries) only matters without syncs.
WAL_AUTOCHECKPOINT_PAGES = 10_000

JSON_COLUMNS = {
    "jobs": ("field_hlc", "server_state"),
    "job_events": ("gps", "flags"),
    "readings": ("gps", "check", "flags"),
    "premises": ("hazards",),
    "outbox": ("payload",),
    "journal": ("payload",),
    "rejected": ("payload", "fields"),
    "conflicts": ("winner", "loser"),
}


class LocalStore:
    """Thread-safe access to the handheld database (one connection, serialised by a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=15)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        connection.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(connection)
        self._lock = threading.RLock()
        self._depth = 0
        self._columns: dict[str, set[str]] = {}
        try:
            with self.transaction():
                migrate(self.db)
        except BaseException:
            connection.close()  # a refused file (e.g. from a newer app) is released at once, unchanged
            raise

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database now, when nobody waits on an entry (a PASSIVE
        checkpoint never blocks, and copies what no open read still needs)."""
        with self._lock:
            self.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One atomic unit of work (nested calls join the outer transaction)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self.db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self.db
            except BaseException:
                self._depth -= 1
                if outer:
                    self.db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self.db.execute("COMMIT")

    # --- small helpers --------------------------------------------------------------------------

    # Reads take the lock too: the one connection is shared, and a read must not see (or land inside)
    # another thread's open transaction. Plain sqlite3 cursors, not sqlite-utils' queries: those wrap every
    # read in a savepoint, three statements where one does (every entry on the device reads several rows).

    def meta(self, key: str, default: Any = None) -> Any:
        rows = self.rows("SELECT value FROM meta WHERE key = ?", [key])
        return json.loads(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():  # updated in place (INSERT OR REPLACE would move the row: more pages to sync)
            self.db.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, json.dumps(value)],
            )

    def get(self, table: str, pk: str) -> dict[str, Any] | None:
        rows = self.rows(f"SELECT * FROM [{table}] WHERE id = ?", [pk])
        return decode(table, rows[0]) if rows else None

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.db.conn.execute(sql, params)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor]

    def update(self, table: str, pk: str, values: dict[str, Any]) -> None:
        """Change some columns of an existing row (no-op when the row is absent)."""
        encoded = encode(table, values)
        assignments = ", ".join(f"[{name}] = ?" for name in encoded)
        self.db.execute(f"UPDATE [{table}] SET {assignments} WHERE id = ?", [*encoded.values(), pk])

    def upsert(self, table: str, row: dict[str, Any]) -> None:
        """Insert or update one row by id (see upsert_many)."""
        self.upsert_many(table, [row])

    def upsert_many(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Insert or update rows by id, in order (the caller holds the transaction). An update sets only
        the columns a row names; keys the table has no column for are left out: a newer server may send
        fields this app version does not know yet. Rows naming the same columns go in one executemany."""
        columns = self._table_columns(table)
        run_names: tuple[str, ...] | None = None
        run: list[tuple[Any, ...]] = []
        for row in rows:
            encoded = encode(table, row)
            names = tuple(name for name in encoded if name in columns)
            if names != run_names:
                self._write_upserts(table, run_names, run)
                run_names, run = names, []
            run.append(tuple(encoded[name] for name in names))
        self._write_upserts(table, run_names, run)

    def _write_upserts(self, table: str, names: tuple[str, ...] | None, values: list[tuple[Any, ...]]) -> None:
        if names and values:
            self.db.conn.executemany(_upsert_sql(table, names), values)

    def _table_columns(self, table: str) -> set[str]:
        columns = self._columns.get(table)
        if columns is None:
            columns = self._columns[table] = {row[1] for row in self.db.conn.execute(f"PRAGMA table_info([{table}])")}
        return columns


@functools.cache
def _upsert_sql(table: str, names: tuple[str, ...]) -> str:
    updates = ", ".join(f"[{name}] = excluded.[{name}]" for name in names if name != "id")
    return (
        f"INSERT INTO [{table}] ({', '.join(f'[{name}]' for name in names)}) "
        f"VALUES ({', '.join('?' for _ in names)}) "
        f"ON CONFLICT(id) DO {'UPDATE SET ' + updates if updates else 'NOTHING'}"
    )


def encode(table: str, row: dict[str, Any]) -> dict[str, Any]:
    encoded = dict(row)
    for name in JSON_COLUMNS.get(table, ()):
        if name in encoded and encoded[name] is not None:
            encoded[name] = json.dumps(encoded[name], ensure_ascii=False, sort_keys=True)
    return encoded


def decode(table: str, row: dict[str, Any]) -> dict[str, Any]:
    decoded = dict(row)
    for name in JSON_COLUMNS.get(table, ()):
        if isinstance(decoded.get(name), str):
            decoded[name] = json.loads(decoded[name])
    return decoded
