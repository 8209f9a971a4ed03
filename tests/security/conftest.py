"""Fixtures for the security suite.

- `app`, `client`, `world`: the server tests' function-scoped fixtures (a fresh database per test, SQLite and,
  with FIELDSYNC_TEST_PG_URL, PostgreSQL), for tests that need a pristine world (rate limits, secrets).
- `env`: one app per test module and backend holding every kind of principal at once (tests/security/env.py).
  The authorisation matrix sends several hundred requests; a fresh database per request would take minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from server import create_app
from server.cli import init_database
from server.extensions import db
from tests.security.env import Env, build_env
from tests.server.conftest import BACKENDS, PG_URL, app, client, database_url, pg_schema_url, runner, world  # noqa: F401


@pytest.fixture(scope="module", params=BACKENDS)
def shared_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app on its own database, shared by the tests of one module (per backend)."""
    tmp = tmp_path_factory.mktemp("security")
    engine = schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'security.db'}"
    else:
        if not PG_URL:
            pytest.skip("PostgreSQL tests need FIELDSYNC_TEST_PG_URL (set by .ci/run); skipped")
        schema = f"fs_test_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = pg_schema_url(PG_URL, schema)
    # The rate limits have their own tests (test_brute_force.py); here hundreds of requests come from one
    # address, and must be judged on who sends them, not on how many.
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "test",
        "ENROLL_ATTEMPTS_PER_WINDOW": 1_000_000,
        "LOGIN_ATTEMPTS_PER_WINDOW": 1_000_000,
        "LOGIN_ATTEMPTS_PER_USER_WINDOW": 1_000_000,
    }
    shared = create_app(config, instance_path=str(tmp / "instance"))
    with shared.app_context():
        init_database()
    try:
        yield shared
    finally:
        with shared.app_context():
            db.session.remove()
            db.engine.dispose()
        if engine is not None:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()


@pytest.fixture(scope="module")
def env(shared_app: Flask) -> Env:
    return build_env(shared_app)
