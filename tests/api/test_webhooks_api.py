"""`/v1/webhooks` on both stores: create, read, delete, validation, scopes and isolation."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

import jobdock.webhooks as webhooks_module
from jobdock import App
from jobdock.access import Access
from tests.api.conftest import MakeKey, bearer

HOOK = {"url": "https://hooks.example.com/jobdock", "events": ["job.succeeded", "job.failed"]}


def create(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={**HOOK, **body}, headers=bearer(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def new_app(jd: App, tenant: str, name: str) -> str:
    return Access(jd.engine.store).create_app(tenant, name).id


def test_create_shows_the_secret_once_then_read_and_delete(client: TestClient,
                                                          make_key: MakeKey) -> None:
    key = make_key()
    response = client.post("/v1/webhooks", json={**HOOK, "description": "orders"},
                           headers=bearer(key))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/v1/webhooks/{created['id']}"
    assert created["url"] == HOOK["url"]
    assert created["events"] == HOOK["events"]
    assert created["description"] == "orders"
    assert created["app_id"] is None
    assert created["created_at"]
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24

    listed = client.get("/v1/webhooks", headers=bearer(key))
    assert listed.status_code == 200
    assert [w["id"] for w in listed.json()["items"]] == [created["id"]]
    assert "secret" not in listed.json()["items"][0]

    one = client.get(f"/v1/webhooks/{created['id']}", headers=bearer(key))
    assert one.status_code == 200
    assert one.json() == {k: v for k, v in created.items() if k != "secret"}

    deleted = client.delete(f"/v1/webhooks/{created['id']}", headers=bearer(key))
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = client.get(f"/v1/webhooks/{created['id']}", headers=bearer(key))
    assert gone.status_code == 404
    assert gone.json()["code"] == "webhook_not_found"
    assert client.delete(f"/v1/webhooks/{created['id']}", headers=bearer(key)).status_code == 404
    assert client.get("/v1/webhooks", headers=bearer(key)).json() == {"items": []}


def test_every_event_and_duplicates_once(client: TestClient, make_key: MakeKey) -> None:
    key = make_key()
    created = create(client, key, events=["*", "job.canceled", "*"])
    assert created["events"] == ["*", "job.canceled"]


def test_secrets_differ(client: TestClient, make_key: MakeKey) -> None:
    key = make_key()
    assert create(client, key)["secret"] != create(client, key)["secret"]


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "http://"}, "url"),
    ({"url": "example.com/hook"}, "url"),
    ({"url": "https://example.com:99999/"}, "url"),
    ({"url": "https://example.com/" + "x" * 2100}, "url"),
    ({"url": 42}, "url"),
    ({"events": []}, "events"),
    ({"events": ["job.exploded"]}, "events"),
    ({"events": "job.failed"}, "events"),
    ({"description": "x" * 501}, "description"),
    ({"secret": "whsec_mine"}, "secret"),
])
def test_invalid_requests_name_the_field(client: TestClient, make_key: MakeKey,
                                         body: dict[str, Any], field: str) -> None:
    response = client.post("/v1/webhooks", json={**HOOK, **body}, headers=bearer(make_key()))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


def test_missing_fields_are_named(client: TestClient, make_key: MakeKey) -> None:
    response = client.post("/v1/webhooks", json={}, headers=bearer(make_key()))
    assert response.status_code == 422
    assert {"url", "events"} <= {e["field"] for e in response.json()["errors"]}


def test_scopes(client: TestClient, make_key: MakeKey) -> None:
    writer = make_key(scopes=("jobs:write",))
    reader = make_key(scopes=("jobs:read",))
    assert client.post("/v1/webhooks", json=HOOK).status_code == 401
    assert client.post("/v1/webhooks", json=HOOK, headers=bearer(reader)).status_code == 403
    created = create(client, writer)
    assert client.get("/v1/webhooks", headers=bearer(writer)).status_code == 403
    assert client.get(f"/v1/webhooks/{created['id']}", headers=bearer(reader)).status_code == 200
    assert client.delete(f"/v1/webhooks/{created['id']}",
                         headers=bearer(reader)).status_code == 403
    assert client.delete(f"/v1/webhooks/{created['id']}",
                         headers=bearer(writer)).status_code == 204


def test_another_tenants_webhook_is_not_found(client: TestClient, make_key: MakeKey) -> None:
    ours, theirs = make_key("acme"), make_key("globex")
    created = create(client, ours)
    for method in ("get", "delete"):
        response = client.request(method, f"/v1/webhooks/{created['id']}", headers=bearer(theirs))
        assert response.status_code == 404
    assert client.get("/v1/webhooks", headers=bearer(theirs)).json() == {"items": []}
    assert client.get(f"/v1/webhooks/{created['id']}", headers=bearer(ours)).status_code == 200
    assert client.get("/v1/webhooks/not-an-id", headers=bearer(ours)).status_code == 404


def test_an_app_key_sees_its_own_subscriptions_only(jd: App, client: TestClient,
                                                   make_key: MakeKey) -> None:
    tenant_key = make_key("acme")
    mobile, web = new_app(jd, "acme", "mobile"), new_app(jd, "acme", "web")
    mobile_key, web_key = make_key("acme", app_id=mobile), make_key("acme", app_id=web)

    tenant_wide = create(client, tenant_key)
    for_mobile = create(client, mobile_key)
    assert tenant_wide["app_id"] is None
    assert for_mobile["app_id"] == mobile

    def ids(key: str) -> list[str]:
        return [w["id"] for w in client.get("/v1/webhooks", headers=bearer(key)).json()["items"]]

    assert ids(tenant_key) == [tenant_wide["id"], for_mobile["id"]]
    assert ids(mobile_key) == [for_mobile["id"]]
    assert ids(web_key) == []
    for key, hidden in ((mobile_key, tenant_wide), (web_key, for_mobile)):
        assert client.get(f"/v1/webhooks/{hidden['id']}", headers=bearer(key)).status_code == 404
        assert client.delete(f"/v1/webhooks/{hidden['id']}",
                             headers=bearer(key)).status_code == 404
    assert client.delete(f"/v1/webhooks/{for_mobile['id']}",
                         headers=bearer(tenant_key)).status_code == 204


def test_a_tenant_has_a_limited_number(client: TestClient, make_key: MakeKey,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks_module, "MAX_PER_TENANT", 2)
    key = make_key()
    create(client, key)
    create(client, key)
    response = client.post("/v1/webhooks", json=HOOK, headers=bearer(key))
    assert response.status_code == 409
    assert "delete one" in response.json()["detail"]
