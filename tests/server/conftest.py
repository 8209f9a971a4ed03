"""Fixtures for server tests: an app on a fresh SQLite file or a fresh PostgreSQL schema, a small
world of users, customers, a route and jobs, and a handheld helper speaking the sync protocol."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from server import create_app
from server.cli import init_database
from server.extensions import db
from tests.server.world import World, build_world

PG_URL = os.environ.get("FIELDSYNC_TEST_PG_URL")
BACKENDS = ["sqlite", "postgresql"]


def pg_schema_url(base_url: str, schema: str) -> str:
    """A URL whose connections use `schema` (search_path), so each test run has its own tables."""
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need FIELDSYNC_TEST_PG_URL (set by .ci/run); skipped")
    schema = f"fs_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_schema_url(PG_URL, schema)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def app(database_url: str, tmp_path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "test"},
                     instance_path=str(tmp_path / "instance"))
    with app.app_context():
        init_database()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def world(app: Flask) -> World:
    with app.app_context():
        return build_world()
