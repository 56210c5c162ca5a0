"""An API client on each store, and keys to call it with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jobdock import App
from jobdock.access import Access

MakeKey = Callable[..., str]


@pytest.fixture
def jd(database_url: str, tmp_path: Path) -> Iterator[App]:
    """The App behind the API, on a fresh store of each backend."""
    app = App(database_url=database_url, blob_url=f"file://{tmp_path / 'blobs'}",
              data_dir=str(tmp_path / "data"), poll_interval_s=0.05, heartbeat_interval_s=0.1,
              flush_interval_s=0.02, maintenance_interval_s=0.1)
    yield app
    app.close()


@pytest.fixture
def client(jd: App) -> Iterator[TestClient]:
    """A client of the API with no embedded workers (tests run workers when they need)."""
    from jobdock.api import create_api

    with TestClient(create_api(jd, workers=0), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_key(jd: App) -> MakeKey:
    """make_key(tenant="default", scopes=(...), app_id=None, expires_in_s=None) -> key."""
    access = Access(jd.engine.store)

    def make(tenant: str = "default", scopes: tuple[str, ...] = ("jobs:read", "jobs:write",
                                                                 "jobs:delete"),
             app_id: str | None = None, expires_in_s: float | None = None) -> str:
        if jd.engine.store.tenant_get(tenant) is None:
            jd.create_tenant(tenant)
        presented, _ = access.create_key(tenant, app_id=app_id, scopes=scopes,
                                         expires_in_s=expires_in_s)
        return presented

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
