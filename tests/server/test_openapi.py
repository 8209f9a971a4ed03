"""The served OpenAPI description is valid OpenAPI 3 and describes exactly the API the app serves."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from typing import Any

import pytest

from sync_protocol import ERRORS
from tests.server.helpers import assert_error, device

SPEC = "/api/v1/openapi.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PARAMETER_LOCATIONS = {"query", "header", "path", "cookie"}


@pytest.fixture
def spec(app, client, world) -> dict[str, Any]:
    handheld = device(app, client, "reader")
    response = client.get(SPEC, headers=handheld.headers)
    assert response.status_code == 200
    return response.get_json()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def documented_codes(operation: dict[str, Any]) -> dict[str, set[str]]:
    """{HTTP status: error codes named in that response's description} for the error responses."""
    return {
        status: {name.strip() for name in response["description"].split(",")}
        for status, response in operation["responses"].items()
        if int(status) >= 400
    }


def test_openapi_needs_a_device_token(app, client, world):
    assert_error(client.get(SPEC), 401, "unauthorized")


def test_openapi_document_is_valid_openapi_3(spec):
    assert re.fullmatch(r"3\.\d+\.\d+", spec["openapi"])
    assert spec["info"]["title"] and isinstance(spec["info"]["version"], str)
    schemes = spec["components"]["securitySchemes"]
    for path, method, operation in operations(spec):
        assert path.startswith("/"), path
        assert operation["responses"], (path, method)
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d|default", status), (path, method, status)
            assert response["description"], (path, method, status)
            for media, content in response.get("content", {}).items():
                assert "/" in media and "schema" in content, (path, method, status)
        for parameter in operation.get("parameters", []):
            assert parameter["name"] and parameter["in"] in PARAMETER_LOCATIONS, parameter
            assert "schema" in parameter, parameter
            if parameter["in"] == "path":
                assert parameter["required"] is True and f"{{{parameter['name']}}}" in path
        if "requestBody" in operation:
            assert operation["requestBody"]["content"]["application/json"]["schema"]
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), requirement
    for name, schema in spec["components"]["schemas"].items():
        assert schema.get("type") == "object" and isinstance(schema.get("properties"), dict), name
        for field in schema.get("required", []):
            assert field in schema["properties"], (name, field)
    for ref in refs(spec):
        resolve(spec, ref)
    if importlib.util.find_spec("openapi_spec_validator"):  # the full validator, when it is installed
        from openapi_spec_validator import validate

        validate(spec)


def test_openapi_describes_exactly_the_apps_api_routes(app, spec):
    served = {
        (re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, method, _ in operations(spec)}
    assert described == served


def test_every_error_code_in_the_description_exists_with_its_status(spec):
    for path, method, operation in operations(spec):
        for status, names in documented_codes(operation).items():
            for name in names:
                assert name in ERRORS, (path, method, name)
                assert ERRORS[name].status == int(status), (path, method, name, status)
            error_schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert resolve(spec, error_schema["$ref"])["properties"].keys() == {"error"}


def test_description_names_the_errors_every_operation_can_return(spec):
    """What the server's code paths imply: device-authenticated operations can refuse the token (401)
    or the account (403); operations with a JSON body can refuse it as unreadable, too large, of the
    wrong type or invalid; anything can fail with internal_error."""
    for path, method, operation in operations(spec):
        codes = set().union(*documented_codes(operation).values())
        expected = {"internal_error"}
        if operation.get("security"):
            expected |= {"unauthorized", "forbidden"}
        if "requestBody" in operation:
            expected |= {"bad_request", "payload_too_large", "unsupported_media_type", "validation_error"}
        if path.startswith("/api/v1/sync/"):
            expected |= {"upgrade_required", "validation_error"}
        assert expected <= codes, (path, method, expected - codes)
