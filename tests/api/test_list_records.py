"""List pages built by the database as JSON records (store/records.py): the same bytes
as the API's JobOut model whatever the values, and lists of several kinds or finished
statuses read jobs_kind_status."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic_core import to_json

from jobdock import App, JobContext
from jobdock.api.schemas import JobOut, JobPage, job_page_response
from jobdock.model import Job, JobQuery, JobStatus
from jobdock.store.records import job_record
from tests.api.conftest import MakeKey, bearer
from tests.helpers import list_plan

S = JobStatus
TIMES = ("run_at", "created_at", "started_at", "finished_at", "updated_at", "expires_at")


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


def set_column(database_url: str, job_id: str, column: str, value: Any) -> None:
    """Write a column as a worker or an old version could have left it; JSON columns
    take JSON text (SQLite keeps it as is, e.g. NaN), times a datetime."""
    sqlite_db = database_url.startswith("sqlite")
    if column in TIMES and value is not None and sqlite_db:
        value = value.timestamp() if isinstance(value, datetime) else value
    mark = "?" if sqlite_db else "%s"
    cast = "" if sqlite_db or column not in ("input", "result", "error", "stats", "progress",
                                             "labels") else "::jsonb"
    with sql(database_url) as conn:
        conn.execute(f"UPDATE jobs SET {column} = {mark}{cast} WHERE id = {mark}",
                     (value, job_id))


def model_page(jobs: Sequence[Job]) -> bytes:
    return JobPage(items=[JobOut.of(j) for j in jobs], next_page_token=None).model_dump_json(
    ).encode()


def assert_records_are_the_models(jd: App, query: JobQuery) -> None:
    store = jd.engine.store
    jobs = store.job_list(query)
    records = store.job_list_records(query)
    assert [r["id"] for r in records] == [j.id for j in jobs]
    assert job_page_response(records, None).body == model_page(jobs)
    assert to_json([job_record(j) for j in jobs]) == to_json(records)


def test_odd_values_come_out_as_the_model_writes_them(jd: App, database_url: str) -> None:
    """Times, timeouts and JSON values the database's text could get wrong: the page is
    the model's bytes (SQLite takes the rows through Job for what its SQL cannot write)."""
    register(jd, "odd")
    sqlite_db = database_url.startswith("sqlite")
    inputs = [{"text": "é ✓ 😀 \u2028 \\ \" \t", "n": 1e-7, "big": 2**70, "f": 0.1 + 0.2,
               "e": 1e22, "z": -0.0, "nested": [None, True, {"a": []}]}, {}, {"x": "\x01"}]
    jobs = [jd.submit("odd", inputs[n % len(inputs)], name="ünï \"x\"" if n % 2 else None,
                      labels={"team": "a/b"} if n % 3 else None, timeout_s=timeout)
            for n, timeout in enumerate([30, 0.1, 0.30000000000000004, 2.5e-7, 1e-300,
                                         123456.000001, 7, None])]
    ids = [j.id for j in jobs]
    moments = [datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=UTC),
               datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
               datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
               datetime(9999, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
               datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=-1)]
    for n, job_id in enumerate(ids):
        set_column(database_url, job_id, TIMES[n % len(TIMES)], moments[n % len(moments)])
    set_column(database_url, ids[0], "stats", "null")
    set_column(database_url, ids[1], "progress", "{}")
    set_column(database_url, ids[2], "result", '{"rows": 3, "ratio": 0.5, "s": "\\u00e9"}')
    set_column(database_url, ids[3], "error", '{"code": "x", "message": "\\ud83d\\ude00"}')
    set_column(database_url, ids[4], "labels", "[]")
    query = JobQuery(tenant_id="default", page_size=100)
    assert_records_are_the_models(jd, query)
    if sqlite_db:  # what only Python's json reads: NaN, a lone surrogate
        set_column(database_url, ids[5], "result", "NaN")
        assert_records_are_the_models(jd, query)
        set_column(database_url, ids[5], "result", '"\\ud800"')
        assert_records_are_the_models(jd, query)
        set_column(database_url, ids[6], "timeout_s", float("inf"))
        assert_records_are_the_models(jd, query)
    else:
        for value in (float("inf"), float("nan"), -0.0, 5e-324):
            set_column(database_url, ids[6], "timeout_s", value)
            assert_records_are_the_models(jd, query)


def test_any_time_is_written_as_python_reads_it(jd: App, database_url: str) -> None:
    """SQLite keeps Unix seconds as floats; its SQL rounds them to microseconds as
    datetime.fromtimestamp does (half to even), halves included."""
    register(jd, "t")
    jobs = jd.submit_many([("t", {}) for _ in range(150)])
    rng = random.Random(7)
    sqlite_db = database_url.startswith("sqlite")
    for job in jobs:
        column = rng.choice(TIMES)
        if sqlite_db:
            grid = rng.choice([1, 2**22, 2**40, 10**6])  # exact halves of a microsecond too
            value: Any = rng.randrange(-2 * 10**9 * grid, 2 * 10**9 * grid) / grid
            value += rng.choice([0, 0, 2.5e-6, -2.5e-6, 0.5e-6, 0.49999999999999994e-6])
        else:
            value = datetime(1, 1, 2, tzinfo=UTC) + timedelta(
                microseconds=rng.randrange(9998 * 365 * 86_400 * 10**6))
        set_column(database_url, job.id, column, value)
    assert_records_are_the_models(jd, JobQuery(tenant_id="default", page_size=1000))


def test_ordinary_pages_are_not_made_through_job(jd: App,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    register(jd, "t")
    for timeout in (30, 0.5, 86_400.25, None):
        jd.submit("t", {"a": [1, "é"]}, labels={"x": "y"}, timeout_s=timeout)
    store = jd.engine.store
    expected = [job_record(j) for j in store.job_list(JobQuery(tenant_id="default"))]

    def no_job_list(*args: Any, **kwargs: Any) -> list[Job]:
        raise AssertionError("the page went through Job")

    monkeypatch.setattr(store, "job_list", no_job_list)
    assert store.job_list_records(JobQuery(tenant_id="default")) == expected


def test_an_empty_page(jd: App) -> None:
    register(jd, "t")
    jd.submit("t", {})
    assert jd.engine.store.job_list_records(JobQuery(tenant_id="default", kinds=["x"])) == []


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
    lines = list_plan(database_url, _walked())
    if database_url.startswith("sqlite"):
        walks = [line for line in lines if "USING INDEX jobs_kind_status" in line]
        assert len(walks) == 4, lines
        assert not any("jobs_tenant" in line or line.startswith("SCAN jobs")
                       for line in lines), lines
        return
    plan = "\n".join(lines)
    assert "Backward using jobs_kind_status" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    assert "jobs_tenant" not in plan, plan
