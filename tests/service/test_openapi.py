"""Schemathesis against the OpenAPI document: no server errors, responses conform, auth never bypassed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, response_schema_conformance, status_code_conformance

from models.registry import Registry
from tests.service.conftest import headers
from tests.service.test_promotion import register


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """The bulk upload's body is JSON Lines; the schema types it as a string."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@pytest.fixture
def api(make_app: Any, tmp_path: Path) -> Iterator[Any]:
    registry = Registry(tmp_path / "models")
    register(registry, "v1", 7)
    register(registry, "v2", 8)
    registry.promote("v1")
    app = make_app(registry=registry, deadline_ms=2000.0)
    with TestClient(app):  # runs the lifespan: engine lane and model watcher
        yield app


def test_api_conforms_to_its_openapi(api: Any) -> None:
    # One Hypothesis run per operation (schemathesis' pytest plugin predates pytest 9).
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate(
                headers=headers("admin"),
                checks=[not_a_server_error, response_schema_conformance, status_code_conformance, ignored_auth],
            )

        check()


def test_openapi_documents_every_route_with_examples(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    screen = doc["paths"]["/v1/screen"]["post"]
    assert screen["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Cdr"}
    assert "example" in screen["requestBody"]["content"]["application/json"]
    assert screen["security"] == [{"ApiKey": []}]
    assert doc["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    for path, item in doc["paths"].items():
        assert "{number}" not in path and "{msisdn}" not in path, "numbers never go in URLs"
        for op in item.values():
            if path.startswith("/v1"):
                assert "401" in op["responses"], path
