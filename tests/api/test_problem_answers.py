"""Problem answers as the OpenAPI document declares them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeKey, bearer


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

