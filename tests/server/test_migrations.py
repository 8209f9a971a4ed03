"""Schema changes go through migrations: `flask db upgrade` builds the whole schema on an empty database,
and the migrations agree with the models exactly (what `flask db migrate` would generate is nothing)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from server import MIGRATIONS
from server.extensions import db
from tests.server.helpers import fresh_app


def _tables(app) -> set[str]:
    with app.app_context():
        return set(sa.inspect(db.engine).get_table_names())


def _script(app) -> ScriptDirectory:
    with app.app_context():
        return ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config(str(MIGRATIONS)))


def _diff(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, db.metadata)


def test_db_upgrade_builds_the_schema_on_an_empty_database(app, tmp_path):
    with fresh_app(app, tmp_path, initialise=False) as new:
        assert _tables(new) == set()
        result = new.test_cli_runner().invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert _tables(new) == {table.name for table in db.metadata.sorted_tables} | {"alembic_version"}
        with new.app_context():
            version = db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == _script(new).get_current_head()
        assert _diff(new) == []


def test_migrations_match_the_models(app):
    assert _diff(app) == []


def test_the_migration_history_is_one_line(app):
    script = _script(app)
    assert len(script.get_heads()) == 1, script.get_heads()
    assert len(script.get_bases()) == 1, script.get_bases()


def test_the_comparison_sees_a_difference(app):
    """Guards the test above against comparing nothing: a model column the migrations lack is found."""
    changed = sa.MetaData()
    for table in db.metadata.sorted_tables:
        table.to_metadata(changed)
    sa.Table("users", changed, sa.Column("nickname", sa.String(20)), extend_existing=True)
    with app.app_context(), db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), changed)
    assert [(op[0], op[2], op[3].name) for op in diff] == [("add_column", "users", "nickname")]
