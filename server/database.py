"""Engine settings and the write-transaction helper shared by every service that changes data.

SQLite (embedded default): WAL, synchronous=FULL (an acknowledged push survives power loss), foreign
keys on, and write transactions that take the write lock up front (BEGIN IMMEDIATE) so they never fail
half-way on a stale snapshot. PostgreSQL: READ COMMITTED with row locks where a merge reads then writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .extensions import db

log = logging.getLogger(__name__)
T = TypeVar("T")
WRITE_OPTION = "fieldsync_write"
RETRIES = 5


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True  # a concurrent duplicate (same change or fact id): the retry sees it and answers from it
    if isinstance(exc, OperationalError | DBAPIError):
        text = str(exc).lower()
        return any(word in text for word in ("locked", "deadlock", "could not serialize", "busy"))
    return False


def write_transaction(work: Callable[[], T]) -> T:
    """Run `work` in one write transaction and commit; retry from scratch on a concurrency clash.

    `work` must only touch the database through db.session (it may run more than once).
    """
    for attempt in range(1, RETRIES + 1):
        db.session.rollback()  # end any read transaction (e.g. authentication) first
        try:
            db.session.connection(execution_options={WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
            result = work()
            db.session.commit()
            return result
        except Exception as exc:
            db.session.rollback()
            if attempt == RETRIES or not _retryable(exc):
                raise
            log.info("write transaction clashed (%s), retrying", type(exc).__name__)
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")


def best_effort_write(work: Callable[[], None]) -> None:
    """Bookkeeping that must never fail the request it belongs to (e.g. a device's last-seen time):
    one attempt, and a failure is logged and dropped."""
    try:
        db.session.rollback()
        db.session.connection(execution_options={WRITE_OPTION: True})
        work()
        db.session.commit()
    except Exception as exc:  # the answer is already computed; a timestamp is not worth a failure
        db.session.rollback()
        log.warning("skipped bookkeeping write: %s", exc)


def analyze() -> None:
    """Refresh the query planner's statistics and commit. SQLite keeps none until ANALYZE runs, and
    without them it picks poor indexes on the service-centre pages (KPIs 11 s -> 3.5 s at 1M readings);
    run after migrations and bulk loads (init-db, seed-demo, quickstart do) and periodically
    (`flask analyze`, e.g. nightly). PostgreSQL's autovacuum analyzes on its own; an explicit pass after
    a bulk load saves waiting for it."""
    db.session.commit()
    if db.engine.dialect.name == "sqlite":
        db.session.execute(text("ANALYZE"))
        db.session.execute(text("PRAGMA optimize"))
    else:
        db.session.execute(text("ANALYZE"))
    db.session.commit()
