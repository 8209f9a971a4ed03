"""Helpers shared by the API tests: enrolled handhelds, error-envelope checks, and database snapshots
for asserting that a refused request wrote nothing."""

from __future__ import annotations

import contextlib
import gzip
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from server import create_app
from server.cli import init_database
from server.extensions import db
from sync_protocol import ERRORS
from tests.server.conftest import PG_URL, pg_schema_url
from tests.server.world import Handheld, enrol


def device(app: Flask, client: FlaskClient, username: str, name: str = "handheld") -> Handheld:
    """A handheld of `username`, enrolled through the API."""
    with app.app_context():
        return enrol(client, username, name)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the protocol's error envelope with this status and code; returns the error."""
    assert response.status_code == status, (response.status_code, response.data[:500])
    assert response.mimetype == "application/json", response.mimetype
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert_error_shape(body["error"], code)
    assert ERRORS[code].status == status
    return body["error"]


def assert_error_shape(error: dict[str, Any], code: str) -> None:
    """An error value (whole-request or per-change) is {"code", "message", "fields"} with this code."""
    assert set(error) == {"code", "message", "fields"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["fields"], dict), error
    for path, messages in error["fields"].items():
        assert isinstance(path, str) and isinstance(messages, list), error
        assert all(isinstance(m, str) for m in messages), error


def rejected(result: dict[str, Any], code: str) -> dict[str, Any]:
    """A per-change result rejected with `code`; returns its error."""
    assert result["status"] == "rejected", result
    assert_error_shape(result["error"], code)
    return result["error"]


def table_dump(app: Flask, exclude: Iterable[str] = ()) -> dict[str, list[str]]:
    """Every row of every table (as sorted text), to compare before and after a request."""
    skip = set(exclude)
    with app.app_context():
        dump = {
            table.name: sorted(repr(tuple(row)) for row in db.session.execute(sa.select(table)))
            for table in db.metadata.sorted_tables
            if table.name not in skip
        }
        db.session.rollback()
    return dump


def counts(app: Flask, *tables: str) -> dict[str, int]:
    with app.app_context():
        result = {
            name: db.session.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
            for name in tables
        }
        db.session.rollback()
    return result


def gzipped(payload: Any) -> bytes:
    return gzip.compress(json.dumps(payload).encode(), mtime=0)


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@contextlib.contextmanager
def fresh_app(like: Flask, tmp_path: Any, *, initialise: bool = True) -> Iterator[Flask]:
    """Another app on a new, empty database of the same backend as `like` (SQLite file or PG schema)."""
    name = uuid.uuid4().hex[:12]
    is_pg = like.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    engine = None
    if is_pg:
        assert PG_URL
        schema = f"fs_test_{name}"
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = pg_schema_url(PG_URL, schema)
    else:
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test"},
        instance_path=str(tmp_path / f"instance-{name}"),
    )
    try:
        if initialise:
            with app.app_context():
                init_database()
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if engine is not None:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()
