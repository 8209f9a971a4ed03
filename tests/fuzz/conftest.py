"""Fixtures and checks for the fuzz suite: the server fixtures (an app on SQLite and, with
FIELDSYNC_TEST_PG_URL, PostgreSQL; the small world), enrolled handhelds, a staff API token, a fingerprint
of everything a request could write, and the one check every generated response must pass.

Hypothesis runs many examples inside one test function, so the app and the world are built once per test
(function-scoped fixtures shared by the examples, hence the suppressed health check) and each example makes
its own fresh ids instead of rebuilding the database.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings

from server.extensions import db
from server.models import User
from server.services import apitokens
from sync_protocol import ERRORS
from tests.fuzz.strategies import ISO_NOW
from tests.server.conftest import app, client, database_url, runner, world  # noqa: F401 - shared fixtures
from tests.server.world import Handheld, World, enrol

# Examples per property. An example costs 40-130 ms (requests through the test client, and a fingerprint of
# the database before and after), so the suite default (500, tests/conftest.py) would take many minutes per
# backend; 40 keeps tests/fuzz near a minute per backend. FIELDSYNC_FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("FIELDSYNC_FUZZ_EXAMPLES", "40"))

# Written by a valid authenticated request as bookkeeping, never as an effect of its body.
BOOKKEEPING_COLUMNS: Mapping[str, frozenset[str]] = {
    "devices": frozenset({"last_seen_at", "last_pull_at", "clock_offset_ms"}),
    "api_tokens": frozenset({"last_used_at"}),
}
# Every enrolment attempt counts towards the rate limit, refused ones too (by design).
IGNORED_TABLES = frozenset({"rate_limit_windows"})
# Receipts are written once and never updated, and their payloads can be large (fuzzed 100 kB strings):
# these columns tell every insert or change apart at a fraction of the cost of the whole rows.
KEY_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "change_receipts": ("change_id", "device_id", "status", "fingerprint", "received_at"),
}

Fingerprint = dict[str, tuple[int, str]]


def fuzz_settings(scale: float = 1.0) -> settings:
    """Hypothesis settings for HTTP properties: `scale` x EXAMPLES examples, no deadline (the database,
    PostgreSQL especially, has slow moments), the shared function-scoped fixtures allowed. No example
    database: an example's outcome depends on what earlier examples wrote and on fresh uuids, so a saved
    one does not replay; failures found are kept as explicit regression cases instead."""
    return settings(
        max_examples=max(1, int(EXAMPLES * scale)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def fingerprint(
    app: Flask, *, ignore_tables: Iterable[str] = (), ignore_columns: Mapping[str, Iterable[str]] | None = None
) -> Fingerprint:
    """{table: (row count, hash of its sorted rows)} for every table a request could write."""
    skip_tables = IGNORED_TABLES | set(ignore_tables)
    skip_columns = {name: set(cols) for name, cols in BOOKKEEPING_COLUMNS.items()}
    for name, cols in (ignore_columns or {}).items():
        skip_columns.setdefault(name, set()).update(cols)
    result: Fingerprint = {}
    with app.app_context():
        for table in db.metadata.sorted_tables:
            if table.name in skip_tables:
                continue
            keep = KEY_COLUMNS.get(table.name)
            columns = [
                c
                for c in table.columns
                if c.name not in skip_columns.get(table.name, ()) and (keep is None or c.name in keep)
            ]
            rows = sorted(repr(tuple(row)) for row in db.session.execute(sa.select(*columns)))
            result[table.name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
        db.session.rollback()
    return result


def changed_tables(before: Fingerprint, after: Fingerprint) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def column_values(app: Flask, table: str, column: str) -> set[Any]:
    with app.app_context():
        values = set(db.session.execute(sa.select(sa.column(column)).select_from(sa.table(table))).scalars())
        db.session.rollback()
    return values


def error_of(response: Any) -> dict[str, Any]:
    """The response is the protocol's JSON error envelope with a known code and that code's status."""
    assert response.mimetype == "application/json", (response.status_code, response.mimetype, response.data[:300])
    return envelope_error(response.status_code, response.get_json())


def envelope_error(status: int, body: Any) -> dict[str, Any]:
    """`body` (decoded JSON) is the error envelope with a known code whose HTTP status is `status`."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, error
    assert error["code"] in ERRORS, error
    assert ERRORS[error["code"]].status == status, (status, error)
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["fields"], dict), error
    for path, messages in error["fields"].items():
        assert isinstance(path, str) and isinstance(messages, list), error
        assert all(isinstance(m, str) for m in messages), error
    return error


def assert_clean(response: Any) -> Any:
    """Never a 5xx; always a JSON body; a 4xx is the error envelope. Returns the decoded body."""
    assert response.status_code < 500, (response.status_code, response.data[:500])
    assert response.mimetype == "application/json", (response.status_code, response.mimetype, response.data[:300])
    body = response.get_json()
    if response.status_code >= 400:
        error_of(response)
    return body


def assert_refused_cleanly(app: Flask, response: Any, before: Fingerprint, **fingerprint_options: Any) -> dict:
    """A 4xx error envelope, and the database exactly as it was."""
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:500])
    error = error_of(response)
    after = fingerprint(app, **fingerprint_options)
    assert after == before, ("refused request wrote", changed_tables(before, after), error)
    return error


@pytest.fixture
def reader(app: Flask, client: FlaskClient, world: World) -> Handheld:
    with app.app_context():
        return enrol(client, "reader")


@pytest.fixture
def lineman(app: Flask, client: FlaskClient, world: World) -> Handheld:
    with app.app_context():
        return enrol(client, "lineman")


@pytest.fixture
def staff_headers(app: Flask, world: World) -> dict[str, str]:
    """Authorization for the staff API: a fresh API token of the world's staff user."""
    with app.app_context():
        _, token = apitokens.issue_token(db.session.get(User, world.users["staff"]), "fuzz")
        db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def seed_activity(reader: Handheld, lineman: Handheld, world: World) -> None:
    """Field work through the API, so list and detail responses have rows to show: readings in and out of
    the expected range, a rollover, a skip and a correction; job status events, a note, materials, an
    edit, and a concurrent edit that leaves a conflict record."""
    first = reader.reading(world.meters[0], 1300)
    readings = [
        first,
        reader.reading(world.meters[1], 5000),
        reader.reading(world.meters[2], 200),
        reader.reading(world.meters[3], None, skip_code="dog"),
        reader.reading(world.meters[0], 1310, supersedes=first["entity_id"], reading_type="re_read"),
    ]
    job = world.jobs["outage"]
    events = [
        lineman.status(job, "en_route"),
        lineman.status(job, "on_site"),
        lineman.note(job, "Tree on the line"),
        lineman.change(
            "job_event",
            f"E-{uuid.uuid4().hex[:12]}",
            {
                "job_id": job,
                "kind": "material",
                "material_code": "CABLE",
                "quantity": 2.5,
                "unit": "m",
                "recorded_at": ISO_NOW,
            },
        ),
        lineman.change("job", job, {"cause": "tree"}),
    ]
    for handheld, changes in ((reader, readings[:4]), (reader, readings[4:]), (lineman, events)):
        results = handheld.push(*changes).get_json()["results"]
        assert all(r["status"] != "rejected" for r in results), results
    # the same field again, not based on the stamp the server holds: a concurrent edit, kept as a conflict
    (result,) = lineman.push(lineman.change("job", job, {"cause": "storm"})).get_json()["results"]
    assert result["status"] == "conflict", result
