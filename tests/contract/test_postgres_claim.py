"""PostgreSQL claims that run at the same time as other claims.

A claim locks the jobs it takes until it commits; another worker's claim in the
meantime must take other jobs rather than come back empty (a --burst worker
would stop with jobs waiting) or wait for the first one's commit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from jobdock.ids import new_id
from jobdock.model import JobStatus, NewJob
from jobdock.store.postgres import PostgresStore

LEASE_S = 30.0


def _add(pg: PostgresStore, n: int, tenant: str = "default", **fields: Any) -> list[str]:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    jobs = [NewJob(id=new_id(at.timestamp()), tenant_id=tenant, kind="k",
                   status=JobStatus.QUEUED, run_at=at + timedelta(milliseconds=i),
                   created_at=at, retention_s=3600, input={}, max_attempts=1, **fields)
            for i in range(n)]
    return [r.job.id for r in pg.job_insert_many(jobs)]


def _lock(conn: psycopg.Connection[Any], ids: list[str]) -> None:
    """Lock jobs as a claim in flight does, until `conn`'s transaction ends."""
    conn.execute("SELECT id FROM jobs WHERE id = ANY(%s) FOR UPDATE", [ids])


def test_a_claim_takes_other_jobs_than_a_claim_in_flight(pg: PostgresStore,
                                                          pg_schema_url: str) -> None:
    ids = _add(pg, 10)
    with psycopg.connect(pg_schema_url) as other:
        _lock(other, ids[:4])  # the head of the queue, as the first claim takes it
        claimed = pg.job_claim_many("w2", ["k"], 4, LEASE_S)
        other.rollback()
    assert [j.id for j in claimed] == ids[4:8]


def test_a_tenant_whose_head_is_locked_still_gets_its_share(pg: PostgresStore,
                                                            pg_schema_url: str) -> None:
    pg.tenant_create("b")
    a_ids = _add(pg, 6)
    b_ids = _add(pg, 6, "b")
    with psycopg.connect(pg_schema_url) as other:
        _lock(other, a_ids[:3])
        claimed = pg.job_claim_many("w2", ["k"], 4, LEASE_S)
        other.rollback()
    # Round robin over the unlocked jobs, each round in run_at order: b's 1st
    # (due 3 ms before a's 4th), a's 4th, b's 2nd, a's 5th.
    assert [j.id for j in claimed] == [b_ids[0], a_ids[3], b_ids[1], a_ids[4]]


def test_a_claim_finding_every_job_locked_comes_back_empty(pg: PostgresStore,
                                                           pg_schema_url: str) -> None:
    ids = _add(pg, 3)
    with psycopg.connect(pg_schema_url) as other:
        _lock(other, ids)
        assert pg.job_claim_many("w2", ["k"], 3, LEASE_S) == []
        other.rollback()
    assert len(pg.job_claim_many("w2", ["k"], 3, LEASE_S)) == 3


def test_two_workers_claiming_at_once_both_get_jobs(pg: PostgresStore,
                                                    pg_schema_url: str) -> None:
    expected = set(_add(pg, 400))
    stores = [PostgresStore(pg_schema_url, pool_max=1) for _ in range(2)]
    start = threading.Barrier(2)
    batches: dict[str, list[list[str]]] = {"w0": [], "w1": []}

    def claim_rounds(store: PostgresStore, worker: str) -> None:
        for _ in range(10):
            start.wait(10)  # both claims of a round start together
            batch = store.job_claim_many(worker, ["k"], 20, LEASE_S)
            batches[worker].append([j.id for j in batch])

    threads = [threading.Thread(target=claim_rounds, args=(s, f"w{i}"))
               for i, s in enumerate(stores)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for store in stores:
            store.close()
    claimed = [i for rounds in batches.values() for batch in rounds for i in batch]
    assert len(claimed) == len(set(claimed)) == 400, "a job was claimed twice, or missed"
    assert set(claimed) == expected
    assert all(len(batch) == 20 for rounds in batches.values() for batch in rounds)
