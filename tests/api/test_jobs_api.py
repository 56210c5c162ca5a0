"""The native job routes (/v1/jobs..., /v1/kinds) over HTTP, on both stores.

Jobs run on a worker thread where a test needs them to finish; tests wait with
the API's own long-poll, never with sleeps, and assert no timings.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import BaseModel

from jobdock import App, JobContext, Worker
from jobdock.access import Access
from tests.api.conftest import MakeKey, bearer
from tests.helpers import WorkerThreads

Headers = dict[str, str]
PROBLEM = "application/problem+json"


class RowsInput(BaseModel):
    n: int = 0
    bad: list[int] = []
    retry_of: str | None = None
    records: list[dict[str, Any]] | None = None


class PlainInput(BaseModel):
    n: int = 0


def register_kinds(jd: App) -> None:
    @jd.job("rows", max_attempts=1)
    def rows(ctx: JobContext, input: RowsInput) -> dict[str, int]:
        """Counts rows; rows listed in `bad` fail with retry data (a retry's records pass)."""
        records = input.records if input.records is not None else [
            {"i": i} for i in range(input.n)]
        for record in records:
            ctx.count(read=1)
            if input.records is None and record["i"] in input.bad:
                ctx.error("bad row", code="422", record=record, retry_data=record)
                ctx.count(errors=1)
            else:
                ctx.count(success=1)
        ctx.artifact("out.txt", b"done")
        return {"seen": len(records)}

    @jd.job("plain", max_attempts=1)
    def plain(ctx: JobContext, input: PlainInput) -> None:
        """Fails a record but has no `records` input: its errors cannot be re-run."""
        ctx.error("bad", retry_data={"i": 1})


@pytest.fixture
def key(jd: App, make_key: MakeKey) -> str:
    register_kinds(jd)
    return make_key()


@pytest.fixture
def h(key: str) -> Headers:
    return bearer(key)


@pytest.fixture
def start_worker(jd: App) -> Iterator[Callable[[], Worker]]:
    """Start a worker thread (after the kinds are registered); stopped after the test."""
    workers = WorkerThreads(jd)
    yield workers.start
    workers.stop_all()


def submit(client: TestClient, h: Headers, kind: str = "sleep", input: Any = None,
           expect: int = 201, **fields: Any) -> dict[str, Any]:
    body = {"kind": kind, "input": {"seconds": 0} if input is None and kind == "sleep"
            else (input or {}), **fields}
    r = client.post("/v1/jobs", json=body, headers=h)
    assert r.status_code == expect, r.text
    data: dict[str, Any] = r.json()
    return data


def finished(client: TestClient, h: Headers, job_id: str) -> dict[str, Any]:
    """The job once terminal, by the API's long-poll."""
    for _ in range(10):
        r = client.get(f"/v1/jobs/{job_id}", params={"wait": 30}, headers=h)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("succeeded", "failed", "canceled", "skipped"):
            job: dict[str, Any] = r.json()
            return job
    raise AssertionError(f"job {job_id} did not finish")


def problem_of(r: Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"] and body["code"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def ids(r: Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["items"]]


def app_key(jd: App, make_key: MakeKey, name: str, tenant: str = "default") -> tuple[str, str]:
    """(app id, key of that app)."""
    if jd.engine.store.tenant_get(tenant) is None:
        jd.create_tenant(tenant)
    record = Access(jd.engine.store).create_app(tenant, name)
    return record.id, make_key(tenant, app_id=record.id)


# -- submit ------------------------------------------------------------------------
JOB_FIELDS = {
    "id", "tenant_id", "app_id", "seq", "kind", "name", "status", "priority", "input",
    "result", "error", "stats", "progress", "labels", "parent_id", "attempt", "max_attempts",
    "run_at", "timeout_s", "retention_s", "idempotency_key", "created_at", "started_at",
    "finished_at", "updated_at", "expires_at",
}


def test_submit_answers_201_with_location_and_every_field(client: TestClient,
                                                         h: Headers) -> None:
    r = client.post("/v1/jobs", json={"kind": "sleep", "input": {"seconds": 1}}, headers=h)
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert set(job) == JOB_FIELDS
    assert job["status"] == "queued" and job["tenant_id"] == "default" and job["app_id"] is None
    assert job["input"] == {"seconds": 1.0, "fail": False}  # as the kind's model stores it
    assert job["created_at"].endswith("Z")
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None
    got = client.get(r.headers["location"], headers=h)
    assert got.status_code == 200 and got.json() == job


def test_submit_takes_every_option(client: TestClient, h: Headers) -> None:
    parent = submit(client, h)
    run_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    job = submit(client, h, name="nightly", labels={"flow_id": "f1", "team": "ops"},
                 priority=5, run_at=run_at.isoformat(), max_attempts=4, timeout_s=9.5,
                 retention_s=60, parent_id=parent["id"])
    assert job["status"] == "scheduled"
    assert datetime.fromisoformat(job["run_at"]) == run_at
    assert (job["name"], job["labels"], job["priority"], job["max_attempts"],
            job["timeout_s"], job["retention_s"], job["parent_id"]) == (
        "nightly", {"flow_id": "f1", "team": "ops"}, 5, 4, 9.5, 60, parent["id"])


def test_idempotency_key_replays_the_job_and_refuses_another_body(client: TestClient,
                                                                  h: Headers) -> None:
    key = {**h, "Idempotency-Key": "order-17"}
    body = {"kind": "sleep", "input": {"seconds": 2}, "labels": {"order": "17"}}
    first = client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = client.post("/v1/jobs", json=body, headers=key)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    other_input = client.post("/v1/jobs", json={**body, "input": {"seconds": 3}}, headers=key)
    assert problem_of(other_input, 409)["code"] == "idempotency_conflict"
    other_labels = client.post("/v1/jobs", json={**body, "labels": {"order": "18"}},
                               headers=key)
    assert "labels" in problem_of(other_labels, 409)["detail"]
    assert ids(client.get("/v1/jobs", headers=h)) == [first.json()["id"]]


def test_idempotency_key_of_another_app_is_a_conflict_that_shows_nothing(
        client: TestClient, jd: App, h: Headers, make_key: MakeKey) -> None:
    _, key_a = app_key(jd, make_key, "a")
    _, key_b = app_key(jd, make_key, "b")
    body = {"kind": "sleep", "input": {"seconds": 1}}
    first = client.post("/v1/jobs", json=body, headers={**bearer(key_a), "Idempotency-Key": "k"})
    assert first.status_code == 201
    for other in ({"kind": "sleep", "input": {"seconds": 1}}, {"kind": "sleep", "input": {}}):
        r = client.post("/v1/jobs", json=other, headers={**bearer(key_b), "Idempotency-Key": "k"})
        assert first.json()["id"] not in r.text
        problem_of(r, 409)


def test_unknown_kind_is_422_naming_the_registered_kinds(client: TestClient,
                                                         h: Headers) -> None:
    body = problem_of(client.post("/v1/jobs", json={"kind": "slep"}, headers=h), 422, "kind")
    assert body["code"] == "unknown_kind"
    assert "'slep'" in body["detail"] and "sleep" in body["detail"] and "rows" in body["detail"]


def test_input_failing_the_kinds_schema_is_422_naming_input_fields(client: TestClient,
                                                                   h: Headers) -> None:
    r = client.post("/v1/jobs", json={"kind": "sleep", "input": {"seconds": -1, "fail": "x"}},
                    headers=h)
    body = problem_of(r, 422)
    assert {e["field"] for e in body["errors"]} == {"input.seconds", "input.fail"}
    r = client.post("/v1/jobs", json={"kind": "sleep", "input": [1]}, headers=h)
    problem_of(r, 422, "input")


@pytest.mark.parametrize(("body", "field"), [
    ({}, "kind"),
    ({"kind": "sleep", "lables": {}}, "lables"),
    ({"kind": "sleep", "priority": "high"}, "priority"),
    ({"kind": "sleep", "run_at": "2030-01-01T00:00:00"}, "run_at"),
    ({"kind": "sleep", "run_at": "tomorrow"}, "run_at"),
    ({"kind": "sleep", "max_attempts": 0}, "max_attempts"),
    ({"kind": "sleep", "timeout_s": 0}, "timeout_s"),
    ({"kind": "sleep", "labels": {"a b": "x"}}, "labels.a b.[key]"),
    ({"kind": "sleep", "labels": {"a": 1}}, "labels.a"),
    ({"kind": "sleep", "parent_id": "nope"}, "parent_id"),
    ({"kind": "sleep", "parent_id": "0" * 24}, "parent_id"),
    ({"kind": "sleep", "run_at": "0001-01-01T00:00:00+01:00"}, "run_at"),
    ({"kind": "sleep", "name": "a\x00b"}, "name"),
    ({"kind": "sleep", "labels": {"a": "\x00"}}, "labels"),
    ({"kind": "rows", "input": {"records": [{"x": "\x00"}]}}, "input"),
    ([1, 2], "body"),
])
def test_invalid_bodies_are_422_naming_the_field(client: TestClient, h: Headers,
                                                 body: Any, field: str) -> None:
    problem_of(client.post("/v1/jobs", json=body, headers=h), 422, field)


def test_malformed_json_is_422(client: TestClient, h: Headers) -> None:
    r = client.post("/v1/jobs", content=b'{"kind": "sleep",',
                    headers={**h, "Content-Type": "application/json"})
    problem_of(r, 422, "body")


@pytest.mark.parametrize("value", [b"NaN", b"-Infinity", b'"\\ud800"', b"[" * 150 + b"]" * 150])
def test_input_no_store_can_keep_is_422_on_every_store(client: TestClient, h: Headers,
                                                       value: bytes) -> None:
    r = client.post("/v1/jobs", content=b'{"kind": "rows", "input": {"records": [{"x": '
                    + value + b"}]}}", headers={**h, "Content-Type": "application/json"})
    problem_of(r, 422, "input")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None])
def test_a_body_that_is_not_json_is_415(client: TestClient, h: Headers,
                                        content_type: str | None) -> None:
    headers = dict(h)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = client.post("/v1/jobs", content=b'{"kind": "sleep"}', headers=headers)
    assert problem_of(r, 415)["code"] == "unsupported_media_type"
    r = client.patch(f"/v1/jobs/{'0' * 24}/errors/{'0' * 24}", content=b"{}", headers=headers)
    problem_of(r, 415)


def test_json_variants_and_bodiless_posts_pass_the_content_type_check(
        client: TestClient, h: Headers) -> None:
    r = client.post("/v1/jobs", content=b'{"kind": "sleep"}',
                    headers={**h, "Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=h)  # no body, no type
    assert r.status_code == 200, r.text


def test_a_body_over_the_limit_is_413_declared_or_streamed(client: TestClient, jd: App,
                                                           h: Headers) -> None:
    limit = jd.settings.max_body_bytes
    big = {"kind": "sleep", "input": {"seconds": 1, "pad": "x" * limit}}
    r = client.post("/v1/jobs", json=big, headers=h)
    assert problem_of(r, 413)["max_bytes"] == limit
    chunks = iter([b'{"kind": "sleep", "input": {"pad": "', b"x" * limit, b'"}}'])
    r = client.post("/v1/jobs", content=chunks,
                    headers={**h, "Content-Type": "application/json"})
    assert "content-length" not in r.request.headers  # sent chunked: counted as it came
    problem_of(r, 413)
    assert ids(client.get("/v1/jobs", headers=h)) == []


def test_submit_needs_a_key_with_the_write_scope(client: TestClient, make_key: MakeKey) -> None:
    problem_of(client.post("/v1/jobs", json={"kind": "sleep"}), 401)
    reader = bearer(make_key(scopes=("jobs:read",)))
    assert problem_of(client.post("/v1/jobs", json={"kind": "sleep"}, headers=reader),
                      403)["code"] == "forbidden"


# -- get, long-poll ----------------------------------------------------------------
def test_another_tenants_or_apps_job_answers_exactly_as_a_missing_one(
        client: TestClient, jd: App, make_key: MakeKey) -> None:
    app_a, key_a = app_key(jd, make_key, "a", tenant="acme")
    _, key_b = app_key(jd, make_key, "b", tenant="acme")
    tenant_key = make_key("acme")
    stranger = make_key("globex")
    job = submit(client, bearer(key_a))
    assert job["app_id"] == app_a
    paths = [f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}?wait=0.1",
             f"/v1/jobs/{job['id']}/children", f"/v1/jobs/{job['id']}/errors",
             f"/v1/jobs/{job['id']}/events"]
    assert client.get(paths[0], headers=bearer(tenant_key)).status_code == 200
    refused = {(who, path): client.get(path, headers=bearer(who))
               for who in (key_b, stranger) for path in paths}
    actions = {who: [client.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(who)),
                     client.post(f"/v1/jobs/{job['id']}/retry", headers=bearer(who)),
                     client.post(f"/v1/jobs/{job['id']}/errors/retry", headers=bearer(who)),
                     client.delete(f"/v1/jobs/{job['id']}", headers=bearer(who))]
               for who in (key_b, stranger)}
    assert client.get(paths[0], headers=bearer(key_a)).json()["status"] == "queued"
    deleted = client.delete(f"/v1/jobs/{job['id']}", headers=bearer(key_a))
    assert deleted.json() == {"deleted": [job["id"]]}
    for (who, path), r in refused.items():
        missing = client.get(path, headers=bearer(who))
        assert (r.status_code, r.json()) == (404, missing.json()), path
    for who, answers in actions.items():
        missing = client.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(who))
        assert [(r.status_code, r.json()) for r in answers] == [(404, missing.json())] * 4


def test_an_id_of_the_wrong_shape_is_404(client: TestClient, h: Headers) -> None:
    assert problem_of(client.get("/v1/jobs/not-an-id", headers=h), 404)["code"] == (
        "job_not_found")


def test_long_poll_returns_when_a_worker_finishes_the_job(
        client: TestClient, h: Headers, start_worker: Callable[[], Worker]) -> None:
    job = submit(client, h, input={"seconds": 0.2})
    start_worker()
    r = client.get(f"/v1/jobs/{job['id']}", params={"wait": 60}, headers=h)
    assert r.status_code == 200
    assert r.json()["status"] == "succeeded"


def test_long_poll_answers_the_job_as_it_is_when_the_wait_is_over(client: TestClient,
                                                                  h: Headers) -> None:
    job = submit(client, h)
    r = client.get(f"/v1/jobs/{job['id']}", params={"wait": 0.3}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "queued"


@pytest.mark.parametrize("wait", ["0", "-1", "61", "soon"])
def test_wait_out_of_range_is_400(client: TestClient, h: Headers, wait: str) -> None:
    job = submit(client, h)
    body = problem_of(client.get(f"/v1/jobs/{job['id']}?wait={wait}", headers=h), 400, "wait")
    assert body["code"] == "invalid_parameter"


# -- list --------------------------------------------------------------------------
def test_list_is_newest_first_and_filters_by_kind_status_parent_and_labels(
        client: TestClient, h: Headers) -> None:
    a = submit(client, h, labels={"flow": "f1", "team": "x"})
    b = submit(client, h, "rows", labels={"flow": "f1"})
    c = submit(client, h, "plain", parent_id=a["id"], labels={"flow": "f2"})
    d = submit(client, h, run_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    client.post(f"/v1/jobs/{b['id']}/cancel", headers=h)

    def listed(**params: Any) -> list[str]:
        return ids(client.get("/v1/jobs", params=params, headers=h))

    assert listed() == [d["id"], c["id"], b["id"], a["id"]]
    assert listed(kind="sleep") == [d["id"], a["id"]]
    assert listed(kind_in="rows,plain") == [c["id"], b["id"]]
    assert listed(status="canceled") == [b["id"]]
    assert listed(status_in="scheduled, queued") == [d["id"], c["id"], a["id"]]
    assert listed(parent_id=a["id"]) == [c["id"]]
    assert listed(**{"label.flow": "f1"}) == [b["id"], a["id"]]
    assert listed(**{"label.flow": "f1", "label.team": "x"}) == [a["id"]]
    assert listed(**{"label.flow": "nope"}) == []
    assert listed(kind="sleep", status="scheduled") == [d["id"]]


def test_list_filters_by_times_and_counters(client: TestClient, h: Headers,
                                            start_worker: Callable[[], Worker]) -> None:
    small = submit(client, h, "rows", {"n": 2})
    big = submit(client, h, "rows", {"n": 5, "bad": [0]})
    waiting = submit(client, h, run_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    start_worker()
    small_done, big_done = finished(client, h, small["id"]), finished(client, h, big["id"])
    assert big_done["stats"] == {"read": 5, "success": 4, "errors": 1}

    def listed(**params: Any) -> list[str]:
        return ids(client.get("/v1/jobs", params=params, headers=h))

    assert listed(**{"stats.success_gte": 3}) == [big["id"]]
    # A job without the counter counts it as 0.
    assert listed(**{"stats.success_lte": 3}) == [waiting["id"], small["id"]]
    assert listed(**{"stats.errors_gte": 1, "stats.read_lte": 5}) == [big["id"]]
    created = datetime.fromisoformat(big["created_at"])
    assert listed(created_at_gte=big["created_at"], kind="rows") == [big["id"]]
    assert listed(created_at_lte=small["created_at"]) == [small["id"]]
    assert listed(created_at_gte=(created + timedelta(days=1)).isoformat()) == []
    first_finish = min(small_done["finished_at"], big_done["finished_at"])
    assert set(listed(finished_at_gte=first_finish)) == {small["id"], big["id"]}
    assert listed(finished_at_lte=(datetime.now(UTC) - timedelta(days=1)).isoformat()) == []
    # An offset's '+' sent unencoded arrives as a space, and still means '+'.
    before = (created - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    r = client.get(f"/v1/jobs?created_at_gte={before.isoformat()}&kind=rows", headers=h)
    assert ids(r) == [big["id"], small["id"]]


@pytest.mark.parametrize(("query", "parameter"), [
    ("status=runing", "status"),
    ("status_in=queued,nope", "status_in"),
    ("status_in=queued,,running", "status_in"),
    ("kind_in=", "kind_in"),
    ("created_at_gte=yesterday", "created_at_gte"),
    ("created_at_lte=2026-01-01", "created_at_lte"),
    ("finished_at_gte=2026-01-01T00:00:00", "finished_at_gte"),
    ("finished_at_lte=2026-02-30T00:00:00Z", "finished_at_lte"),
    ("stats.read_gte=1.5", "stats.read_gte"),
    ("stats.read_lte=many", "stats.read_lte"),
    ("page_size=0", "page_size"),
    ("page_size=1001", "page_size"),
    ("page_size=ten", "page_size"),
    ("page_token=garbage", "page_token"),
    ("statuss=queued", "statuss"),
    ("foo=bar", "foo"),
    ("stats.read=1", "stats.read"),
    ("kind=a&kind=b", "kind"),
    ("kind=a&kind_in=b", "kind_in"),
    ("status=queued&status_in=running", "status_in"),
    ("parent_id=123", "parent_id"),
    ("kind=%00", "kind"),
    ("created_at_gte=0001-01-01T00:00:00%2B01:00", "created_at_gte"),
])
def test_bad_list_parameters_are_400_naming_the_parameter(client: TestClient, h: Headers,
                                                          query: str, parameter: str) -> None:
    body = problem_of(client.get(f"/v1/jobs?{query}", headers=h), 400, parameter)
    assert body["code"] == "invalid_parameter"
    assert parameter in body["detail"]


def test_a_typo_in_a_filter_name_gets_a_suggestion(client: TestClient, h: Headers) -> None:
    body = problem_of(client.get("/v1/jobs?statuss=queued", headers=h), 400, "statuss")
    assert "did you mean 'status'" in body["detail"]


def test_keyset_pages_stay_stable_while_jobs_are_added(client: TestClient,
                                                       h: Headers) -> None:
    first_seven = [submit(client, h)["id"] for _ in range(7)]
    seen: list[str] = []
    r = client.get("/v1/jobs", params={"page_size": 3}, headers=h)
    pages = 0
    while True:
        seen += ids(r)
        pages += 1
        submit(client, h)  # a new job between pages: newer than every page's cursor
        token = r.json()["next_page_token"]
        if token is None:
            break
        r = client.get("/v1/jobs", params={"page_size": 3, "page_token": token}, headers=h)
    assert seen == first_seven[::-1]
    assert pages == 3


def test_the_last_page_has_no_token_and_a_full_last_page_needs_no_extra_request(
        client: TestClient, h: Headers) -> None:
    for _ in range(4):
        submit(client, h)
    first = client.get("/v1/jobs?page_size=2", headers=h).json()
    second = client.get(f"/v1/jobs?page_size=2&page_token={first['next_page_token']}",
                        headers=h).json()
    assert len(second["items"]) == 2 and second["next_page_token"] is None


def test_a_page_token_of_another_query_tenant_or_a_forged_one_is_400(
        client: TestClient, h: Headers, make_key: MakeKey) -> None:
    for _ in range(3):
        submit(client, h)
    token = client.get("/v1/jobs?page_size=1&kind=sleep", headers=h).json()["next_page_token"]
    assert token
    assert client.get(f"/v1/jobs?page_size=1&kind=sleep&page_token={token}",
                      headers=h).status_code == 200
    problem_of(client.get(f"/v1/jobs?page_size=1&kind=rows&page_token={token}", headers=h),
               400, "page_token")
    problem_of(client.get(f"/v1/jobs?page_size=1&page_token={token}", headers=h),
               400, "page_token")
    other = bearer(make_key("globex"))
    problem_of(client.get(f"/v1/jobs?page_size=1&kind=sleep&page_token={token}",
                          headers=other), 400, "page_token")
    inner, _, mac = token.rpartition(".")
    forged = [inner[:-1] + ("A" if inner[-1] != "A" else "B") + "." + mac,
              inner + "." + mac[::-1], inner, "x." + mac, token + "x"]
    for bad in forged:
        problem_of(client.get("/v1/jobs", params={"page_size": 1, "kind": "sleep",
                                                  "page_token": bad}, headers=h),
                   400, "page_token")


def test_an_app_key_lists_its_apps_jobs_and_a_tenant_key_all(
        client: TestClient, jd: App, h: Headers, make_key: MakeKey) -> None:
    app_a, key_a = app_key(jd, make_key, "a")
    app_b, key_b = app_key(jd, make_key, "b")
    mine = submit(client, bearer(key_a))
    theirs = submit(client, bearer(key_b))
    tenant_wide = submit(client, h)
    assert ids(client.get("/v1/jobs", headers=bearer(key_a))) == [mine["id"]]
    assert ids(client.get(f"/v1/jobs?app_id={app_a}", headers=bearer(key_a))) == [mine["id"]]
    assert ids(client.get(f"/v1/jobs?app_id={app_b}", headers=bearer(key_a))) == []
    assert ids(client.get("/v1/jobs", headers=h)) == [tenant_wide["id"], theirs["id"],
                                                      mine["id"]]
    assert ids(client.get(f"/v1/jobs?app_id={app_b}", headers=h)) == [theirs["id"]]
    assert ids(client.get("/v1/jobs", headers=bearer(make_key("globex")))) == []


# -- events ------------------------------------------------------------------------
def events_of(client: TestClient, h: Headers, job_id: str) -> list[tuple[str, Any]]:
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=h) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line.startswith(":"))
        if fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_events_stream_the_job_until_it_is_terminal(
        client: TestClient, h: Headers, start_worker: Callable[[], Worker]) -> None:
    job = submit(client, h, input={"seconds": 0.6})
    start_worker()
    events = events_of(client, h, job["id"])
    assert {name for name, _ in events} == {"job"}
    statuses = [data["status"] for _, data in events]
    assert statuses[-1] == "succeeded"
    assert statuses[0] in ("queued", "running")
    assert all(data["id"] == job["id"] for _, data in events)
    assert events[-1][1]["progress"]["message"] == "done"
    watched = ("status", "attempt", "progress", "stats", "error")
    for (_, before), (_, after) in itertools.pairwise(events):
        assert [before[f] for f in watched] != [after[f] for f in watched]


def test_events_of_a_finished_job_are_one_event(client: TestClient, h: Headers) -> None:
    job = submit(client, h)
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    events = events_of(client, h, job["id"])
    assert [(name, data["status"]) for name, data in events] == [("job", "canceled")]


# -- cancel, retry, delete, children ---------------------------------------------------
def test_cancel_and_retry(client: TestClient, h: Headers) -> None:
    job = submit(client, h)
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert r.json()["finished_at"] is not None
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    r = client.post(f"/v1/jobs/{job['id']}/retry", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert r.json()["finished_at"] is None
    body = problem_of(client.post(f"/v1/jobs/{job['id']}/retry", headers=h), 409)
    assert body["code"] == "illegal_transition" and "queued" in body["detail"]
    problem_of(client.post(f"/v1/jobs/{job['id']}/cancel?hard=maybe", headers=h), 400, "hard")


def test_cancel_of_a_finished_job_is_409(client: TestClient, h: Headers,
                                         start_worker: Callable[[], Worker]) -> None:
    job = submit(client, h)
    start_worker()
    assert finished(client, h, job["id"])["status"] == "succeeded"
    problem_of(client.post(f"/v1/jobs/{job['id']}/cancel", headers=h), 409)
    problem_of(client.post(f"/v1/jobs/{job['id']}/retry", headers=h), 409)


def test_hard_cancel_of_a_running_job(client: TestClient, h: Headers,
                                      start_worker: Callable[[], Worker]) -> None:
    job = submit(client, h, input={"seconds": 30})
    start_worker()
    with client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=h) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["status"] == "running":
                break
    r = client.post(f"/v1/jobs/{job['id']}/cancel", params={"hard": "true"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "canceled"


def test_delete_removes_the_job_its_children_errors_and_files(
        client: TestClient, jd: App, h: Headers, tmp_path: Path,
        start_worker: Callable[[], Worker]) -> None:
    parent = submit(client, h, "rows", {"n": 3, "bad": [1]})
    child = submit(client, h, "rows", {"n": 1}, parent_id=parent["id"])
    grandchild = submit(client, h, "rows", {"n": 1}, parent_id=child["id"])
    bystander = submit(client, h)
    start_worker()
    for job in (parent, child, grandchild):
        finished(client, h, job["id"])
    assert len(client.get(f"/v1/jobs/{parent['id']}/errors", headers=h).json()["items"]) == 1
    folders = [tmp_path / "blobs" / "default" / j["id"] for j in (parent, child, grandchild)]
    assert all(f.exists() for f in folders)
    problem_of(client.delete(f"/v1/jobs/{parent['id']}",
                             headers=bearer(jd_key(jd, ("jobs:read", "jobs:write")))), 403)
    r = client.delete(f"/v1/jobs/{parent['id']}", headers=h)
    assert r.status_code == 200
    assert sorted(r.json()["deleted"]) == sorted([parent["id"], child["id"], grandchild["id"]])
    for job in (parent, child, grandchild):
        problem_of(client.get(f"/v1/jobs/{job['id']}", headers=h), 404)
    problem_of(client.get(f"/v1/jobs/{parent['id']}/errors", headers=h), 404)
    assert not any(f.exists() for f in folders)
    assert ids(client.get("/v1/jobs", headers=h)) == [bystander["id"]]
    problem_of(client.delete(f"/v1/jobs/{parent['id']}", headers=h), 404)


def jd_key(jd: App, scopes: tuple[str, ...]) -> str:
    presented, _ = Access(jd.engine.store).create_key("default", scopes=scopes)
    return presented


def test_children_are_paged_and_scoped_to_the_app(client: TestClient, jd: App, h: Headers,
                                                  make_key: MakeKey) -> None:
    _, key_a = app_key(jd, make_key, "a")
    parent = submit(client, h)
    kids = [submit(client, h, parent_id=parent["id"])["id"] for _ in range(3)]
    submit(client, h)  # not a child
    first = client.get(f"/v1/jobs/{parent['id']}/children?page_size=2", headers=h)
    token = first.json()["next_page_token"]
    rest = client.get(f"/v1/jobs/{parent['id']}/children",
                      params={"page_size": 2, "page_token": token}, headers=h)
    assert ids(first) + ids(rest) == kids[::-1]
    assert rest.json()["next_page_token"] is None
    problem_of(client.get(f"/v1/jobs/{parent['id']}/children?page_size=0", headers=h),
               400, "page_size")
    problem_of(client.get(f"/v1/jobs/{parent['id']}/children?page_token=x", headers=h),
               400, "page_token")
    app_parent = submit(client, bearer(key_a))
    problem_of(client.post("/v1/jobs", json={"kind": "sleep", "parent_id": parent["id"]},
                           headers=bearer(key_a)), 422, "parent_id")
    app_child = submit(client, bearer(key_a), parent_id=app_parent["id"])
    assert ids(client.get(f"/v1/jobs/{app_parent['id']}/children",
                          headers=bearer(key_a))) == [app_child["id"]]


# -- per-record errors -------------------------------------------------------------
def test_errors_are_paged_resolved_and_retried_as_a_new_job(
        client: TestClient, jd: App, h: Headers, make_key: MakeKey,
        start_worker: Callable[[], Worker]) -> None:
    job = submit(client, h, "rows", {"n": 6, "bad": [1, 3, 4]}, labels={"flow": "f"},
                 name="import")
    start_worker()
    assert finished(client, h, job["id"])["stats"]["errors"] == 3
    url = f"/v1/jobs/{job['id']}/errors"
    first = client.get(url, params={"page_size": 2}, headers=h)
    assert first.status_code == 200
    second = client.get(url, params={"page_size": 2,
                                     "page_token": first.json()["next_page_token"]}, headers=h)
    errors = first.json()["items"] + second.json()["items"]
    assert second.json()["next_page_token"] is None
    assert [e["record"] for e in errors] == [{"i": 1}, {"i": 3}, {"i": 4}]
    assert errors[0]["message"] == "bad row" and errors[0]["code"] == "422"
    assert not any(e["resolved"] or e["retried"] for e in errors)
    assert errors[0]["created_at"].endswith("Z")
    problem_of(client.get(url, params={"page_size": 1001}, headers=h), 400, "page_size")
    problem_of(client.get(url, params={"page_token": "abc"}, headers=h), 400, "page_token")

    r = client.patch(f"{url}/{errors[1]['id']}", json={"resolved": True}, headers=h)
    assert r.status_code == 200 and r.json()["resolved"] is True
    assert r.json()["id"] == errors[1]["id"]
    problem_of(client.patch(f"{url}/{'0' * 24}", json={"resolved": True}, headers=h), 404)
    problem_of(client.patch(f"{url}/%00", json={"resolved": True}, headers=h), 404)
    problem_of(client.patch(f"{url}/{errors[1]['id']}", json={"resolved": "yes"}, headers=h),
               422, "resolved")
    problem_of(client.patch(f"{url}/{errors[1]['id']}", json={"solved": True}, headers=h),
               422, "solved")

    r = client.post(f"{url}/retry", headers=h)
    assert r.status_code == 201, r.text
    retry = r.json()
    assert r.headers["location"] == f"/v1/jobs/{retry['id']}"
    assert retry["kind"] == "rows" and retry["name"] == "import"
    assert retry["labels"] == {"flow": "f", "retry_of": job["id"]}
    assert retry["input"]["retry_of"] == job["id"]
    assert retry["input"]["records"] == [{"i": 1}, {"i": 4}]  # the resolved one is left out
    assert ids(client.get(f"/v1/jobs?label.retry_of={job['id']}", headers=h)) == [retry["id"]]
    flags = [(e["resolved"], e["retried"]) for e in client.get(url, headers=h).json()["items"]]
    assert flags == [(False, True), (True, False), (False, True)]
    assert finished(client, h, retry["id"])["stats"] == {"read": 2, "success": 2}
    body = problem_of(client.post(f"{url}/retry", headers=h), 409)
    assert "no unresolved errors" in body["detail"]

    r = client.patch(f"{url}/{errors[1]['id']}", json={"resolved": False}, headers=h)
    assert r.json()["resolved"] is False
    assert client.post(f"{url}/retry", headers=h).json()["input"]["records"] == [{"i": 3}]
    reader = bearer(make_key(scopes=("jobs:read",)))
    problem_of(client.post(f"{url}/retry", headers=reader), 403)
    problem_of(client.patch(f"{url}/{errors[0]['id']}", json={}, headers=reader), 403)


def test_errors_of_a_kind_without_records_cannot_be_retried(
        client: TestClient, h: Headers, start_worker: Callable[[], Worker]) -> None:
    job = submit(client, h, "plain")
    nothing = submit(client, h)
    start_worker()
    finished(client, h, job["id"])
    finished(client, h, nothing["id"])
    problem_of(client.post(f"/v1/jobs/{job['id']}/errors/retry", headers=h), 422, "kind")
    problem_of(client.post(f"/v1/jobs/{nothing['id']}/errors/retry", headers=h), 409)


# -- kinds -------------------------------------------------------------------------
def test_kinds_list_every_registered_kind_with_its_input_schema(client: TestClient,
                                                                h: Headers) -> None:
    r = client.get("/v1/kinds", headers=h)
    assert r.status_code == 200
    kinds = {k["name"]: k for k in r.json()["items"]}
    assert {"sleep", "rows", "plain"} <= set(kinds)
    assert list(kinds) == sorted(kinds)
    sleep = kinds["sleep"]
    assert sleep["input_schema"]["properties"]["seconds"]["type"] == "number"
    assert sleep["max_attempts"] == 1 and sleep["description"]
    assert kinds["rows"]["description"].startswith("Counts rows")
    problem_of(client.get("/v1/kinds"), 401)
