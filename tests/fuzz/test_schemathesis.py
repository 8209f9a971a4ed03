"""Schemathesis against the app's own OpenAPI description (/api/v1/openapi.json), in process through the
WSGI app: every operation, with inputs that fit the description (positive) and inputs that do not
(negative), authenticated as a device (sync API) or with a staff API token (staff API), on a world with
field work in it (readings, job events, a conflict) so list and detail responses have rows. Checks: never
a 5xx; the status, content type and body are what the description says; an error is the JSON envelope
and writes nothing.

Schemathesis's pytest integration with a fixture-made schema (`schemathesis.pytest.from_fixture`) reads a
private attribute that pytest 9.2 no longer has (`Function._nodeid`: AttributeError), so the schema is
loaded inside the test from the app under test (one per backend), and each operation's case strategy
(`APIOperation.as_strategy`) runs under hypothesis as a subtest.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.fuzz.conftest import envelope_error, fingerprint, seed_activity
from tests.server.world import Handheld, World

SPEC = "/api/v1/openapi.json"
# Cases per operation and mode (14 operations x 2 modes). FIELDSYNC_SCHEMATHESIS_EXAMPLES raises it.
EXAMPLES = int(os.environ.get("FIELDSYNC_SCHEMATHESIS_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# An accepted push writes receipts and its device's last-push time: only refusals must leave no trace.
UNCHANGED: dict[str, Any] = {"ignore_tables": {"change_receipts"}, "ignore_columns": {"devices": {"last_push_at"}}}
# Schemathesis's WSGI transport does not undo Content-Encoding: ask for plain bodies to validate them.
PLAIN = {"Accept-Encoding": "identity"}


def has_inputs(operation: Any) -> bool:
    """Whether the operation takes anything a negative case could break (health takes nothing)."""
    parts = (operation.path_parameters, operation.query, operation.headers, operation.cookies)
    return any(len(part) for part in parts) or (operation.body is not None and len(operation.body) > 0)


def known_ids(world: World) -> dict[str, list[str]]:
    return {"job_id": sorted(world.jobs.values()), "customer_id": ["C1", "C2", "C3"]}


def run_operation(app: Flask, operation: Any, mode: GenerationMode, auth: dict[str, str], world: World) -> None:
    ids = known_ids(world)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def answers_as_described(case: Any, data: st.DataObject) -> None:
        if mode is GenerationMode.POSITIVE:
            # generated values rarely name a record or the one protocol version: often use real ones, so
            # the cases reach past "not found" and "upgrade required" into the code that does the work
            for name, values in ids.items():
                if name in (case.path_parameters or {}) and data.draw(st.booleans(), label=f"real {name}"):
                    case.path_parameters[name] = data.draw(st.sampled_from(values), label=name)
            if operation.path.startswith("/api/v1/sync/") and data.draw(st.booleans(), label="current version"):
                case.headers = {**(case.headers or {}), PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
                if isinstance(case.body, dict) and "protocol" in case.body:
                    case.body["protocol"] = PROTOCOL_VERSION
        # only POSTs write; that GETs never do is test_sync_bodies.py's business (it costs two table dumps)
        before = fingerprint(app, **UNCHANGED) if case.method == "POST" else None
        response = case.call(headers={**auth, **PLAIN})
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400:
            envelope_error(response.status_code, json.loads(response.content))
            if before is not None:
                assert fingerprint(app, **UNCHANGED) == before, "a refused request wrote"

    answers_as_described()


def test_every_operation_answers_as_described(app, world, reader: Handheld, lineman: Handheld, staff_headers, subtests):
    app.config["ENROLL_ATTEMPTS_PER_WINDOW"] = 10**9  # fuzzing enrolment bodies, not the rate limit
    seed_activity(reader, lineman, world)
    device = {"Authorization": reader.headers["Authorization"]}
    schema = schemathesis.openapi.from_wsgi(SPEC, app, headers=device)
    operations = [result.ok() for result in schema.get_all_operations()]
    described = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items() for method in item}
    # schemathesis leaves out the description's own operation (tests/server/test_openapi.py covers it)
    assert {o.label for o in operations} == described - {f"GET {SPEC}"}
    for operation in operations:
        auth = staff_headers if operation.path.startswith("/api/v1/staff/") else device
        for mode in GenerationMode:
            if mode is GenerationMode.NEGATIVE and not has_inputs(operation):
                continue
            with subtests.test(msg=f"{operation.label} {mode.value}"):
                run_operation(app, operation, mode, auth, world)
