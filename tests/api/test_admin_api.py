"""Admin routes on each store: tenants, apps and keys, and who may administer what."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from jobdock import App
from jobdock.access import Access
from jobdock.errors import Unauthenticated
from jobdock.model import SCOPES
from tests.api.conftest import MakeKey, bearer


@pytest.fixture
def operator(make_key: MakeKey) -> dict[str, str]:
    """Headers of an admin key of the operator tenant."""
    return bearer(make_key("default", scopes=("admin",)))


def secret_of(key: str) -> str:
    return key.rsplit("_", 1)[1]


def without_id(response: Response, value: str) -> str:
    return response.text.replace(value, "<id>")


def test_operator_creates_tenants_apps_and_keys(client: TestClient, jd: App,
                                                operator: dict[str, str]) -> None:
    created = client.post("/v1/tenants", json={"name": "acme", "retention_s": 3600},
                          headers=operator)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/tenants/acme"
    assert created.json()["id"] == "acme" and created.json()["retention_s"] == 3600
    again = client.post("/v1/tenants", json={"name": "acme"}, headers=operator)
    assert again.status_code == 409
    bad = client.post("/v1/tenants", json={"name": "Bad Name!"}, headers=operator)
    assert bad.status_code == 422 and "invalid tenant name" in bad.json()["detail"]
    assert client.get("/v1/tenants/acme", headers=operator).json()["id"] == "acme"
    assert client.get("/v1/tenants/ghost", headers=operator).status_code == 404
    listed = client.get("/v1/tenants", headers=operator).json()["items"]
    assert {t["id"] for t in listed} == {"default", "acme"}

    app = client.post("/v1/apps", json={"tenant": "acme", "name": "shop"}, headers=operator)
    assert app.status_code == 201, app.text
    app_id = app.json()["id"]
    assert app.headers["location"] == f"/v1/apps/{app_id}"
    assert app.json()["tenant_id"] == "acme"
    assert client.post("/v1/apps", json={"tenant": "acme", "name": "shop"},
                       headers=operator).status_code == 409
    assert client.get(f"/v1/apps/{app_id}", headers=operator).json()["name"] == "shop"
    apps = client.get("/v1/apps", params={"tenant": "acme"}, headers=operator).json()["items"]
    assert [a["id"] for a in apps] == [app_id]
    assert client.get("/v1/apps", headers=operator).json()["items"] == []  # default's own

    made = client.post("/v1/keys", json={"tenant": "acme", "app": "shop", "name": "backend",
                                         "scopes": ["jobs:read"], "expires_in": "30d"},
                       headers=operator)
    assert made.status_code == 201, made.text
    body = made.json()
    assert made.headers["location"] == f"/v1/keys/{body['id']}"
    assert made.headers["cache-control"] == "no-store"
    assert body["key"].startswith(body["prefix"] + "_")
    assert (body["tenant_id"], body["app_id"], body["scopes"], body["name"], body["state"]) == (
        "acme", app_id, ["jobs:read"], "backend", "active")
    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - datetime.now(UTC) - timedelta(days=30)) < timedelta(minutes=1)
    principal = Access(jd.engine.store).authenticate(body["key"])
    assert (principal.tenant_id, principal.app_id, principal.scopes) == (
        "acme", app_id, frozenset({"jobs:read"}))
    by_id = client.post("/v1/keys", json={"tenant": "acme", "app": app_id, "expires_in": 60},
                        headers=operator).json()
    assert by_id["app_id"] == app_id
    assert by_id["scopes"] == ["jobs:delete", "jobs:read", "jobs:write"]  # the default


def test_a_keys_secret_is_only_in_the_response_that_creates_it(
        client: TestClient, operator: dict[str, str]) -> None:
    made = client.post("/v1/keys", json={"scopes": ["jobs:read"]}, headers=operator).json()
    secret = secret_of(made["key"])
    digest = hashlib.sha256(made["key"].encode()).hexdigest()
    answers = [client.get("/v1/keys", headers=operator),
               client.get(f"/v1/keys/{made['id']}", headers=operator),
               client.delete(f"/v1/keys/{made['id']}", headers=operator)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert secret not in answer.text and digest not in answer.text
        assert "key" not in answer.json() and "secret_hash" not in answer.text
    listed = {k["id"]: k for k in answers[0].json()["items"]}
    assert listed[made["id"]]["prefix"] == made["prefix"]


def test_revoking_a_key_takes_effect_at_once(client: TestClient,
                                              operator: dict[str, str]) -> None:
    made = client.post("/v1/keys", json={"scopes": ["admin"]}, headers=operator).json()
    assert client.get("/v1/keys", headers=bearer(made["key"])).status_code == 200
    revoked = client.delete(f"/v1/keys/{made['id']}", headers=operator)
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked" and revoked.json()["revoked_at"]
    refused = client.get("/v1/keys", headers=bearer(made["key"]))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert refused.headers["www-authenticate"] == "Bearer"
    again = client.delete(f"/v1/keys/{made['id']}", headers=operator)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    missing = client.delete("/v1/keys/0123456789abcdef01234567", headers=operator)
    assert missing.status_code == 404


def test_expired_keys_stop_working_and_are_listed_as_expired(
        client: TestClient, jd: App, operator: dict[str, str]) -> None:
    made = client.post("/v1/keys", json={"expires_in": "1h"}, headers=operator).json()
    access = Access(jd.engine.store)
    assert access.authenticate(made["key"]).key_id == made["id"]
    with pytest.raises(Unauthenticated, match="expired"):
        access.authenticate(made["key"], now=datetime.now(UTC) + timedelta(hours=1, seconds=1))
    old, record = access.create_key("default", scopes=["admin"], expires_in_s=60,
                                    now=datetime.now(UTC) - timedelta(minutes=2))
    refused = client.get("/v1/keys", headers=bearer(old))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    listed = {k["id"]: k["state"] for k in client.get("/v1/keys", headers=operator).json()["items"]}
    assert listed[record.id] == "expired" and listed[made["id"]] == "active"


def test_a_tenant_admin_administers_its_own_tenant_only(
        client: TestClient, jd: App, make_key: MakeKey, operator: dict[str, str]) -> None:
    acme = bearer(make_key("acme", scopes=("admin",)))
    make_key("globex")
    default_app = client.post("/v1/apps", json={"name": "ops"}, headers=operator).json()["id"]
    operator_key_id = client.get("/v1/keys", headers=operator).json()["items"][0]["id"]

    assert client.post("/v1/tenants", json={"name": "mine"}, headers=acme).status_code == 403
    assert [t["id"] for t in client.get("/v1/tenants", headers=acme).json()["items"]] == ["acme"]
    other = client.get("/v1/tenants/globex", headers=acme)
    ghost = client.get("/v1/tenants/ghost", headers=acme)
    assert other.status_code == ghost.status_code == 403
    assert without_id(other, "globex") == without_id(ghost, "ghost")
    for method, path, body in [("POST", "/v1/apps", {"tenant": "globex", "name": "x"}),
                               ("GET", "/v1/apps?tenant=globex", None),
                               ("GET", "/v1/keys?tenant=default", None),
                               ("POST", "/v1/keys", {"tenant": "default"})]:
        answer = client.request(method, path, json=body, headers=acme)
        assert answer.status_code == 403, (method, path, answer.text)
    for path, real in [("/v1/keys/{}", operator_key_id), ("/v1/apps/{}", default_app)]:
        missing_id = "0123456789abcdef01234567"
        seen = client.get(path.format(real), headers=acme)
        missing = client.get(path.format(missing_id), headers=acme)
        assert seen.status_code == missing.status_code == 404
        assert without_id(seen, real) == without_id(missing, missing_id)
    assert client.delete(f"/v1/keys/{operator_key_id}", headers=acme).status_code == 404
    assert client.get("/v1/keys", headers=operator).status_code == 200  # not revoked

    own = client.post("/v1/keys", json={"scopes": ["jobs:read"]}, headers=acme).json()
    assert own["tenant_id"] == "acme"
    assert client.delete(f"/v1/keys/{own['id']}", headers=acme).status_code == 200


def test_an_apps_admin_key_administers_its_own_app_only(
        client: TestClient, jd: App, make_key: MakeKey, operator: dict[str, str]) -> None:
    access = Access(jd.engine.store)
    make_key("acme")
    shop, other = access.create_app("acme", "shop"), access.create_app("acme", "other")
    shop_admin = bearer(make_key("acme", scopes=("admin",), app_id=shop.id))
    tenant_wide, tenant_wide_record = access.create_key("acme", scopes=["jobs:read"])
    tenant_wide_id = tenant_wide_record.id
    other_key, other_record = access.create_key("acme", app_id=other.id)

    assert client.post("/v1/apps", json={"name": "mine"}, headers=shop_admin).status_code == 403
    assert [a["id"] for a in client.get("/v1/apps", headers=shop_admin).json()["items"]] == [
        shop.id]
    assert client.get(f"/v1/apps/{other.id}", headers=shop_admin).status_code == 404
    assert client.get(f"/v1/apps/{shop.id}", headers=shop_admin).status_code == 200

    minted = client.post("/v1/keys", json={"scopes": ["jobs:read"]}, headers=shop_admin).json()
    assert minted["app_id"] == shop.id  # never a tenant-wide key
    for ref in (other.id, "other", "no-such-app"):
        refused = client.post("/v1/keys", json={"app": ref}, headers=shop_admin)
        assert refused.status_code == 403, (ref, refused.text)
    listed = {k["id"] for k in client.get("/v1/keys", headers=shop_admin).json()["items"]}
    assert minted["id"] in listed and other_record.id not in listed
    assert tenant_wide_id not in listed
    for key_id in (other_record.id, tenant_wide_id):
        assert client.delete(f"/v1/keys/{key_id}", headers=shop_admin).status_code == 404
    assert access.authenticate(other_key) and access.authenticate(tenant_wide)

    # An app's admin key of the operator tenant is not an operator.
    ops = access.create_app("default", "ops")
    ops_admin = bearer(make_key("default", scopes=("admin",), app_id=ops.id))
    assert client.post("/v1/tenants", json={"name": "new"}, headers=ops_admin).status_code == 403
    assert client.get("/v1/keys?tenant=acme", headers=ops_admin).status_code == 403
    assert [t["id"] for t in client.get("/v1/tenants", headers=ops_admin).json()["items"]] == [
        "default"]


def test_admin_routes_need_the_admin_scope(client: TestClient, make_key: MakeKey) -> None:
    jobs_only = bearer(make_key("default"))
    for method, path in [("GET", "/v1/tenants"), ("POST", "/v1/keys"), ("GET", "/v1/keys"),
                         ("GET", "/v1/apps"), ("DELETE", "/v1/keys/0123456789abcdef01234567")]:
        answer = client.request(method, path, headers=jobs_only, json={})
        assert answer.status_code == 403, (method, path)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "admin" in answer.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"scopes": ["jobs:everything"]}, "scopes"),
    ({"scopes": []}, "scopes"),
    ({"scope": ["jobs:read"]}, "scope"),           # misspelt: refused, not ignored
    ({"expires_in": "soon"}, "expires_in"),
    ({"expires_in": -5}, "expires_in"),
    ({"app": "nope"}, "app"),
])
def test_invalid_key_requests_are_422_with_the_field(
        client: TestClient, operator: dict[str, str], body: dict[str, object],
        field: str) -> None:
    answer = client.post("/v1/keys", json=body, headers=operator)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(field in e["field"] for e in answer.json()["errors"]), answer.json()


def test_keys_for_a_missing_tenant(client: TestClient, operator: dict[str, str]) -> None:
    answer = client.post("/v1/keys", json={"tenant": "ghost"}, headers=operator)
    assert answer.status_code == 404 and answer.json()["code"] == "tenant_not_found"


def test_every_scope_can_be_granted(client: TestClient, operator: dict[str, str]) -> None:
    made = client.post("/v1/keys", json={"scopes": list(SCOPES)}, headers=operator).json()
    assert sorted(made["scopes"]) == sorted(SCOPES)
