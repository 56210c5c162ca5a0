"""Per-key rate limits, counted in memory and in Redis.

Redis tests use JOBDOCK_TEST_REDIS_URL (default: the local server). Without a
server they skip loudly, except with CI=true, where they fail. Counts are kept
per key id, and every test makes keys of its own, so tests share no counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jobdock import App
from jobdock.access import Access
from jobdock.api import create_api
from jobdock.api.ratelimit import KeyRateLimiter
from tests.api.conftest import bearer
from tests.conftest import IN_CI

REDIS_URL = os.environ.get("JOBDOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROUTE = "/v1/keys"  # any /v1 route will do; this one needs an admin key


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: Redis tests must run)")
        pytest.skip(message)


@pytest.fixture(params=["memory", "redis"])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    require_redis()
    return REDIS_URL


def limited_app(tmp_path: Path, limit: str, storage_url: str | None) -> App:
    return App(database_url=f"sqlite:///{tmp_path / 'jobdock.db'}",
               blob_url=f"file://{tmp_path / 'blobs'}", data_dir=str(tmp_path / "data"),
               rate_limit=limit, rate_limit_url=storage_url)


@pytest.fixture
def jd3(tmp_path: Path, storage_url: str | None) -> Iterator[App]:
    """An app allowing each key 3 requests a minute."""
    app = limited_app(tmp_path, "3/minute", storage_url)
    yield app
    app.close()


def admin_key(app: App) -> str:
    return Access(app.engine.store).create_key("default", scopes=["admin"])[0]


def test_a_key_over_its_limit_gets_429_with_retry_after(jd3: App) -> None:
    key, other = admin_key(jd3), admin_key(jd3)
    with TestClient(create_api(jd3), raise_server_exceptions=False) as client:
        for remaining in (2, 1, 0):
            answer = client.get(ROUTE, headers=bearer(key))
            assert answer.status_code == 200, answer.text
            assert answer.headers["ratelimit-limit"] == "3"
            assert answer.headers["ratelimit-remaining"] == str(remaining)
            assert 0 < int(answer.headers["ratelimit-reset"]) <= 60
            assert "retry-after" not in answer.headers
        refused = client.get(ROUTE, headers=bearer(key))
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited" and refused.json()["status"] == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.headers["ratelimit-limit"] == "3"
        # Limits are per key: another key of the same tenant is not held back.
        assert client.get(ROUTE, headers=bearer(other)).status_code == 200


def test_refusals_of_other_kinds_still_count(jd3: App) -> None:
    """A valid key spends its budget whatever the answer (403, 404, 422)."""
    jobs_only = Access(jd3.engine.store).create_key("default")[0]
    with TestClient(create_api(jd3), raise_server_exceptions=False) as client:
        statuses = [client.get(ROUTE, headers=bearer(jobs_only)).status_code for _ in range(4)]
    assert statuses == [403, 403, 403, 429]


def test_requests_without_a_valid_key_are_not_counted(jd3: App) -> None:
    """Someone who knows only a key's prefix cannot spend that key's budget."""
    key = admin_key(jd3)
    forged = key.rsplit("_", 1)[0] + "_" + "0" * 48
    with TestClient(create_api(jd3), raise_server_exceptions=False) as client:
        for _ in range(5):
            answer = client.get(ROUTE, headers=bearer(forged))
            assert answer.status_code == 401 and "ratelimit-limit" not in answer.headers
            assert client.get(ROUTE).status_code == 401
        assert [client.get(ROUTE, headers=bearer(key)).status_code for _ in range(3)] == [
            200, 200, 200]


def test_only_the_v1_api_is_counted(jd3: App) -> None:
    key = admin_key(jd3)
    with TestClient(create_api(jd3), raise_server_exceptions=False) as client:
        for _ in range(5):
            answer = client.get("/openapi.json", headers=bearer(key))
            assert answer.status_code == 200 and "ratelimit-limit" not in answer.headers
        assert client.get(ROUTE, headers=bearer(key)).headers["ratelimit-remaining"] == "2"


def test_the_tightest_of_several_limits_is_reported(tmp_path: Path,
                                                    storage_url: str | None) -> None:
    app = limited_app(tmp_path, "100/hour; 2/minute", storage_url)
    key = admin_key(app)
    try:
        with TestClient(create_api(app), raise_server_exceptions=False) as client:
            first = client.get(ROUTE, headers=bearer(key))
            assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == (
                "2", "1")
            assert client.get(ROUTE, headers=bearer(key)).status_code == 200
            refused = client.get(ROUTE, headers=bearer(key))
            assert refused.status_code == 429 and refused.headers["ratelimit-limit"] == "2"
    finally:
        app.close()


def test_api_processes_sharing_redis_share_the_counts(tmp_path: Path) -> None:
    require_redis()
    app = limited_app(tmp_path, "3/minute", REDIS_URL)
    key = admin_key(app)
    try:
        with TestClient(create_api(app), raise_server_exceptions=False) as one, \
                TestClient(create_api(app), raise_server_exceptions=False) as two:
            assert one.get(ROUTE, headers=bearer(key)).status_code == 200
            assert two.get(ROUTE, headers=bearer(key)).status_code == 200
            assert one.get(ROUTE, headers=bearer(key)).status_code == 200
            assert two.get(ROUTE, headers=bearer(key)).status_code == 429
    finally:
        app.close()


def test_a_rate_limit_store_that_is_down_does_not_stop_the_api(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = limited_app(tmp_path, "1/minute", "redis://127.0.0.1:1/0")  # nothing listens there
    key = admin_key(app)
    try:
        with caplog.at_level(logging.WARNING, logger="jobdock.api.ratelimit"), \
                TestClient(create_api(app), raise_server_exceptions=False) as client:
            for _ in range(3):
                answer = client.get(ROUTE, headers=bearer(key))
                assert answer.status_code == 200 and "ratelimit-limit" not in answer.headers
        warnings = [r for r in caplog.records if "not enforced" in r.getMessage()]
        assert len(warnings) == 1  # once a minute, not once a request
    finally:
        app.close()


def test_a_bad_limit_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        KeyRateLimiter("lots per minute")
