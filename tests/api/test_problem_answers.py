"""Problem answers as the OpenAPI document declares them (found by the schemathesis run,
tests/acceptance/test_schemathesis.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeKey, bearer

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.mark.parametrize("body", [
    b'{"kind": "sleep", "name": "\xff"}',  # not UTF-8
    b"[" * 5000 + b"]" * 5000,  # past the JSON parser's recursion limit
])
def test_a_body_that_cannot_be_parsed_is_a_422_like_a_syntax_error(
        client: TestClient, make_key: MakeKey, body: bytes) -> None:
    headers = {**bearer(make_key()), "Content-Type": "application/json"}
    answer = client.post("/v1/jobs", content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "invalid_request"
    assert answer.json()["errors"] == [{"field": "body", "message": "not a JSON text"}]


def test_every_route_declares_the_problems_its_shape_allows(client: TestClient) -> None:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            declared = set(operation["responses"])
            where = (method, path)
            if operation.get("parameters"):
                assert "400" in declared, where
            if "{" in path:
                assert "404" in declared, where
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                assert "422" in declared, where
                if path.startswith("/v1/"):
                    assert {"413", "415"} <= declared, where
            if operation.get("security"):
                assert {"401", "403", "429", "503"} <= declared, where
            for status, answer in operation["responses"].items():
                if status[0] in "45":
                    assert answer["content"] == PROBLEM, (where, status)


def test_routes_declare_their_own_conflicts_and_missing_tenants(client: TestClient) -> None:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    assert "409" in paths["/v1/tenants"]["post"]["responses"]
    assert {"404", "409"} <= set(paths["/v1/apps"]["post"]["responses"])
    assert "404" in paths["/v1/keys"]["post"]["responses"]
    assert "422" in paths["/v1/uploads"]["post"]["responses"]
    download = paths["/v1/blobs/{token}"]["get"]
    assert "security" not in download or download["security"] == []
    assert "*/*" in download["responses"]["200"]["content"]


def test_duplicate_tenant_and_app_are_409s(client: TestClient, make_key: MakeKey) -> None:
    operator = bearer(make_key(scopes=("admin",)))
    assert client.post("/v1/tenants", json={"name": "default"},
                       headers=operator).status_code == 409
    assert client.post("/v1/apps", json={"name": "shop"}, headers=operator).status_code == 201
    again = client.post("/v1/apps", json={"name": "shop"}, headers=operator)
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
