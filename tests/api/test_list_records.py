"""Lists of several kinds or finished statuses read jobs_kind_status: one walk per
(kind, status), merged, and every match once, in order, page after page."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from jobdock import App, JobContext
from jobdock.model import JobQuery, JobStatus
from jobdock.store import postgres, sqlite
from tests.api.conftest import MakeKey, bearer

S = JobStatus


def register(jd: App, *kinds: str) -> None:
    for kind in kinds:
        @jd.job(kind, max_attempts=1)
        def anything(ctx: JobContext, input: Any) -> None:
            """Takes any JSON."""


@contextmanager
def sql(database_url: str) -> Iterator[Any]:
    """A connection to the test's database, committing at the end of the block."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            yield conn
    else:
        with psycopg.connect(database_url) as conn:
            yield conn


# -- several kinds or finished statuses ----------------------------------------------
def finished_jobs(jd: App, database_url: str, n: int = 60) -> list[tuple[str, str, str]]:
    """`n` jobs of kinds a, b, c in every status, finished ones mostly; (id, kind, status)
    newest first."""
    register(jd, "a", "b", "c")
    rng = random.Random(3)
    kinds = [rng.choice("abc") for _ in range(n)]
    jobs = jd.submit_many([(kind, {"n": i}) for i, kind in enumerate(kinds)])
    statuses = ["succeeded", "failed", "canceled", "skipped", "queued", "running"]
    out = []
    with sql(database_url) as conn:
        mark = "?" if database_url.startswith("sqlite") else "%s"
        for job in jobs:
            status = rng.choice(statuses)
            conn.execute(f"UPDATE jobs SET status = {mark} WHERE id = {mark}", (status, job.id))
            out.append((job.id, job.kind, status))
    return sorted(out, reverse=True)


@pytest.mark.parametrize(("params", "kinds", "statuses"), [
    ("kind_in=a,b&status_in=succeeded,failed", "ab", ["succeeded", "failed"]),
    ("kind=a&status_in=failed,canceled,skipped", "a", ["failed", "canceled", "skipped"]),
    ("kind_in=c,a,c&status=succeeded", "ac", ["succeeded"]),
    ("kind_in=a,b&status_in=succeeded,queued", "ab", ["succeeded", "queued"]),  # no index
])
def test_lists_of_several_kinds_and_statuses_page_through_every_match(
        jd: App, database_url: str, client: TestClient, make_key: MakeKey,
        params: str, kinds: str, statuses: list[str]) -> None:
    jobs = finished_jobs(jd, database_url)
    expected = [job_id for job_id, kind, status in jobs if kind in kinds and status in statuses]
    headers = bearer(make_key(scopes=("jobs:read",)))
    seen: list[str] = []
    token = None
    while True:
        answer = client.get(f"/v1/jobs?{params}&page_size=4"
                            + (f"&page_token={token}" if token else ""), headers=headers)
        assert answer.status_code == 200, answer.text
        seen += [item["id"] for item in answer.json()["items"]]
        token = answer.json()["next_page_token"]
        if token is None:
            break
    assert seen == expected


def _walked(tenant: str = "default") -> JobQuery:
    return JobQuery(tenant_id=tenant, kinds=["a", "b"], statuses=[S.SUCCEEDED, S.FAILED],
                    page_size=101, after_id="f" * 24)


def test_several_kinds_and_finished_statuses_read_the_index(jd: App, database_url: str) -> None:
    """One walk of jobs_kind_status per (kind, status), in id order, not a walk of every
    job of the tenant newest first (which, in a queue, is the whole backlog first)."""
    register(jd, "a", "b")
    jd.submit_many([("a", {"n": n}) for n in range(2_000)])
    if database_url.startswith("sqlite"):
        statement, params = sqlite._job_list_statement(_walked(), 0.0)
        with sql(database_url) as conn:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
        walks = [line for line in plan if "USING INDEX jobs_kind_status" in line]
        assert len(walks) == 4, plan
        assert not any("jobs_tenant" in line or line.startswith("SCAN jobs") for line in plan), plan
        return
    composed, values = postgres._job_list_statement(_walked(), None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE jobs")
        rows = conn.execute(b"EXPLAIN " + composed.as_bytes(conn), values).fetchall()
    plan = "\n".join(str(row[0]) for row in rows)
    assert "Backward using jobs_kind_status" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    assert "jobs_tenant" not in plan, plan
