"""An App on each store for the ingest tests, with the tenants' data areas dropped after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobdock import App
from tests.kinds.ingesting import drop_data, make_app


@pytest.fixture
def jd(database_url: str, tmp_path: Path) -> Iterator[App]:
    app = make_app(database_url, tmp_path)
    try:
        yield app
    finally:
        app.close()
        drop_data(database_url)
