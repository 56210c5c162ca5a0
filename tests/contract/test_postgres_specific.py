"""PostgreSQL-only behaviour of PostgresStore, beyond the shared contract.

Schema isolation (tables, NOTIFY channel, advisory locks), concurrent
migrations, the COPY insert path, error translation, and surviving
connections killed under the store (what a server restart does to them,
without restarting the server that other tests share).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

import jobdock.errors as errors
from jobdock.ids import new_id
from jobdock.model import Completion, JobQuery, JobStatus, NewJob, Outcome
from jobdock.store.postgres import PostgresQueueWaiter, PostgresStore, _advisory_key
from jobdock.store.queries import migration_files
from tests.conftest import PG_URL, pg_url_with_schema, require_pg

S = JobStatus


def _new(tenant: str = "default", at: datetime | None = None, **fields: Any) -> NewJob:
    at = at or datetime.now(UTC).replace(microsecond=0)
    fields.setdefault("input", {"n": 1})
    fields.setdefault("max_attempts", 1)
    return NewJob(id=new_id(at.timestamp()), tenant_id=tenant, kind="k", status=S.QUEUED,
                  run_at=at, created_at=at, retention_s=3600, **fields)


def _terminate(pid: int) -> None:
    """Kill a server process and wait until it is gone (and its locks with it):
    pg_terminate_backend only sends the signal."""
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, f"server process {pid} did not exit"
            time.sleep(0.01)


@pytest.fixture
def other_schema_url() -> Iterator[str]:
    """A second fresh schema, for isolation tests."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield pg_url_with_schema(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _schema_of(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    return str(row[0])


def _tables_in(schema: str) -> set[str]:
    with psycopg.connect(PG_URL) as conn:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            [schema])}


def test_tables_live_in_the_url_schema_only(pg_schema_url: str) -> None:
    # Compared with before rather than with nothing: a developer's own jobdock
    # may have migrated the database's public schema.
    in_public_before = _tables_in("public")
    store = PostgresStore(pg_schema_url)
    try:
        assert store.migrate() == [v for v, _ in migration_files("postgres")]
    finally:
        store.close()
    assert {"tenants", "jobs", "job_errors", "job_attempts", "artifacts",
            "schema_migrations"} <= _tables_in(_schema_of(pg_schema_url))
    assert _tables_in("public") == in_public_before


def test_concurrent_migrators_apply_each_version_once(pg_schema_url: str) -> None:
    stores = [PostgresStore(pg_schema_url, pool_max=2) for _ in range(4)]
    applied: list[list[int]] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def run(store: PostgresStore) -> None:
        barrier.wait()
        try:
            applied.append(store.migrate())
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert failures == []
    assert len(applied) == len(stores)
    # Each file is applied under the lock in its own transaction, so another
    # migrator may take over between two files; no version is applied twice.
    assert sorted(v for versions in applied for v in versions) == [
        v for v, _ in migration_files("postgres")]


def test_migrate_on_a_missing_schema_says_so() -> None:
    require_pg()
    store = PostgresStore(pg_url_with_schema(f"missing_{uuid.uuid4().hex[:8]}"))
    try:
        with pytest.raises(errors.StoreError, match="search_path"):
            store.migrate()
    finally:
        store.close()


def test_schemas_have_their_own_channel_and_lock(pg: PostgresStore,
                                                 other_schema_url: str) -> None:
    other = PostgresStore(other_schema_url)
    other.migrate()
    waiter = other.queue_waiter()
    try:
        assert waiter.wait(0.05) is False
        pg.job_insert_many([_new()])
        assert waiter.wait(0.3) is False, "a job queued in another schema woke this waiter"
        other.job_insert_many([_new()])
        assert waiter.wait(5) is True
        with pg.maintenance_lock() as mine, other.maintenance_lock() as theirs:
            assert mine and theirs
    finally:
        waiter.close()
        other.close()


def test_queue_waiter_listens_from_its_creation(pg: PostgresStore) -> None:
    """A job queued after the waiter was made, before its first wait, wakes it: a
    worker makes its waiter, claims (nothing yet), then waits."""
    waiter = pg.queue_waiter()
    try:
        pg.job_insert_many([_new()])
        assert waiter.wait(5) is True
    finally:
        waiter.close()


def test_large_batch_goes_through_copy_intact(pg: PostgresStore) -> None:
    pg.tenant_create("acme")
    at = datetime.now(UTC).replace(microsecond=0)
    batch = [_new("acme" if i % 3 else "default", at, input={"i": i, "s": "é\t\\\n"},
                  labels={"flow": f"f{i % 2}"}, app_id="app" if i % 2 else None,
                  timeout_s=2.5 if i % 5 == 0 else None, priority=i % 4, name=f"job {i}")
             for i in range(600)]
    waiter = pg.queue_waiter()
    try:
        assert waiter.wait(0.01) is False
        results = pg.job_insert_many(batch)
        assert waiter.wait(5) is True
    finally:
        waiter.close()
    assert all(r.created for r in results)
    for tenant in ("acme", "default"):
        seqs = [r.job.seq for r in results if r.job.tenant_id == tenant]
        assert seqs == list(range(1, len(seqs) + 1))
    for r in results[:20]:
        assert pg.job_get(r.job.tenant_id, r.job.id, now=at) == r.job
    flow1 = pg.job_list(JobQuery(tenant_id="acme", labels={"flow": "f1"}, page_size=1000),
                        now=at)
    assert len(flow1) == sum(1 for j in batch if j.tenant_id == "acme" and j.labels["flow"] == "f1")
    more = pg.job_insert_many([_new("acme", at)])
    assert more[0].job.seq == len([j for j in batch if j.tenant_id == "acme"]) + 1


def test_large_batch_with_idempotency_keys(pg: PostgresStore) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    first = pg.job_insert_many([_new(at=at, idempotency_key=f"k{i}", input={"i": i})
                                for i in range(300)])
    again = [_new(at=at, idempotency_key=f"k{i}", input={"i": i}) for i in range(250, 550)]
    again.append(_new(at=at, idempotency_key="k400", input={"i": 400}))  # repeated in-batch
    results = pg.job_insert_many(again)
    assert [r.created for r in results] == [False] * 50 + [True] * 250 + [False]
    assert results[0].job.id == first[250].job.id
    assert results[-1].job.id == results[150].job.id
    assert [r.job.seq for r in results[50:300]] == list(range(301, 551))
    with pytest.raises(errors.IdempotencyConflict):
        pg.job_insert_many([_new(at=at, idempotency_key="k1", input={"i": "other"})])
    with pytest.raises(errors.IdempotencyConflict):
        pg.job_insert_many([_new(at=at, idempotency_key="k9000", input={"i": 1}),
                            _new(at=at, idempotency_key="k9000", input={"i": 2})])
    assert len(pg.job_list(JobQuery(tenant_id="default", page_size=1000), now=at)) == 550


def test_every_insert_path_checks_the_tenant(pg: PostgresStore, pg_schema_url: str) -> None:
    # jobs.tenant_id has no foreign key: each insert path locks its tenants first
    # (0005), and triggers guard tenant changes and deletions (0004).
    at = datetime.now(UTC).replace(microsecond=0)
    batches = [
        [_new("nobody", at)],  # one tenant, one statement
        [_new("default", at), _new("nobody", at, idempotency_key="k")],  # unnest insert
        [_new("nobody", at) for _ in range(600)],  # COPY
    ]
    for batch in batches:
        with pytest.raises(errors.TenantNotFound, match="nobody"):
            pg.job_insert_many(batch)
    assert pg.job_list(JobQuery(tenant_id="default", page_size=10), now=at) == []
    [job] = pg.job_insert_many([_new("default", at)])
    with psycopg.connect(pg_schema_url, autocommit=True) as conn:
        for statement in ("DELETE FROM tenants WHERE id = 'default'",
                          "UPDATE tenants SET id = 'renamed' WHERE id = 'default'",
                          "UPDATE jobs SET tenant_id = 'nobody'"):
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                conn.execute(statement)
        conn.execute("INSERT INTO tenants (id) VALUES ('spare')")
        conn.execute("UPDATE tenants SET id = 'spare2' WHERE id = 'spare'")
        conn.execute("DELETE FROM tenants WHERE id = 'spare2'")
    assert pg.job_get("default", job.job.id, now=at) == job.job


def test_values_postgres_cannot_store_are_invalid_input(pg: PostgresStore) -> None:
    with pytest.raises(errors.InvalidInput):
        pg.job_insert_many([_new(input={"text": "nul \u0000 byte"})])
    with pytest.raises(errors.InvalidInput):
        pg.job_insert_many([_new(input={"x": float("nan")})])
    with pytest.raises(errors.InvalidInput):
        pg.job_insert_many([_new(priority=2**40)])
    assert pg.job_list(JobQuery(tenant_id="default")) == []


def test_store_connections_do_not_jit(pg: PostgresStore) -> None:
    # Compiling a claim's plan once cost 99% of it (see _configure).
    with pg._conn() as conn:
        assert conn.execute("SHOW jit").fetchone() == ("off",)


def test_times_are_utc_whatever_the_session_time_zone(pg_schema_url: str) -> None:
    url = pg_schema_url.replace("options=", "options=" + quote("-ctimezone=Asia/Kolkata "))
    store = PostgresStore(url)
    try:
        store.migrate()
        at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        [r] = store.job_insert_many([_new(at=at)])
        got = store.job_get("default", r.job.id, now=at)
        assert got is not None and got.created_at == at and got.created_at.tzinfo == UTC
        assert store.now().tzinfo == UTC
    finally:
        store.close()


def test_unreachable_server_is_store_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test")
    try:
        started = time.monotonic()
        with pytest.raises(errors.StoreUnavailable):
            store.ping()
        assert time.monotonic() - started < 10
    finally:
        store.close()


def test_closed_store_is_store_unavailable(pg_schema_url: str) -> None:
    store = PostgresStore(pg_schema_url)
    store.migrate()
    store.close()
    with pytest.raises(errors.StoreUnavailable):
        store.job_get("default", new_id())


def test_pool_replaces_connections_killed_under_it(pg: PostgresStore) -> None:
    [r] = pg.job_insert_many([_new()])
    with pg._pool.connection() as conn:  # the pool's only idle connection, to kill it
        pid = conn.info.backend_pid
    _terminate(pid)
    got = pg.job_get("default", r.job.id)
    assert got is not None and got.id == r.job.id


def test_queue_waiter_survives_its_connection_being_killed(pg: PostgresStore) -> None:
    waiter = pg.queue_waiter()
    try:
        assert waiter.wait(0.01) is False
        assert isinstance(waiter, PostgresQueueWaiter)
        conn = waiter._conn
        assert conn is not None
        _terminate(conn.info.backend_pid)
        started = time.monotonic()
        assert waiter.wait(0.5) is False
        assert time.monotonic() - started < 2.0, "a broken LISTEN must cost one timeout at most"
        assert waiter.wait(0.01) is False  # reconnects and listens again
        pg.job_insert_many([_new()])
        assert waiter.wait(5) is True
    finally:
        waiter.close()


def test_maintenance_lock_dies_with_its_connection(pg: PostgresStore, pg_schema_url: str) -> None:
    rival = PostgresStore(pg_schema_url)
    try:
        with pg.maintenance_lock() as held:
            assert held
            key = _advisory_key("maintenance", _schema_of(pg_schema_url)) & (2**64 - 1)
            with psycopg.connect(PG_URL) as conn:
                holders = conn.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = %s AND objid = %s AND objsubid = 1",
                    [key >> 32, key & 0xFFFFFFFF]).fetchall()
            assert len(holders) == 1
            with rival.maintenance_lock() as rival_held:
                assert not rival_held
            _terminate(holders[0][0])
            with rival.maintenance_lock() as rival_held:
                assert rival_held
    finally:
        rival.close()


def test_claim_heartbeat_complete_and_rescue_race_without_deadlock(pg: PostgresStore,
                                                                   pg_schema_url: str) -> None:
    """Workers completing, heartbeating and a rescuer all hit the same rows at once:
    every job ends exactly once, and no statement fails (a deadlock would)."""
    at = datetime.now(UTC)
    pg.job_insert_many([_new(at=at - timedelta(seconds=1), max_attempts=3) for _ in range(400)])
    stores = [PostgresStore(pg_schema_url, pool_max=3) for _ in range(3)]
    failures: list[BaseException] = []
    finished: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(store: PostgresStore, name: str) -> None:
        try:
            for round_ in range(10_000):
                jobs = store.job_claim_many(name, ["k"], 25, 0.05)
                if not jobs:
                    return
                claims = [(j.id, j.attempt) for j in jobs]
                store.job_heartbeat_many(list(reversed(claims)), 0.05)
                if round_ % 2:
                    time.sleep(0.06)  # let the rescuer take some of these
                    store.job_heartbeat_many(claims, 0.05)
                done = store.job_complete_many(
                    [Completion(j.id, j.attempt, Outcome.SUCCEEDED) for j in reversed(jobs)])
                with lock:
                    finished.extend(done)
        except BaseException as exc:
            failures.append(exc)

    def rescuer() -> None:
        try:
            while not stop.is_set():
                pg.job_rescue_expired(0.0, 0.0)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    threads.append(threading.Thread(target=rescuer))
    for thread in threads:
        thread.start()
    for thread in threads[:-1]:
        thread.join(60)
    stop.set()
    threads[-1].join(10)
    for store in stores:
        store.close()
    assert failures == []
    assert len(finished) == len(set(finished)), "a job was finished twice"
    # Jobs rescued after their last attempt failed; everything else succeeded once,
    # and every rescued attempt's late report was refused.
    listed = pg.job_list(JobQuery(tenant_id="default", page_size=1000))
    assert {j.status for j in listed} <= {S.SUCCEEDED, S.FAILED, S.QUEUED}
    assert {j.id for j in listed if j.status is S.SUCCEEDED} == set(finished)
    history = [a.status for j in listed for a in pg.job_attempts("default", j.id)]
    assert history.count("lost") == history.count("refused")


def test_fairness_with_a_deep_backlog(pg: PostgresStore) -> None:
    pg.tenant_create("small")
    at = datetime.now(UTC).replace(microsecond=0)
    pg.job_insert_many([_new(at=at - timedelta(seconds=60), priority=5) for _ in range(20_000)])
    [lone] = pg.job_insert_many([_new("small", at)])
    claimed = pg.job_claim_many("w", ["k"], 2, 30, now=at)
    assert lone.job.id in {j.id for j in claimed}
