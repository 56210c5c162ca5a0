"""The Amperity dialect: GET /compat/amperity/api/ingest/jobs/{id}, on each store."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from jobdock import App
from tests.dialects.conftest import MakeKey
from tests.kinds.ingesting import csv_bytes, running, table, upload, wait_ingest

PREFIX = "/compat/amperity"
# The 200 example of the seed document, as printed there.
SEED_SAMPLE: dict[str, Any] = {
    "id": "isj-1f73r9u2",
    "tables": [{
        "errors": 200, "feed_id": "df-5L6d1veh", "read": 1000, "rejected": 200, "updated": 200,
        "started_at": "2024-06-01T04:02:54.433Z", "state": "succeeded",
        "ended_at": "2024-06-01T04:02:57.433Z",
        "files": [{"file_id": "cb-20240618-71992-SF3Uz/part0.avro", "name": "part0.avro",
                   "read": 1000, "errors": 200}],
        "inserted": 400, "table_name": "My table", "job_id": "isj-1f73r9u2"}],
    "workflow_id": "wf-20240618-3423-b45",
}
STATES = {"scheduled", "started", "in progress", "running", "finalizing", "succeeded",
          "stopping", "stopped", "failed", "skipped", "canceled"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ROWS = [{"id": 1, "email": "a", "score": 1, "joined": "2024-01-01"},
        {"id": 1, "email": "dup", "score": 1, "joined": "2024-01-01"},
        {"id": 2, "email": "b", "score": "x", "joined": "2024-01-01"},
        {"id": 3, "email": "c", "score": 2, "joined": "2024-01-01"}]


def shape(value: Any) -> Any:
    """Keys and JSON types, values left out."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def seed_headers(key: str, tenant: str = "default") -> dict[str, str]:
    # The request example of the seed: amperity-tenant, api-version, Authorization.
    return {"amperity-tenant": tenant, "api-version": "2024-04-01",
            "Authorization": f"Bearer {key}"}


def _ingest(jd: App, workflow_id: str | None = "wf-20240618-3423-b45") -> str:
    file_id = upload(jd, "part0.csv", csv_bytes(ROWS))
    body: dict[str, Any] = {"tables": [table("customers", [file_id], feed_id="df-customers")]}
    if workflow_id:
        body["workflow_id"] = workflow_id
    return jd.submit("ingest", body).id


def test_seed_request_gets_the_documented_shape(jd: App, client: TestClient,
                                               make_key: MakeKey) -> None:
    key = make_key()
    job_id = _ingest(jd)
    with running(jd):
        wait_ingest(jd, job_id)
    response = client.get(f"{PREFIX}/api/ingest/jobs/isj-{job_id}", headers=seed_headers(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert shape(body) == shape(SEED_SAMPLE)
    assert body["id"] == f"isj-{job_id}"
    assert body["workflow_id"] == "wf-20240618-3423-b45"
    [t] = body["tables"]
    assert {k: t[k] for k in ("read", "inserted", "updated", "rejected", "errors", "state",
                              "table_name", "feed_id", "job_id")} == {
        "read": 4, "inserted": 2, "updated": 0, "rejected": 1, "errors": 1,
        "state": "succeeded", "table_name": "customers", "feed_id": "df-customers",
        "job_id": f"isj-{job_id}"}
    assert t["read"] == t["inserted"] + t["updated"] + t["rejected"] + t["errors"]
    assert t["files"] == [{"file_id": t["files"][0]["file_id"], "name": "part0.csv",
                           "read": 4, "errors": 1}]
    assert TIME.match(t["started_at"]) and TIME.match(t["ended_at"])
    assert t["started_at"] <= t["ended_at"]


def test_before_the_worker_runs_and_default_workflow_id(jd: App, client: TestClient,
                                                        make_key: MakeKey) -> None:
    key = make_key()
    job_id = _ingest(jd, workflow_id=None)
    response = client.get(f"{PREFIX}/api/ingest/jobs/isj-{job_id}",
                          params={"api_version": "2024-04-01"},
                          headers={"amperity-tenant": "default",
                                   "Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["workflow_id"] == f"wf-{job_id}"
    [t] = body["tables"]
    assert t["state"] == "scheduled" and t["state"] in STATES
    assert t["started_at"] is None and t["ended_at"] is None
    assert t["read"] == 0 and t["files"][0]["name"] == "part0.csv"


def test_version_is_required_and_checked(jd: App, client: TestClient,
                                         make_key: MakeKey) -> None:
    key = make_key()
    job_id = _ingest(jd)
    url = f"{PREFIX}/api/ingest/jobs/isj-{job_id}"
    auth = {"amperity-tenant": "default", "Authorization": f"Bearer {key}"}
    for headers, params in [(auth, {}), ({**auth, "api-version": "2023-01-01"}, {}),
                            (auth, {"api_version": "v2"})]:
        response = client.get(url, headers=headers, params=params)
        assert response.status_code == 400
        assert "2024-04-01" in response.json()["message"]


def test_auth_and_tenant(jd: App, client: TestClient, make_key: MakeKey) -> None:
    key = make_key()
    job_id = _ingest(jd)
    url = f"{PREFIX}/api/ingest/jobs/isj-{job_id}"
    headers = seed_headers(key)
    no_key = {k: v for k, v in headers.items() if k != "Authorization"}
    no_tenant = {k: v for k, v in headers.items() if k != "amperity-tenant"}
    cases = [
        (no_key, 401), ({**headers, "Authorization": "Bearer jdk_nope"}, 401),
        (no_tenant, 401), ({**headers, "amperity-tenant": "acme"}, 403),
        (seed_headers(make_key(scopes=("jobs:write",))), 403),
    ]
    for sent, status in cases:
        response = client.get(url, headers=sent)
        assert response.status_code == status, sent
        assert set(response.json()) == {"message"} and response.json()["message"]


def test_unknown_foreign_and_other_jobs_are_404(jd: App, client: TestClient,
                                                make_key: MakeKey) -> None:
    key = make_key()
    other_key = make_key("acme")
    job_id = _ingest(jd)
    sleeper = jd.submit("sleep", {"seconds": 0}).id
    with running(jd):
        _, [child] = wait_ingest(jd, job_id)
    for wanted in ["isj-0123456789abcdef01234567", job_id, f"isj-{sleeper}", f"isj-{child.id}",
                   "isj-../../x", "isj-20240701-48815-6dcXdk"]:
        response = client.get(f"{PREFIX}/api/ingest/jobs/{wanted}", headers=seed_headers(key))
        assert response.status_code == 404, wanted
        assert "message" in response.json()
    response = client.get(f"{PREFIX}/api/ingest/jobs/isj-{job_id}",
                          headers=seed_headers(other_key, "acme"))
    assert response.status_code == 404


def test_failed_table_and_its_sibling(jd: App, client: TestClient, make_key: MakeKey) -> None:
    key = make_key()
    good = upload(jd, "orders.csv", b"order_id\n1\n2\n")
    broken = upload(jd, "broken.avro", b"Obj\x01 not avro")
    job_id = jd.submit("ingest", {"tables": [
        table("customers", [broken]),
        table("orders", [good], columns={"order_id": "int"}, key=["order_id"])]}).id
    with running(jd):
        wait_ingest(jd, job_id)
    body = client.get(f"{PREFIX}/api/ingest/jobs/isj-{job_id}", headers=seed_headers(key)).json()
    states = {t["table_name"]: t["state"] for t in body["tables"]}
    assert states == {"customers": "failed", "orders": "succeeded"}
    assert [t["table_name"] for t in body["tables"]] == ["customers", "orders"]
