"""Files over the API on each store, with local blobs: uploads, jobs reading them,
artifacts and error files through signed links, tokens, and what deleting removes."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from jobdock import App
from jobdock.access import Access
from jobdock.blobs.signing import sign_blob_token
from jobdock.files import ERROR_PAGE_SIZE, neutralise
from jobdock.model import JobStatus
from jobdock.worker.context import JobContext
from tests.api.conftest import MakeKey, bearer

FORMULAS = ["=HYPERLINK(\"http://evil\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


@pytest.fixture
def kinds(jd: App) -> App:
    """Job kinds for these tests, registered on the app behind the API."""

    @jd.job("upper", max_attempts=1)
    def upper(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
        with ctx.open(input["upload"]) as f:
            data = f.read()
        ctx.artifact("upper.txt", data.upper(), content_type="text/plain")
        return {"size": len(data)}

    @jd.job("open_key", max_attempts=1)
    def open_key(ctx: JobContext, input: dict[str, Any]) -> None:
        with ctx.open(input["key"]):
            pass

    @jd.job("many_errors", max_attempts=1)
    def many_errors(ctx: JobContext, input: dict[str, Any]) -> None:
        for i in range(input["count"]):
            message = FORMULAS[i // 10 % len(FORMULAS)] if i % 10 == 0 else f"row {i} is bad"
            ctx.error(message, code="422", source="rows.csv", record={"row": i, "v": "=1"},
                      retry_data=-i)

    return jd


def run_jobs(jd: App) -> None:
    jd.run_worker(concurrency=2, burst=True)


def upload(client: TestClient, key: str, data: bytes, name: str = "data.csv",
           content_type: str = "text/csv") -> dict[str, Any]:
    response = client.post("/v1/uploads", files={"file": (name, data, content_type)},
                           headers=bearer(key))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def blob_files(jd: App, prefix: str = "") -> list[str]:
    root = Path(jd.settings.blob_url.removeprefix("file://")) / prefix
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- uploads -----------------------------------------------------------------------
def test_multipart_upload_is_stored_with_its_size_and_digest(
        client: TestClient, make_key: MakeKey) -> None:
    key = make_key("acme")
    data = b"id,name\n" + b"".join(b"%d,item %d\n" % (i, i) for i in range(20_000))
    body = upload(client, key, data, name="items.csv")

    assert body["name"] == "items.csv"
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["content_type"] == "text/csv"
    again = client.get(f"/v1/uploads/{body['id']}", headers=bearer(key))
    assert again.status_code == 200
    assert again.json() == body


def test_raw_upload_streams_the_body(client: TestClient, make_key: MakeKey, jd: App) -> None:
    key = make_key("acme")
    data = bytes(range(256)) * 12_000  # ~3 MB, in many chunks

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 65_536):
            yield data[start : start + 65_536]

    response = client.post("/v1/uploads?name=blob.bin", content=chunks(),
                           headers={**bearer(key), "Content-Type": "application/x-thing"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/uploads/{body['id']}"
    assert (body["name"], body["size"], body["content_type"]) == (
        "blob.bin", len(data), "application/x-thing")
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    # Stored under the upload's id, never under the name the client gave.
    assert blob_files(jd) == [f"acme/uploads/{body['id']}/content"]


MIB = 1 << 20
MULTIPART_HEAD = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
                  b"Content-Type: application/octet-stream\r\n\r\n")
MULTIPART_TAIL = b"\r\n--b--\r\n"


class Body:
    """A request body made while it is sent, `chunks` MiB of it, counting what was read."""

    def __init__(self, chunks: int, head: bytes = b"", tail: bytes = b"") -> None:
        self.chunks, self.head, self.tail = chunks, head, tail
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        for _ in range(self.chunks):
            self.read += 1
            yield b"x" * MIB
        if self.tail:
            yield self.tail


def post_streamed(client: TestClient, url: str, body: Body,
                  headers: dict[str, str]) -> httpx.Response:
    """POST through an ASGI transport that hands the app the body chunk by chunk (the
    test client reads a body whole before it calls the app)."""

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.post(url, content=body, headers=headers)

    return anyio.run(post)


@pytest.mark.parametrize("form", ["raw", "multipart"])
def test_an_upload_streams_to_the_blob_store_without_being_held_in_memory(
        client: TestClient, make_key: MakeKey, form: str) -> None:
    key = make_key("acme")
    if form == "raw":
        url, body, headers = "/v1/uploads?name=big.bin", Body(48), bearer(key)
    else:
        url, body = "/v1/uploads", Body(48, MULTIPART_HEAD, MULTIPART_TAIL)
        headers = {**bearer(key), "Content-Type": "multipart/form-data; boundary=b"}

    tracemalloc.start()
    try:
        response = post_streamed(client, url, body, headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 201, response.text
    assert response.json()["size"] == 48 * MIB
    assert response.json()["sha256"] == hashlib.sha256(b"x" * (48 * MIB)).hexdigest()
    assert peak < 12 * MIB


@pytest.mark.parametrize("form", ["raw", "multipart"])
def test_reading_stops_at_the_limit(client: TestClient, make_key: MakeKey, jd: App,
                                    monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    monkeypatch.setattr(jd.settings, "max_upload_bytes", 5 * MIB)
    key = make_key("acme")
    if form == "raw":
        url, body, headers = "/v1/uploads?name=big.bin", Body(64), bearer(key)
    else:
        url, body = "/v1/uploads", Body(64, MULTIPART_HEAD, MULTIPART_TAIL)
        headers = {**bearer(key), "Content-Type": "multipart/form-data; boundary=b"}

    response = post_streamed(client, url, body, headers)

    assert response.status_code == 413
    assert body.read <= 7  # a chunk or two past the limit, not the whole 64 MiB
    assert blob_files(jd) == []


def test_a_client_that_goes_away_mid_upload_leaves_nothing(
        client: TestClient, make_key: MakeKey, jd: App) -> None:
    key = make_key("acme")
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"x" * 1000, "more_body": True},
        {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/uploads",
             "raw_path": b"/v1/uploads", "query_string": b"name=a.bin", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {key}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    anyio.run(client.app, scope, receive, send)

    assert sent[0]["status"] == 422
    assert b"went away" in sent[1]["body"]
    assert blob_files(jd) == []


def test_a_client_path_is_reduced_to_its_file_name(client: TestClient,
                                                   make_key: MakeKey, jd: App) -> None:
    key = make_key("acme")
    response = client.post("/v1/uploads?name=../../etc/passwd", content=b"x",
                           headers=bearer(key))
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "passwd"
    assert blob_files(jd) == [f"acme/uploads/{body['id']}/content"]


@pytest.mark.parametrize("how", ["declared", "streamed", "multipart"])
def test_an_upload_over_the_limit_is_413_and_leaves_nothing(
        client: TestClient, make_key: MakeKey, jd: App, monkeypatch: pytest.MonkeyPatch,
        how: str) -> None:
    monkeypatch.setattr(jd.settings, "max_upload_bytes", 10_000)
    key = make_key("acme")
    data = b"x" * 10_001
    if how == "declared":
        response = client.post("/v1/uploads?name=big.bin", content=data, headers=bearer(key))
    elif how == "streamed":  # no Content-Length: the cap is found while reading
        response = client.post("/v1/uploads?name=big.bin", content=iter([data[:6000],
                                                                         data[6000:]]),
                               headers=bearer(key))
    else:
        response = client.post("/v1/uploads", files={"file": ("big.bin", data)},
                               headers=bearer(key))

    assert response.status_code == 413, response.text
    problem = response.json()
    assert problem["code"] == "too_large"
    assert "10000 bytes" in problem["detail"]
    assert blob_files(jd) == []
    # Exactly at the limit is fine.
    assert upload(client, key, data[:10_000])["size"] == 10_000


def test_an_upload_needs_the_file_field_and_a_name(client: TestClient,
                                                   make_key: MakeKey) -> None:
    key = make_key("acme")

    no_field = client.post("/v1/uploads", files={"document": ("a.csv", b"a")},
                           headers=bearer(key))
    assert no_field.status_code == 422
    assert "`file`" in no_field.json()["detail"]

    no_name = client.post("/v1/uploads", content=b"abc", headers=bearer(key))
    assert no_name.status_code == 422
    assert "?name=" in no_name.json()["detail"]

    nameless_part = client.post(
        "/v1/uploads", headers={**bearer(key), "Content-Type": "multipart/form-data; boundary=b"},
        content=b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc\r\n--b--\r\n')
    assert nameless_part.status_code == 422
    assert "file name" in nameless_part.json()["detail"]

    truncated = client.post(
        "/v1/uploads", headers={**bearer(key), "Content-Type": "multipart/form-data; boundary=b"},
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
                b"abc")
    assert truncated.status_code == 422
    assert "incomplete" in truncated.json()["detail"]

    no_boundary = client.post("/v1/uploads", content=b"abc", headers={
        **bearer(key), "Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 422


def test_uploading_needs_a_key_with_write_scope(client: TestClient, make_key: MakeKey) -> None:
    assert client.post("/v1/uploads?name=a", content=b"a").status_code == 401
    reader = make_key("acme", scopes=("jobs:read",))
    assert client.post("/v1/uploads?name=a", content=b"a",
                       headers=bearer(reader)).status_code == 403


def test_another_tenants_or_apps_upload_is_not_found(client: TestClient, make_key: MakeKey,
                                                     jd: App) -> None:
    owner = make_key("acme")
    body = upload(client, owner, b"secret")
    other = make_key("globex")
    assert client.get(f"/v1/uploads/{body['id']}", headers=bearer(other)).status_code == 404

    app = Access(jd.engine.store).create_app("acme", "portal")
    app_key = make_key("acme", app_id=app.id)
    assert client.get(f"/v1/uploads/{body['id']}", headers=bearer(app_key)).status_code == 404
    mine = upload(client, app_key, b"app data")
    assert client.get(f"/v1/uploads/{mine['id']}", headers=bearer(app_key)).status_code == 200
    # The tenant-wide key sees its apps' uploads.
    assert client.get(f"/v1/uploads/{mine['id']}", headers=bearer(owner)).status_code == 200


# -- jobs read uploads and write artifacts ---------------------------------------
def test_a_job_reads_an_upload_and_its_artifact_downloads(
        client: TestClient, make_key: MakeKey, kinds: App) -> None:
    key = make_key("acme")
    up = upload(client, key, b"hello, world\n")
    job = kinds.submit("upper", {"upload": up["id"]}, tenant="acme")
    run_jobs(kinds)
    done = kinds.get(job.id, tenant="acme")
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result == {"size": 13}

    listed = client.get(f"/v1/jobs/{job.id}/artifacts", headers=bearer(key))
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["name"] == "upper.txt"
    assert item["size"] == 13
    assert item["sha256"] == hashlib.sha256(b"HELLO, WORLD\n").hexdigest()
    assert item["content_type"] == "text/plain"
    assert item["url"].startswith("http://testserver/v1/blobs/")
    expires = datetime.fromisoformat(item["expires_at"])
    assert timedelta(minutes=50) < expires - datetime.now(UTC) <= timedelta(hours=1)

    one = client.get(f"/v1/jobs/{job.id}/artifacts/upper.txt", headers=bearer(key))
    assert one.status_code == 200
    assert one.json()["sha256"] == item["sha256"]
    assert client.get(f"/v1/jobs/{job.id}/artifacts/nope.txt",
                      headers=bearer(key)).status_code == 404

    download = client.get(item["url"])  # no API key: the token is enough
    assert download.status_code == 200
    assert download.content == b"HELLO, WORLD\n"
    assert download.headers["content-disposition"] == 'attachment; filename="upper.txt"'
    assert download.headers["content-type"].startswith("text/plain")
    assert download.headers["x-content-type-options"] == "nosniff"


def test_another_tenant_sees_no_artifacts_or_errors(client: TestClient, make_key: MakeKey,
                                                    kinds: App) -> None:
    key = make_key("acme")
    up = upload(client, key, b"x")
    job = kinds.submit("upper", {"upload": up["id"]}, tenant="acme")
    run_jobs(kinds)
    other = make_key("globex")
    for path in ("artifacts", "artifacts/upper.txt", "errors/file"):
        response = client.get(f"/v1/jobs/{job.id}/{path}", headers=bearer(other))
        assert response.status_code == 404, path


def test_a_job_cannot_read_another_tenants_upload(client: TestClient, make_key: MakeKey,
                                                  kinds: App) -> None:
    theirs = upload(client, make_key("globex"), b"globex secret")
    make_key("acme")
    by_id = kinds.submit("upper", {"upload": theirs["id"]}, tenant="acme")
    by_key = kinds.submit("open_key", {"key": f"globex/uploads/{theirs['id']}/content"},
                          tenant="acme")
    run_jobs(kinds)

    failed = kinds.get(by_id.id, tenant="acme")
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error["code"] == "not_found"
    assert theirs["id"] in failed.error["message"]
    assert client.get(f"/v1/jobs/{by_id.id}/artifacts",
                      headers=bearer(make_key("acme"))).json() == {"items": []}
    refused = kinds.get(by_key.id, tenant="acme")
    assert refused.status is JobStatus.FAILED
    assert refused.error is not None
    assert refused.error["code"] == "PermissionError"


def test_a_job_of_an_app_reads_only_that_apps_uploads(client: TestClient, make_key: MakeKey,
                                                      kinds: App) -> None:
    tenant_wide = upload(client, make_key("acme"), b"tenant data")
    access = Access(kinds.engine.store)
    portal = access.create_app("acme", "portal")
    mine = upload(client, make_key("acme", app_id=portal.id), b"portal data")
    reads_own = kinds.submit("upper", {"upload": mine["id"]}, tenant="acme", app_id=portal.id)
    reads_other = kinds.submit("upper", {"upload": tenant_wide["id"]}, tenant="acme",
                               app_id=portal.id)
    run_jobs(kinds)
    assert kinds.get(reads_own.id, tenant="acme").status is JobStatus.SUCCEEDED
    assert kinds.get(reads_other.id, tenant="acme").status is JobStatus.FAILED


# -- signed tokens -------------------------------------------------------------------
@pytest.fixture
def artifact_url(client: TestClient, make_key: MakeKey, kinds: App) -> str:
    up = upload(client, make_key("acme"), b"payload")
    job = kinds.submit("upper", {"upload": up["id"]}, tenant="acme")
    run_jobs(kinds)
    items = client.get(f"/v1/jobs/{job.id}/artifacts",
                       headers=bearer(make_key("acme"))).json()["items"]
    url: str = items[0]["url"]
    assert client.get(url).status_code == 200
    return url


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def test_a_tampered_token_is_403(client: TestClient, artifact_url: str) -> None:
    base, token = artifact_url.rsplit("/", 1)
    payload, signature = token.split(".")
    for bad in (f"{_flip(payload, 3)}.{signature}", f"{payload}.{_flip(signature, 5)}",
                f"{payload}.", "not-a-token", f"{token}x", f"{payload}.{signature}.x"):
        response = client.get(f"{base}/{bad}")
        assert response.status_code == 403, bad
        assert response.json()["code"] == "invalid_token"


def test_an_expired_token_is_403(client: TestClient, artifact_url: str) -> None:
    secret: bytes = client.app.state.secret
    token = artifact_url.rsplit("/", 1)[1]
    key = json.loads(_b64decode(token.split(".")[0]))[0]
    expired = sign_blob_token(secret, key, int(time.time()) - 1, "upper.txt")
    response = client.get(f"/v1/blobs/{expired}")
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    fresh = sign_blob_token(secret, key, int(time.time()) + 60, "upper.txt")
    assert client.get(f"/v1/blobs/{fresh}").status_code == 200


def test_a_token_cannot_be_turned_to_another_tenants_blob(
        client: TestClient, make_key: MakeKey, artifact_url: str, jd: App) -> None:
    theirs = upload(client, make_key("globex"), b"globex secret")
    their_key = f"globex/uploads/{theirs['id']}/content"
    token = artifact_url.rsplit("/", 1)[1]
    expires_at = json.loads(_b64decode(token.split(".")[0]))[1]
    signature = token.split(".")[1]
    # The acme token's signature on a payload naming globex's blob.
    payload = json.dumps([their_key, expires_at, "x.txt"], separators=(",", ":")).encode()
    forged = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    assert client.get(f"/v1/blobs/{forged}.{signature}").status_code == 403
    # A token signed with any other key (another deployment's) is refused too.
    foreign = sign_blob_token(b"another deployment's key", their_key, expires_at)
    assert client.get(f"/v1/blobs/{foreign}").status_code == 403


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- error files ---------------------------------------------------------------------
@pytest.fixture
def failed_rows(client: TestClient, make_key: MakeKey, kinds: App) -> tuple[str, str]:
    key = make_key("acme")
    job = kinds.submit("many_errors", {"count": 2_500}, tenant="acme")
    run_jobs(kinds)
    assert kinds.get(job.id, tenant="acme").status is JobStatus.SUCCEEDED
    return key, job.id


def test_the_csv_error_file_has_every_error_with_formulas_neutralised(
        client: TestClient, failed_rows: tuple[str, str], kinds: App) -> None:
    key, job_id = failed_rows
    assert 2 * ERROR_PAGE_SIZE < 2_500  # several pages are read

    response = client.get(f"/v1/jobs/{job_id}/errors/file?format=csv", headers=bearer(key))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2_500
    assert body["format"] == "csv"
    download = client.get(body["url"])
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert f"{job_id}-errors.csv" in download.headers["content-disposition"]

    rows = list(csv.DictReader(io.StringIO(download.text, newline="")))
    assert len(rows) == 2_500
    stored = [e.id for e in _all_errors(kinds, job_id)]
    assert [row["id"] for row in rows] == stored
    by_row = {json.loads(row["record"])["row"]: row for row in rows}
    for i in range(0, 2_500, 10):
        formula = FORMULAS[(i // 10) % len(FORMULAS)]
        assert by_row[i]["message"] == "'" + formula
    assert by_row[1]["message"] == "row 1 is bad"
    assert by_row[7]["retry_data"] == "'-7"
    assert by_row[0]["retry_data"] == "0"
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_the_jsonl_error_file_keeps_values_as_they_are(
        client: TestClient, failed_rows: tuple[str, str]) -> None:
    key, job_id = failed_rows
    response = client.get(f"/v1/jobs/{job_id}/errors/file", params={"format": "jsonl"},
                          headers=bearer(key))
    assert response.status_code == 200
    assert response.json()["count"] == 2_500
    download = client.get(response.json()["url"])
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert len(lines) == 2_500
    assert lines[0]["message"] == FORMULAS[0]
    assert lines[7]["record"] == {"row": 7, "v": "=1"}
    assert lines[7]["retry_data"] == -7
    assert lines[7]["code"] == "422"
    assert len({line["id"] for line in lines}) == 2_500


def test_an_error_file_of_a_job_without_errors(client: TestClient, make_key: MakeKey,
                                               kinds: App) -> None:
    key = make_key("acme")
    job = kinds.submit("many_errors", {"count": 0}, tenant="acme")
    response = client.get(f"/v1/jobs/{job.id}/errors/file", headers=bearer(key))
    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert client.get(response.json()["url"]).text.startswith("id,created_at,attempt,")
    bad = client.get(f"/v1/jobs/{job.id}/errors/file?format=xlsx", headers=bearer(key))
    assert bad.status_code in (400, 422)
    assert "jsonl" in bad.json()["detail"]


@pytest.mark.parametrize(("cell", "safe"), [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("a=1", "a=1"), ("", ""), ("'=x", "'=x"),
])
def test_neutralise(cell: str, safe: str) -> None:
    assert neutralise(cell) == safe


def _all_errors(jd: App, job_id: str) -> list[Any]:
    out: list[Any] = []
    after = None
    while page := jd.errors(job_id, tenant="acme", after_id=after):
        out.extend(page)
        after = page[-1].id
    return out


# -- deleting and expiring -------------------------------------------------------------
def test_deleting_a_job_removes_its_files(client: TestClient, make_key: MakeKey,
                                          kinds: App) -> None:
    key = make_key("acme")
    up = upload(client, key, b"data")
    job = kinds.submit("upper", {"upload": up["id"]}, tenant="acme")
    run_jobs(kinds)
    [artifact] = client.get(f"/v1/jobs/{job.id}/artifacts", headers=bearer(key)).json()["items"]
    errors_file = client.get(f"/v1/jobs/{job.id}/errors/file", headers=bearer(key)).json()
    assert sorted(blob_files(kinds, f"acme/{job.id}")) == ["artifacts/upper.txt",
                                                          "errors/errors.csv"]

    assert kinds.delete(job.id, tenant="acme") == [job.id]

    assert blob_files(kinds, f"acme/{job.id}") == []
    assert client.get(artifact["url"]).status_code == 404
    assert client.get(errors_file["url"]).status_code == 404
    # The upload is the tenant's, not the job's: other jobs may still read it.
    assert client.get(f"/v1/uploads/{up['id']}", headers=bearer(key)).status_code == 200


def test_maintenance_purges_expired_uploads_with_their_blobs(
        client: TestClient, make_key: MakeKey, jd: App) -> None:
    key = make_key("acme")
    old = upload(client, key, b"old")
    expires = datetime.fromisoformat(old["expires_at"])
    lifetime = (expires - datetime.now(UTC)).total_seconds()
    assert lifetime == pytest.approx(jd.settings.retention_s, abs=60)

    report = jd.engine.maintain(now=expires + timedelta(seconds=1))

    assert report.uploads_purged == 1
    assert blob_files(jd, "acme") == []
    assert client.get(f"/v1/uploads/{old['id']}", headers=bearer(key)).status_code == 404
