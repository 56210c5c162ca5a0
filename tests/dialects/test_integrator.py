"""The integrator dialect: /compat/integrator/v1/jobs..., on each store, over real flows."""

from __future__ import annotations

import csv
import io
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobdock import App, Worker
from tests.dialects.conftest import MakeKey
from tests.helpers import wait_for
from tests.kinds.flowing import BAD_TOTAL, GOOD, IGNORED, NO_EMAIL, flow_input, wait_flow, wait_job
from tests.kinds.ingesting import csv_bytes, jsonl_bytes, running, upload

PREFIX = "/compat/integrator"
# The sample answers of the seed document, as printed there.
SEED_JOB: dict[str, Any] = {
    "_id": "123ab456c789de1011fg12h13i", "type": "import",
    "_importId": "55ea78c546cf5825294aca0b", "_flowJobId": "59ee8f82c41g45g165ef1b9a9",
    "startedAt": "2017-10-24T00:55:49.128Z", "status": "running", "numError": 0,
    "numSuccess": 1, "numIgnore": 0, "numPagesProcessed": 1, "oIndex": 1, "retriable": False,
    "createdAt": "2017-10-24T00:55:49.128Z", "lastModified": "2017-10-24T00:55:49.642Z",
}
SEED_ERROR: dict[str, Any] = {
    "resolve": False, "retry": False, "createdAt": "2017-10-24T00:43:30.434Z", "code": "422",
    "extract": "", "generate": "", "extracted": "", "generated": "",
    "message": "'{\"errors\":[{\"field\":\"expires\",\"code\":\"missing_required_field\"}]}'",
    "source": "integrator.io", "exportDataURI": "", "importDataURI": "",
    "_retryId": "59ee8cb20df374sf469sd919", "_jobId": "59ee8cad03784g7hd8469918",
}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STATUSES = {"queued", "running", "completed", "failed", "canceled"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def types(value: dict[str, Any]) -> dict[str, str]:
    return {k: type(v).__name__ for k, v in value.items()}


def assert_job_shape(job: dict[str, Any], sample: dict[str, Any] = SEED_JOB) -> None:
    """Every key of the seed's sample, with its JSON type; times as the seed writes them."""
    shown = types(job)
    for key, kind in types(sample).items():
        if key in ("_importId", "_flowJobId", "oIndex") and job["type"] != "import":
            continue
        assert shown.get(key) == kind, (key, job)
    assert job["status"] in STATUSES
    assert re.fullmatch(r"[0-9a-f]{24}", job["_id"])
    for key in ("startedAt", "endedAt", "createdAt", "lastModified"):
        if key in job:
            assert TIME.match(job[key]), (key, job[key])
    assert ("endedAt" in job) == (job["status"] in {"completed", "failed", "canceled"})


def ids(answer: Any) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {j["_id"] for j in answer.json()}


# -- the seed's examples -------------------------------------------------------------
def test_seed_example_1_lists_running_imports(jd: App, client: TestClient,
                                              make_key: MakeKey) -> None:
    key = make_key()
    # A real flow whose import step is held running: a worker that runs only the flow and
    # its export, then a claim of the import that nobody ends.
    flow = jd.submit("flow", flow_input({"upload": upload(jd, "o.csv", csv_bytes([GOOD]))}))
    functions = {k: f for k, f in jd.functions.items() if k in ("flow", "flow_export")}
    worker = Worker(jd.engine, functions, concurrency=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: "flow_import" in {c.kind for c in jd.children(flow.id)},
                 what="the import step")
    finally:
        worker.stop()
        thread.join(10)
    [job] = [c for c in jd.children(flow.id) if c.kind == "flow_import"]
    [claimed] = jd.engine.claim("test-worker", ["flow_import"], 1)
    assert claimed.id == job.id
    answer = client.get(PREFIX + "/v1/jobs?type=import&status=running",
                        headers={"Host": "api.integrator.io",
                                 "Authorization": "Bearer " + key})
    assert answer.status_code == 200
    [shown] = answer.json()
    assert shown["_id"] == job.id and shown["status"] == "running"
    assert shown["_flowJobId"] == flow.id and shown["_importId"] == "imp-flow-1"
    assert set(shown) >= set(SEED_JOB)
    assert_job_shape(shown)
    assert "endedAt" not in shown
    assert client.get(PREFIX + "/v1/jobs?type=import&status=completed",
                      headers=bearer(key)).json() == []


def test_seed_example_2_lists_job_errors(jd: App, client: TestClient, make_key: MakeKey) -> None:
    key = make_key()
    flow = jd.submit("flow", flow_input({"upload": upload(jd, "o.csv", csv_bytes(
        [GOOD, IGNORED, NO_EMAIL, BAD_TOTAL]))}))
    with running(jd):
        _, export, imported = wait_flow(jd, flow.id)
    assert imported is not None
    for path in ("jobErrors", "joberrors"):
        answer = client.get(f"{PREFIX}/v1/jobs/{imported.id}/{path}",
                            headers={"Host": "api.integrator.io",
                                     "Authorization": "Bearer " + key})
        assert answer.status_code == 200
        found = answer.json()
        assert [types(e) for e in found] == [types(SEED_ERROR)] * 2
    first, second = found
    assert first["generate"] == "email" and first["extract"] == "customer_email"
    assert first["code"] == "missing_required_field" and first["_jobId"] == imported.id
    assert second["generate"] == "total" and '"total":"lots"' in second["extracted"]
    assert TIME.match(first["createdAt"]) and first["_retryId"]
    # The export and the flow have no errors; another tenant's job is a 404.
    assert client.get(f"{PREFIX}/v1/jobs/{export.id}/joberrors", headers=bearer(key)).json() == []
    other = make_key("other")
    assert client.get(f"{PREFIX}/v1/jobs/{imported.id}/joberrors",
                      headers=bearer(other)).status_code == 404


# -- jobs of real flows ----------------------------------------------------------------
@pytest.fixture
def flows(jd: App) -> dict[str, Any]:
    """Two flows of two integrations: one with errors, one clean; and a retry."""
    a = jd.submit("flow", flow_input({"upload": upload(jd, "a.csv", csv_bytes(
        [GOOD, IGNORED, NO_EMAIL, BAD_TOTAL]))}, page_size=2, flow_id="fa",
        integration_id="int-a", table="orders_a"))
    b = jd.submit("flow", flow_input({"upload": upload(jd, "b.jsonl", jsonl_bytes(
        [{**GOOD, "id": i} for i in range(1, 6)]))}, flow_id="fb", integration_id="int-b",
        table="orders_b"))
    with running(jd):
        _fa, ea, ia = wait_flow(jd, a.id)
        _fb, eb, ib = wait_flow(jd, b.id)
    assert ia is not None and ib is not None
    return {"fa": a.id, "ea": ea.id, "ia": ia.id, "fb": b.id, "eb": eb.id, "ib": ib.id}


def test_jobs_render_flows_and_their_steps(client: TestClient, make_key: MakeKey,
                                           flows: dict[str, Any]) -> None:
    h = bearer(make_key())
    shown = {j["_id"]: j for j in client.get(PREFIX + "/v1/jobs", headers=h).json()}
    assert set(shown) == set(flows.values())
    for job in shown.values():
        assert_job_shape(job)
    flow, export, imported = shown[flows["fa"]], shown[flows["ea"]], shown[flows["ia"]]
    assert (flow["type"], export["type"], imported["type"]) == ("flow", "export", "import")
    assert export["_flowJobId"] == imported["_flowJobId"] == flows["fa"]
    assert (export["oIndex"], imported["oIndex"]) == (0, 1) and "oIndex" not in flow
    assert export["_exportId"] == "exp-fa" and imported["_importId"] == "imp-fa"
    assert (export["numExport"], export["numPagesProcessed"]) == (4, 2)
    assert (imported["numSuccess"], imported["numError"], imported["numIgnore"],
            imported["numPagesProcessed"]) == (1, 2, 1, 2)
    assert {k: flow[k] for k in ("numExport", "numSuccess", "numError", "numIgnore",
                                 "numPagesProcessed", "status", "retriable")} == {
        "numExport": 4, "numSuccess": 1, "numError": 2, "numIgnore": 1,
        "numPagesProcessed": 2, "status": "completed", "retriable": True}
    assert imported["retriable"] is True and export["retriable"] is False
    assert shown[flows["ib"]]["retriable"] is False
    assert client.get(f"{PREFIX}/v1/jobs/{flows['ia']}", headers=h).json() == imported
    # Newest first.
    assert list(shown) == sorted(shown, reverse=True)


def test_every_filter_alone_and_combined(jd: App, client: TestClient, make_key: MakeKey,
                                         flows: dict[str, Any]) -> None:
    h = bearer(make_key())
    f = flows
    a_all, b_all = {f["fa"], f["ea"], f["ia"]}, {f["fb"], f["eb"], f["ib"]}

    def listed(query: str) -> set[str]:
        return ids(client.get(f"{PREFIX}/v1/jobs?{query}", headers=h))

    now = datetime.now(UTC)
    later = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    earlier = (now - timedelta(hours=1)).isoformat()
    expected = {
        "_integrationId=int-a": a_all,
        "_flowId=fb": b_all,
        "_exportId=exp-fa": {f["ea"], f["ia"], f["fa"]},
        "_importId=imp-fb": b_all,
        "_flowJobId=" + f["fa"]: {f["ea"], f["ia"]},
        "_bulkJobId=nothing": set(),
        "_flowId_in=fa,fb": a_all | b_all,
        "_flowId_in=fa&_flowId_in=nope": a_all,
        "createdAt_lte=" + later: a_all | b_all,
        "createdAt_gte=" + later: set(),
        "createdAt_gte=" + earlier.replace("+", "%2B"): a_all | b_all,
        "status=completed": a_all | b_all,
        "status=failed": set(),
        "numSuccess_gte=2": {f["fb"], f["ib"]},
        "numSuccess_lte=1": a_all | {f["eb"]},
        "numExport_gte=5": {f["fb"], f["eb"]},
        "numExport_lte=4": a_all | {f["ib"]},
        "numIgnore_gte=1": {f["fa"], f["ia"]},
        "numIgnore_lte=0": {f["ea"]} | b_all,
        "retriable=true": {f["fa"], f["ia"]},
        "retriable=false": {f["ea"]} | b_all,
        "type=flow": {f["fa"], f["fb"]},
        "type=export": {f["ea"], f["eb"]},
        "type_in=import,export": {f["ea"], f["eb"], f["ia"], f["ib"]},
        "type_in=import&type_in=flow": {f["fa"], f["fb"], f["ia"], f["ib"]},
        # Combined.
        "type=import&status=completed&numSuccess_gte=1&numSuccess_lte=1": {f["ia"]},
        "_integrationId=int-a&type=import&retriable=true": {f["ia"]},
        "_flowId_in=fa,fb&type=flow&numExport_gte=5": {f["fb"]},
        "_flowJobId=" + f["fb"] + "&type=export&numExport_gte=5&numExport_lte=5": {f["eb"]},
        "type=import&numIgnore_gte=1&createdAt_lte=" + later: {f["ia"]},
        "_flowId=fa&retriable=false": {f["ea"]},
    }
    for query, wanted in expected.items():
        assert listed(query) == wanted, query
    # Retrying the errors: the import is no longer retriable, the retry job is listed.
    retry = jd.engine.retry_errors("default", f["ia"])
    assert listed("retriable=true") == set()
    assert listed("_flowJobId=" + f["fa"] + "&type=import") == {f["ia"], retry.id}


def test_long_lists_page_with_a_link_header(client: TestClient, make_key: MakeKey,
                                            flows: dict[str, Any]) -> None:
    h = bearer(make_key())
    url: str | None = PREFIX + "/v1/jobs?pageSize=2&type_in=export,import"
    seen: list[str] = []
    while url:
        answer = client.get(url, headers=h)
        assert answer.status_code == 200, answer.text
        seen += [j["_id"] for j in answer.json()]
        link = answer.headers.get("link")
        match = re.fullmatch(r'<([^>]+)>; rel="next"', link) if link else None
        url = match.group(1) if match else None
    assert seen == sorted({flows[k] for k in ("ea", "ia", "eb", "ib")}, reverse=True)


def test_error_file_holds_every_error(client: TestClient, make_key: MakeKey,
                                      flows: dict[str, Any]) -> None:
    h = bearer(make_key())
    answer = client.get(f"{PREFIX}/v1/jobs/{flows['ia']}/errorFile/signedURL", headers=h)
    assert answer.status_code == 200 and list(answer.json()) == ["signedURL"]
    download = client.get(answer.json()["signedURL"])
    assert download.status_code == 200
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [r["code"] for r in rows] == ["missing_required_field", "type_error"]


def test_refusals(jd: App, client: TestClient, make_key: MakeKey,
                  flows: dict[str, Any]) -> None:
    key = make_key()
    for path in ("/v1/jobs", f"/v1/jobs/{flows['fa']}", f"/v1/jobs/{flows['ia']}/joberrors",
                 f"/v1/jobs/{flows['ia']}/errorFile/signedURL"):
        for headers in ({}, bearer("jd_nope"), {"Authorization": "Basic x"}):
            answer = client.get(PREFIX + path, headers=headers)
            assert answer.status_code == 401, path
            assert answer.json()["errors"][0]["code"] == "unauthorized"
    other = bearer(make_key("other"))
    for path in (f"/v1/jobs/{flows['fa']}", f"/v1/jobs/{flows['ia']}/jobErrors",
                 f"/v1/jobs/{flows['ia']}/errorFile/signedURL", "/v1/jobs/nonsense"):
        answer = client.get(PREFIX + path, headers=other)
        assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "not_found"
    assert client.get(PREFIX + "/v1/jobs", headers=other).json() == []
    sleeper = jd.submit("sleep", {"seconds": 0})
    assert client.get(f"{PREFIX}/v1/jobs/{sleeper.id}", headers=bearer(key)).status_code == 404
    for query, name in (("createdAt_gte=yesterday", "createdAt_gte"),
                        ("createdAt_lte=2017-13-01", "createdAt_lte"),
                        ("numSuccess_gte=many", "numSuccess_gte"),
                        ("numExport_lte=-1", "numExport_lte"), ("numIgnore_gte=1.5",
                                                                "numIgnore_gte"),
                        ("status=done", "status"), ("type=bulk", "type"),
                        ("type_in=import,nope", "type_in"), ("retriable=maybe", "retriable"),
                        ("pageSize=0", "pageSize"), ("pageToken=forged", None)):
        answer = client.get(f"{PREFIX}/v1/jobs?{query}", headers=bearer(key))
        assert answer.status_code == 400, query
        [error] = answer.json()["errors"]
        assert error["code"] == "invalid_parameter" and error["message"]
        if name:
            assert error["field"] == name and name in error["message"]
    reader = make_key("default", scopes=("jobs:write",))
    assert client.get(PREFIX + "/v1/jobs", headers=bearer(reader)).status_code == 403


def test_a_running_flow_and_a_failed_one(jd: App, client: TestClient,
                                         make_key: MakeKey) -> None:
    h = bearer(make_key())
    queued = jd.submit("flow", flow_input({"upload": "0" * 24}, flow_id="q"))
    shown = client.get(f"{PREFIX}/v1/jobs/{queued.id}", headers=h).json()
    assert shown["status"] == "queued" and "startedAt" not in shown and "endedAt" not in shown
    with running(jd):
        wait_flow(jd, queued.id)
    shown = client.get(f"{PREFIX}/v1/jobs/{queued.id}", headers=h).json()
    assert shown["status"] == "failed" and "endedAt" in shown  # the upload does not exist
    assert_job_shape(shown)


@pytest.mark.slow
def test_a_flow_of_100000_records_with_1_percent_bad(jd: App, client: TestClient,
                                                     make_key: MakeKey) -> None:
    records = [{"id": i, "customer_email": f"c{i}@example.com", "total": i / 4,
                "placed_at": "2024-05-01T12:00:00Z", "status": "paid"} for i in range(100_000)]
    for i in range(0, 100_000, 100):
        records[i]["total"] = "n/a"  # 1,000 bad ones
    flow = jd.submit("flow", flow_input({"upload": upload(jd, "big.jsonl", jsonl_bytes(records))},
                                        page_size=1000))
    with running(jd):
        _, _export, imported = wait_flow(jd, flow.id, timeout_s=120)
        assert imported is not None
        # The last error records are flushed with the completion.
        wait_job(jd, imported.id)
    h = bearer(make_key())
    shown = client.get(f"{PREFIX}/v1/jobs/{flow.id}", headers=h).json()
    assert {k: shown[k] for k in ("status", "numExport", "numSuccess", "numError", "numIgnore",
                                  "numPagesProcessed")} == {
        "status": "completed", "numExport": 100_000, "numSuccess": 99_000, "numError": 1000,
        "numIgnore": 0, "numPagesProcessed": 100}
    found = client.get(f"{PREFIX}/v1/jobs/{imported.id}/joberrors", headers=h).json()
    assert len(found) == 1000 and all(e["generate"] == "total" for e in found)
    link = client.get(f"{PREFIX}/v1/jobs/{imported.id}/errorFile/signedURL", headers=h).json()
    rows = list(csv.DictReader(io.StringIO(client.get(link["signedURL"]).text)))
    assert len(rows) == 1000 and len({r["id"] for r in rows}) == 1000


def test_the_dialect_is_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(PREFIX)]
    assert "/v1/jobs/{job_id}/errors/{error_id}/retry-data" in paths
