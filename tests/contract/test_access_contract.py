"""Store contract for apps, API keys, uploads and webhooks, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobdock.errors import AlreadyExists, NotFound, TenantNotFound
from jobdock.ids import new_id
from jobdock.model import ApiKey, AppRecord, Upload, Webhook
from jobdock.store import Store

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def make_key(tenant: str = "default", app_id: str | None = None, **fields: object) -> ApiKey:
    key_id = new_id()
    return ApiKey(id=key_id, prefix=f"jdk_{key_id[-12:]}", secret_hash="h" * 64,
                  tenant_id=tenant, scopes=["jobs:read"], app_id=app_id, **fields)  # type: ignore[arg-type]


def test_apps(store: Store) -> None:
    app = store.app_create(AppRecord(new_id(), "default", "shop"))
    assert app.created_at is not None
    assert store.app_get("default", app.id) == app
    store.tenant_create("other")
    assert store.app_get("other", app.id) is None
    with pytest.raises(AlreadyExists):
        store.app_create(AppRecord(new_id(), "default", "shop"))
    store.app_create(AppRecord(new_id(), "other", "shop"))  # names are per tenant
    with pytest.raises(TenantNotFound):
        store.app_create(AppRecord(new_id(), "ghost", "shop"))
    assert [a.name for a in store.app_list("default")] == ["shop"]


def test_keys(store: Store) -> None:
    app = store.app_create(AppRecord(new_id(), "default", "shop"))
    key = make_key(app_id=app.id, name="ci", expires_at=T0)
    store.key_create(key)
    found = store.key_by_prefix(key.prefix)
    assert found is not None
    assert (found.id, found.secret_hash, found.scopes, found.app_id, found.name) == (
        key.id, key.secret_hash, ["jobs:read"], app.id, "ci")
    assert found.expires_at == T0 and found.revoked_at is None
    assert store.key_by_prefix("jdk_nothing") is None
    with pytest.raises(TenantNotFound):
        store.key_create(make_key(tenant="ghost"))
    with pytest.raises(NotFound):
        store.key_create(make_key(app_id="0" * 24))
    store.tenant_create("other")
    other = make_key(tenant="other")
    store.key_create(other)
    assert [k.id for k in store.key_list("default")] == [key.id]
    assert {k.id for k in store.key_list()} == {key.id, other.id}
    revoked = store.key_revoke(key.id, now=T0)
    assert revoked is not None and revoked.revoked_at == T0
    again = store.key_revoke(key.id, now=T0 + timedelta(days=1))
    assert again is not None and again.revoked_at == T0  # the first revocation stands
    assert store.key_revoke("0" * 24) is None


def test_uploads_expire_and_purge(store: Store) -> None:
    upload = Upload(id=new_id(), tenant_id="default", name="orders.csv", size=10,
                    sha256="a" * 64, content_type="text/csv", blob_key="default/uploads/x",
                    expires_at=T0)
    store.upload_create(upload)
    got = store.upload_get("default", upload.id, now=T0 - timedelta(seconds=1))
    assert got is not None and (got.name, got.size, got.blob_key) == ("orders.csv", 10,
                                                                       "default/uploads/x")
    store.tenant_create("other")
    assert store.upload_get("other", upload.id, now=T0 - timedelta(seconds=1)) is None
    assert store.upload_get("default", upload.id, now=T0) is None
    assert store.upload_purge_expired(now=T0 - timedelta(seconds=1)) == []
    purged = store.upload_purge_expired(now=T0)
    assert [u.id for u in purged] == [upload.id]
    assert store.upload_purge_expired(now=T0) == []


def test_webhooks(store: Store) -> None:
    hook = Webhook(id=new_id(), tenant_id="default", url="http://127.0.0.1:9/hook",
                   events=["job.succeeded", "job.failed"], secret="whsec_abc", description="d")
    store.webhook_create(hook)
    got = store.webhook_get("default", hook.id)
    assert got is not None and (got.url, got.events, got.secret) == (hook.url, hook.events,
                                                                   "whsec_abc")
    store.tenant_create("other")
    assert store.webhook_get("other", hook.id) is None
    assert store.webhook_delete("other", hook.id) is False
    assert [w.id for w in store.webhook_list("default")] == [hook.id]
    assert store.webhook_delete("default", hook.id) is True
    assert store.webhook_list("default") == []
