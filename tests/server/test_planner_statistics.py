"""The query planner's statistics: init-db and seed-demo refresh them (SQLite has none until ANALYZE,
and then picks poor indexes on the service-centre pages), and `flask analyze` refreshes them on demand
(to run periodically). On PostgreSQL the same commands run ANALYZE and succeed."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from server.extensions import db
from tests.server.helpers import fresh_app


def _sqlite(app: Flask) -> bool:
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


def _analysed_tables(app: Flask) -> set[str]:
    """The tables SQLite holds statistics for (sqlite_stat1; empty before the first ANALYZE)."""
    with app.app_context():
        if not db.session.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            return set()
        return set(db.session.execute(sa.text("SELECT DISTINCT tbl FROM sqlite_stat1")).scalars())


def test_the_analyze_command_gathers_statistics_of_the_data(app: Flask, runner, world) -> None:
    if _sqlite(app):
        assert "meters" not in _analysed_tables(app)  # the world was added after init-db, to empty tables
    result = runner.invoke(args=["analyze"])
    assert result.exit_code == 0, result.output
    if _sqlite(app):
        assert {"meters", "customers", "users", "jobs"} <= _analysed_tables(app)


def test_init_db_runs_analyze(app: Flask, tmp_path) -> None:
    with fresh_app(app, tmp_path, initialise=False) as new:
        result = new.test_cli_runner().invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        if _sqlite(new):
            with new.app_context():
                stat = db.session.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"))
                assert stat.first() is not None
