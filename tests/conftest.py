"""Shared fixtures: a fresh store per test on SQLite and on PostgreSQL.

PostgreSQL tests use JOBDOCK_TEST_PG_URL (default: the local trust-auth server)
with a schema of their own per test. Without a server they skip loudly, except
with CI=true, where a missing server fails the run. S3 tests share one moto
server per session (`moto_s3`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from jobdock.store import Store, open_store

if TYPE_CHECKING:
    from jobdock.store.postgres import PostgresStore
    from tests.moto_server import MotoS3

PG_URL = os.environ.get("JOBDOCK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _pg_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


_pg_problem: str | bool | None = False


def require_pg() -> None:
    global _pg_problem
    if _pg_problem is False:
        _pg_problem = _pg_reachable()
    if _pg_problem:
        message = f"PostgreSQL at {PG_URL} is not reachable: {_pg_problem}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)


def pg_url_with_schema(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections use a new empty schema, dropped after the test."""
    require_pg()
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield pg_url_with_schema(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg(pg_schema_url: str) -> Iterator[PostgresStore]:
    """A migrated PostgreSQL store in a schema of its own."""
    from jobdock.store.postgres import PostgresStore

    store = PostgresStore(pg_schema_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobdock.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobdock.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on each backend."""
    s = open_store(database_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A moto S3 server with one bucket, started once per session when a test needs it;
    boto3 is configured through its usual environment variables while it runs."""
    # Imported here: boto3 takes a while to load, and most sessions never need S3.
    from tests.moto_server import run_moto_s3

    yield from run_moto_s3(tmp_path_factory.mktemp("moto") / "moto.log")
