"""The API's in-memory cache of authenticated keys (Access, key_cache_s), on both stores.

A key revoked through the same Access stops at once; revoked elsewhere (another
process: here another Access on the same store), within key_cache_s. Expiry is
checked on every request, cached or not. The clock is a parameter: no sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import jobdock.errors as errors
from jobdock.access import Access
from jobdock.config import Settings
from jobdock.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tenant(store: Store) -> str:
    store.tenant_create("acme")
    return "acme"


def test_a_key_revoked_elsewhere_works_until_the_cache_entry_expires(
        store: Store, tenant: str) -> None:
    clock = Clock()
    api = Access(store, key_cache_s=5.0, clock=clock)
    key, record = Access(store).create_key(tenant)
    assert api.cached_principal(key) is None  # not read yet
    assert api.authenticate(key).key_id == record.id
    principal = api.cached_principal(key)
    assert principal is not None and principal.key_id == record.id

    Access(store).revoke_key(record.id)  # another process
    clock.now += 4.9
    assert api.authenticate(key).key_id == record.id  # still within key_cache_s
    clock.now += 0.1
    assert api.cached_principal(key) is None
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        api.authenticate(key)


def test_a_key_revoked_through_the_same_access_stops_at_once(store: Store, tenant: str) -> None:
    api = Access(store, key_cache_s=60.0, clock=Clock())
    key, record = api.create_key(tenant)
    other_key, _ = api.create_key(tenant)
    api.authenticate(key)
    api.authenticate(other_key)
    api.revoke_key(record.id)
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        api.authenticate(key)
    assert api.cached_principal(other_key) is not None  # other keys stay cached


def test_expiry_is_checked_on_every_request_even_when_cached(store: Store, tenant: str) -> None:
    api = Access(store, key_cache_s=60.0, clock=Clock())
    now = datetime.now(UTC)
    key, _ = api.create_key(tenant, expires_in_s=10, now=now)
    api.authenticate(key, now=now)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        api.authenticate(key, now=now + timedelta(seconds=10))
    with pytest.raises(errors.Unauthenticated, match="expired"):
        api.cached_principal(key, now=now + timedelta(seconds=10))


def test_a_zero_ttl_reads_the_key_every_time(store: Store, tenant: str) -> None:
    api = Access(store, key_cache_s=0, clock=Clock())
    key, record = api.create_key(tenant)
    api.authenticate(key)
    assert api.cached_principal(key) is None
    Access(store).revoke_key(record.id)
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        api.authenticate(key)


def test_wrong_keys_are_not_cached(store: Store, tenant: str) -> None:
    api = Access(store, clock=Clock())
    key, _ = api.create_key(tenant)
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    for _ in range(2):
        with pytest.raises(errors.Unauthenticated, match="not valid"):
            api.authenticate(wrong)
    assert api.cached_principal(wrong) is None


def test_the_ttl_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().key_cache_s == 5.0
    monkeypatch.setenv("JOBDOCK_KEY_CACHE_S", "0.5")
    assert Settings().key_cache_s == 0.5
