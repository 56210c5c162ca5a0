"""The read routes' answers (GET /v1/jobs/{id}, list pages) are built without a model
per job: they must be the bytes the models gave, and the list must read its index."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from pydantic_core import to_json

from jobdock import App, JobContext
from jobdock.access import Access
from jobdock.api.schemas import JobOut, JobPage, _json_time, job_json, rfc3339
from jobdock.model import Job, JobQuery, JobStatus
from tests.api.conftest import MakeKey, bearer
from tests.helpers import list_plan

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class AnyInput(BaseModel):
    text: str = ""
    ratio: float = 0.0


def register(jd: App) -> None:
    @jd.job("k1", max_attempts=1)
    def k1(ctx: JobContext, input: AnyInput) -> None:
        """Does nothing."""


def model_bytes(job: Job) -> bytes:
    return JobOut.of(job).model_dump_json().encode()


@pytest.mark.parametrize("job", [
    Job(id="0" * 24, tenant_id="t", kind="k", status=JobStatus.QUEUED, input={}),
    Job(id="a" * 24, tenant_id="t", kind="k", status=JobStatus.FAILED, seq=7, app_id="app",
        name="naïve ✓ \u2028 \"quoted\"", priority=-3,
        input={"n": 1e-7, "big": 10**20, "f": 0.1 + 0.2, "nested": [{"a": None}, True]},
        result=[1, "two", 3.0], error={"code": "boom", "message": "ünïcode"},
        stats={"read": 3, "errors": 1}, progress={"done": 1, "total": 3, "message": "x"},
        labels={"team": "a/b"}, parent_id="b" * 24, attempt=2, max_attempts=3,
        run_at=T0, timeout_s=30, retention_s=86_400, idempotency_key="key-1",
        created_at=T0, started_at=T0 + timedelta(microseconds=1),
        finished_at=T0.astimezone(timezone(timedelta(hours=-5))),  # another offset
        updated_at=T0 + timedelta(seconds=1, microseconds=999_999),
        expires_at=(T0 + timedelta(microseconds=5)).astimezone(ZoneInfo("UTC")),
        lease_expires_at=T0, worker_id="w"),
], ids=["bare", "every-field"])
def test_job_json_is_what_the_model_gave(job: Job) -> None:
    assert to_json(job_json(job)) == model_bytes(job)
    page = JobPage(items=[JobOut.of(job)] * 2, next_page_token="tok")
    assert to_json({"items": [job_json(job)] * 2, "next_page_token": "tok"}) == \
        page.model_dump_json().encode()


def test_times_are_written_as_rfc3339_writes_them() -> None:
    rng = random.Random(5)
    zones = [UTC, ZoneInfo("UTC"), timezone(timedelta(hours=5, minutes=30)),
             timezone(timedelta(hours=-8))]
    for _ in range(5_000):
        moment = datetime(rng.randrange(1, 9999), rng.randrange(1, 13), rng.randrange(1, 29),
                          rng.randrange(24), rng.randrange(60), rng.randrange(60),
                          rng.choice([0, 1, 10, 100_000, 999_999, rng.randrange(10**6)]),
                          tzinfo=rng.choice(zones))
        try:
            expected = rfc3339(moment)
        except OverflowError:
            continue  # year 1 or 9999 moved out of range by the offset
        assert to_json(_json_time(moment)) == to_json(expected), moment


def test_get_and_list_answer_the_models_bytes(jd: App, client: TestClient,
                                              make_key: MakeKey) -> None:
    register(jd)
    headers = bearer(make_key(scopes=("jobs:read", "jobs:write")))
    ids = []
    for n in range(3):
        answer = client.post("/v1/jobs", headers=headers, json={
            "kind": "k1", "input": {"text": f"é{n}", "ratio": n / 3}, "labels": {"n": str(n)},
            "timeout_s": 30, "name": "ünï"})
        assert answer.status_code == 201
        ids.append(answer.json()["id"])

    for job_id in ids:
        got = client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/json"
        assert got.content == model_bytes(jd.get(job_id))

    listed = client.get("/v1/jobs?kind=k1&status=queued&page_size=2", headers=headers)
    assert listed.status_code == 200
    token = listed.json()["next_page_token"]
    expected = JobPage(items=[JobOut.of(jd.get(i)) for i in reversed(ids[1:])],
                       next_page_token=token)
    assert listed.content == expected.model_dump_json().encode()
    last = client.get(f"/v1/jobs?kind=k1&status=queued&page_size=2&page_token={token}",
                      headers=headers)
    assert last.json() == {"items": [JobOut.of(jd.get(ids[0])).model_dump(mode="json")],
                           "next_page_token": None}


def test_an_app_key_asking_for_another_app_gets_an_empty_page(
        jd: App, client: TestClient, make_key: MakeKey) -> None:
    make_key()  # makes the tenant
    app_record = Access(jd.engine.store).create_app("default", "one")
    answer = client.get("/v1/jobs?app_id=someone-else",
                        headers=bearer(make_key(app_id=app_record.id)))
    assert answer.status_code == 200
    assert answer.content == b'{"items":[],"next_page_token":null}'


def test_json_columns_read_back_as_json_loads_reads_them(jd: App, database_url: str) -> None:
    """job_get and job_list decode JSON with a faster parser than json.loads: the same
    values. (PostgreSQL's jsonb keeps numbers as numeric: 1.79e308 comes back an int,
    -0.0 a 0, as it always did; psycopg's own jsonb loader, json.loads, is the reference.)"""
    @jd.job("anything", max_attempts=1)
    def anything(ctx: JobContext, input: Any) -> None:
        """Takes any JSON."""

    odd = {"floats": [1e-7, 0.1, 5e-324, 1.7976931348623157e308, -0.0, 2.5],
           "ints": [0, -1, 2**63, 12345678901234567890123], "text": "é ✓ 😀 \u2028 \\ \"",
           "nested": {"a": [None, True, False, {"b": []}]}, "empty": {}}
    job = jd.submit("anything", odd, labels={"x": "ü"})
    expected = odd
    if not database_url.startswith("sqlite"):
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT input FROM jobs WHERE id = %s", [job.id]).fetchone()
        assert row is not None
        expected = row[0]
    for got in (jd.get(job.id), jd.list(kind="anything").items[0]):
        assert repr(got.input) == repr(expected)  # -0.0, and ints apart from floats
        assert got.labels == {"x": "ü"}
        assert (got.stats, got.progress, got.result, got.error) == ({}, {}, None, None)


# -- the list reads jobs_kind_status ----------------------------------------------------
def _filtered(tenant: str = "default") -> JobQuery:
    return JobQuery(tenant_id=tenant, kinds=["k1"], statuses=[JobStatus.SUCCEEDED],
                    page_size=101, after_id="f" * 24)


def test_a_kind_and_status_list_reads_its_index(jd: App, database_url: str) -> None:
    """The page's ids come from jobs_kind_status in id order, not from a walk of every
    job of the tenant (which, in a queue, is the whole unfinished backlog first)."""
    register(jd)
    jd.submit_many([("k1", {"text": str(n)}) for n in range(2_000)])
    plan = "\n".join(list_plan(database_url, _filtered(), T0))
    if database_url.startswith("sqlite"):
        assert "USING INDEX jobs_kind_status" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the order
        return
    assert "Backward using jobs_kind_status" in plan, plan
    assert "Seq Scan" not in plan, plan
