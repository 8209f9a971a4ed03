"""The handheld's local store: one SQLite file (sqlite-utils), the device's scoped copy of the server's
data, its own pending work, the outbox and the sync state.

Durability: WAL with synchronous=FULL, and every domain operation writes its record and its outbox entry
in one transaction (`LocalStore.transaction()`), so a battery dying mid-write leaves either both or
neither. The schema has a version and migrates in place (migrations.py) without touching the outbox.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from .migrations import migrate

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

    # Reads take the lock too: sqlite-utils wraps each query in a savepoint on the one shared connection,
    # which must not land inside (or open a transaction under) another thread's transaction.

    def meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            rows = list(self.db.query("SELECT value FROM meta WHERE key = ?", [key]))
        return json.loads(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self.db["meta"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    def get(self, table: str, pk: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db.query(f"SELECT * FROM [{table}] WHERE id = ?", [pk]))
        return decode(table, rows[0]) if rows else None

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self.db.query(sql, params)]

    def update(self, table: str, pk: str, values: dict[str, Any]) -> None:
        """Change some columns of an existing row (no-op when the row is absent)."""
        encoded = encode(table, values)
        assignments = ", ".join(f"[{name}] = ?" for name in encoded)
        self.db.execute(f"UPDATE [{table}] SET {assignments} WHERE id = ?", [*encoded.values(), pk])

    def upsert(self, table: str, row: dict[str, Any]) -> None:
        """Insert or update by id. Keys the table has no column for are left out: a newer server may send
        fields this app version does not know yet."""
        columns = self._columns.get(table)
        if columns is None:
            columns = self._columns[table] = {c.name for c in self.db[table].columns}
        self.db[table].upsert({k: v for k, v in encode(table, row).items() if k in columns}, pk="id", alter=False)


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
