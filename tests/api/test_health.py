"""Probes, metrics and the OpenAPI document, on both stores."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from jobdock import App
from jobdock.store.sqlite import SQLiteStore
from tests.api.conftest import MakeKey, bearer

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

# Every route of the native job API, with the schema of its success answer.
NATIVE = {
    ("post", "/v1/jobs"): ("201", "JobOut"),
    ("get", "/v1/jobs"): ("200", "JobPage"),
    ("get", "/v1/jobs/{job_id}"): ("200", "JobOut"),
    ("get", "/v1/jobs/{job_id}/events"): ("200", None),
    ("post", "/v1/jobs/{job_id}/cancel"): ("200", "JobOut"),
    ("post", "/v1/jobs/{job_id}/retry"): ("200", "JobOut"),
    ("delete", "/v1/jobs/{job_id}"): ("200", "DeletedOut"),
    ("get", "/v1/jobs/{job_id}/children"): ("200", "JobPage"),
    ("get", "/v1/jobs/{job_id}/errors"): ("200", "ErrorPageOut"),
    ("patch", "/v1/jobs/{job_id}/errors/{error_id}"): ("200", "ErrorOut"),
    ("post", "/v1/jobs/{job_id}/errors/retry"): ("201", "JobOut"),
    ("get", "/v1/kinds"): ("200", "KindList"),
    ("get", "/healthz"): ("200", "Status"),
    ("get", "/readyz"): ("200", "Status"),
}


def test_healthz_and_readyz_answer_without_a_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


def test_readyz_is_503_when_the_database_does_not_answer(client: TestClient, jd: App) -> None:
    store = jd.engine.store
    store.close()
    if isinstance(store, SQLiteStore):
        # SQLite opens its file again on the next use: leave it nothing to open.
        db = Path(store.path)
        for leftover in db.parent.glob(db.name + "*"):
            leftover.unlink()
        db.mkdir()
    r = client.get("/readyz")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"]
    assert r.json()["code"] == "not_ready" and "database" in r.json()["detail"]
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert sample(metrics.text, "jobdock_store_up") == 0


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text, or fail."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
    match = re.search(r"^" + pattern + r" (\S+)$", text, re.MULTILINE)
    assert match, f"no {name}{{{wanted}}} in metrics"
    return float(match.group(1))


def test_metrics_count_jobs_by_kind_and_status_and_time_requests(
        client: TestClient, jd: App, make_key: MakeKey) -> None:
    h = bearer(make_key())
    for _ in range(2):
        assert client.post("/v1/jobs", json={"kind": "sleep"}, headers=h).status_code == 201
    job = client.post("/v1/jobs", json={"kind": "sleep"}, headers=h).json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    client.get("/v1/jobs/not-a-job", headers=h)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert sample(text, "jobdock_jobs", kind="sleep", status="queued") == 2
    assert sample(text, "jobdock_jobs", kind="sleep", status="canceled") == 1
    assert sample(text, "jobdock_jobs", kind="sleep", status="running") == 0
    assert sample(text, "jobdock_queue_depth", kind="sleep") == 2
    assert sample(text, "jobdock_store_up") == 1
    assert sample(text, "jobdock_http_request_duration_seconds_count", method="POST",
                  route="/v1/jobs", status="201") >= 3
    assert sample(text, "jobdock_http_request_duration_seconds_count", method="GET",
                  route="/v1/jobs/{job_id}", status="404") >= 1
    assert "# TYPE jobdock_claim_duration_seconds histogram" in text


def test_claims_of_a_worker_are_timed(client: TestClient, jd: App, make_key: MakeKey) -> None:
    before = sample(client.get("/metrics").text, "jobdock_claim_duration_seconds_count")
    h = bearer(make_key())
    job = client.post("/v1/jobs", json={"kind": "sleep"}, headers=h).json()
    worker = jd.worker(concurrency=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 60}, headers=h).json()
    finally:
        worker.stop()
        thread.join(30)
    assert done["status"] == "succeeded"
    after = sample(client.get("/metrics").text, "jobdock_claim_duration_seconds_count")
    assert after > before


def test_openapi_lists_every_route_with_its_answers(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths: dict[str, dict[str, Any]] = doc["paths"]
    schemas = doc["components"]["schemas"]
    for (method, path), (status, schema) in NATIVE.items():
        operation = paths[path][method]
        success = operation["responses"][status]
        content = success["content"]
        if schema is None:
            assert "text/event-stream" in content
        else:
            assert content["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{schema}"}
            assert schema in schemas
        for code, answer in operation["responses"].items():
            if code[0] in "45":
                assert answer["content"] == {
                    "application/problem+json": {"schema": PROBLEM_REF}}, (path, code)
        if path.startswith("/v1/"):
            assert operation["security"] == [{"apiKey": []}]
            assert {"401", "403"} <= set(operation["responses"])
        else:
            assert operation["security"] == []
    submit = paths["/v1/jobs"]["post"]["responses"]
    assert "Location" in submit["201"]["headers"]
    assert {"Location", "Idempotent-Replayed"} <= set(submit["200"]["headers"])
    assert "422" in submit
    assert "400" in paths["/v1/jobs"]["get"]["responses"]
    assert "422" not in paths["/v1/jobs"]["get"]["responses"]  # parameters are 400s
    listed = {p["name"] for p in paths["/v1/jobs"]["get"]["parameters"]}
    assert {"kind", "kind_in", "status", "status_in", "parent_id", "app_id", "created_at_gte",
            "created_at_lte", "finished_at_gte", "finished_at_lte", "page_size",
            "page_token"} <= listed
    assert {p["name"] for p in paths["/v1/jobs/{job_id}"]["get"]["parameters"]} == {
        "job_id", "wait"}
    assert "HTTPValidationError" not in schemas
    job = schemas["JobOut"]["properties"]
    assert job["created_at"]["anyOf"][0] == {
        "type": "string", "format": "date-time", "examples": ["2026-01-02T03:04:05.000000Z"]}
    assert set(schemas["Problem"]["required"]) >= {"type", "title", "status", "detail", "code"}
    assert "/metrics" in paths


def test_docs_page_is_served(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "openapi.json" in r.text
