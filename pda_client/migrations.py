"""The local schema and its in-place migrations. Each step runs once, in order, inside the store's
opening transaction; `meta.schema_version` records the last applied. Steps never touch the outbox's
rows: an app upgrade must not lose work that is waiting to sync."""

from __future__ import annotations

import sqlite_utils

from .errors import DatabaseTooNew

STEPS: list[list[str]] = [
    # 1: the first release
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY, number TEXT, customer_id TEXT, premise_id TEXT, job_type TEXT, summary TEXT,
            priority INTEGER, assigned_to TEXT, scheduled_start TEXT, scheduled_end TEXT,
            requires_signature INTEGER, created_at TEXT, status TEXT, round INTEGER, status_hlc TEXT,
            resolution_code TEXT, cause TEXT, resolution_note TEXT, follow_up_needed INTEGER,
            contact_name TEXT, field_hlc TEXT, server_state TEXT)""",
        """CREATE TABLE job_events (
            id TEXT PRIMARY KEY, job_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT, round INTEGER,
            text TEXT, material_code TEXT, quantity REAL, unit TEXT, recorded_at TEXT NOT NULL, gps TEXT,
            hlc TEXT, author_id TEXT, source TEXT, received_at TEXT, flags TEXT, pending INTEGER DEFAULT 0)""",
        "CREATE INDEX ix_job_events_job ON job_events (job_id)",
        """CREATE TABLE routes (
            id TEXT PRIMARY KEY, code TEXT, name TEXT, assigned_to TEXT, cycle_start TEXT, cycle_end TEXT,
            meter_count INTEGER)""",
        """CREATE TABLE meters (
            id TEXT PRIMARY KEY, number TEXT, premise_id TEXT, route_id TEXT, route_seq INTEGER,
            meter_class TEXT, dials INTEGER, multiplier REAL, avg_daily REAL, low_factor REAL,
            high_factor REAL, last_value INTEGER, last_read_at TEXT, last_read_type TEXT,
            consecutive_estimates INTEGER)""",
        "CREATE INDEX ix_meters_route ON meters (route_id, route_seq)",
        "CREATE INDEX ix_meters_number ON meters (number)",
        """CREATE TABLE premises (
            id TEXT PRIMARY KEY, customer_id TEXT, address TEXT, lat REAL, lon REAL, hazards TEXT,
            access_notes TEXT)""",
        """CREATE TABLE customers (
            id TEXT PRIMARY KEY, account_no TEXT, name TEXT, phone TEXT, segment TEXT, vip INTEGER)""",
        """CREATE TABLE readings (
            id TEXT PRIMARY KEY, meter_id TEXT NOT NULL, value INTEGER, reading_type TEXT, skip_code TEXT,
            trouble_code TEXT, comment_code TEXT, note TEXT, read_at TEXT NOT NULL, supersedes TEXT, gps TEXT,
            [check] TEXT, hlc TEXT, reader_id TEXT, received_at TEXT, flags TEXT, pending INTEGER DEFAULT 0)""",
        "CREATE INDEX ix_readings_meter ON readings (meter_id, read_at)",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, change_id TEXT UNIQUE NOT NULL, entity TEXT NOT NULL,
            entity_id TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL,
            attempts INTEGER DEFAULT 0, last_error TEXT)""",
    ],
    # 2: conflicts and rejections shown to the crew
    [
        """CREATE TABLE conflicts (
            id TEXT PRIMARY KEY, kind TEXT, entity TEXT, entity_id TEXT, field TEXT, winner TEXT,
            winner_hlc TEXT, loser TEXT, loser_hlc TEXT, change_id TEXT, created_at TEXT,
            seen INTEGER DEFAULT 0)""",
        """CREATE TABLE rejected (
            change_id TEXT PRIMARY KEY, entity TEXT, entity_id TEXT, payload TEXT, code TEXT, message TEXT,
            fields TEXT, rejected_at TEXT)""",
    ],
    # 3: resumable full re-download (resync) keeps track of what the new snapshot delivered
    [
        "CREATE TABLE resync_seen (entity TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (entity, id))",
        # changes the server acknowledged, kept for a while: re-sent if the server turns out to have lost
        # them (a database restored from a backup), so acknowledged work survives a restore
        """CREATE TABLE journal (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, change_id TEXT UNIQUE NOT NULL, payload TEXT NOT NULL,
            acknowledged_at TEXT NOT NULL)""",
    ],
    # 4: indexes for every entry (bench device_ops): a job's pending edits merged on each change, and
    # jobs looked up by number as typed
    [
        "CREATE INDEX ix_outbox_entity ON outbox (entity, entity_id)",
        "CREATE INDEX ix_jobs_number ON jobs (number)",
    ],
]

SCHEMA_VERSION = len(STEPS)


def current_version(db: sqlite_utils.Database) -> int:
    if "meta" not in db.table_names():
        return 0
    rows = list(db.query("SELECT value FROM meta WHERE key = 'schema_version'"))
    return int(rows[0]["value"]) if rows else 0


def migrate(db: sqlite_utils.Database, target: int = SCHEMA_VERSION) -> int:
    """Apply the missing steps up to `target` (the caller holds a transaction). Returns the new version."""
    version = current_version(db)
    if version > SCHEMA_VERSION:
        raise DatabaseTooNew(
            f"This database was written by a newer app (schema {version} > {SCHEMA_VERSION}): update the app."
        )
    for number in range(version + 1, target + 1):
        for statement in STEPS[number - 1]:
            db.execute(statement)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", [str(number)])
    return max(version, target)
