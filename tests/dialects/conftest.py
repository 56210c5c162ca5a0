"""The API on each store, with keys, for the dialect tests; data areas dropped after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jobdock import App
from jobdock.access import Access
from tests.kinds.ingesting import drop_data, make_app

MakeKey = Callable[..., str]


@pytest.fixture
def jd(database_url: str, tmp_path: Path) -> Iterator[App]:
    app = make_app(database_url, tmp_path)
    try:
        yield app
    finally:
        app.close()
        drop_data(database_url)


@pytest.fixture
def client(jd: App) -> Iterator[TestClient]:
    from jobdock.api import create_api

    with TestClient(create_api(jd, workers=0), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_key(jd: App) -> MakeKey:
    access = Access(jd.engine.store)

    def make(tenant: str = "default",
             scopes: tuple[str, ...] = ("jobs:read", "jobs:write")) -> str:
        if jd.engine.store.tenant_get(tenant) is None:
            jd.create_tenant(tenant)
        return access.create_key(tenant, scopes=scopes)[0]

    return make
