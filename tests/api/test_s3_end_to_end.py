"""The files' whole path on S3 (a moto server on 127.0.0.1), configured as an operator
would, through JOBDOCK_BLOB_URL: upload, a job reads it and writes an artifact, presigned
URLs download it, and deleting and expiring remove every object."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from jobdock import App
from jobdock.access import Access
from jobdock.blobs.s3 import S3BlobStore
from jobdock.model import JobStatus
from jobdock.worker.context import JobContext
from tests.api.conftest import bearer
from tests.moto_server import MotoS3

MIB = 1 << 20


@pytest.fixture
def s3_app(database_url: str, tmp_path: Path, moto_s3: MotoS3,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[App, str]]:
    """An App whose blobs are in the moto bucket under a fresh prefix, set by env vars."""
    prefix = f"e2e-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("JOBDOCK_BLOB_URL", f"s3://{moto_s3.bucket}/{prefix}")
    monkeypatch.setenv("JOBDOCK_S3_ENDPOINT_URL", moto_s3.endpoint_url)
    app = App(database_url=database_url, data_dir=str(tmp_path / "data"),
              poll_interval_s=0.05, heartbeat_interval_s=0.1, flush_interval_s=0.02,
              maintenance_interval_s=0.1)

    @app.job("checksum", max_attempts=1)
    def checksum(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        with ctx.open(input["upload"]) as f:
            while chunk := f.read(MIB):
                digest.update(chunk)
                size += len(chunk)
                ctx.error(f"={size}", code="bad", record={"offset": size})
        report = f"{digest.hexdigest()}  {size}\n".encode()
        ctx.artifact("report.txt", report, content_type="text/plain")
        with ctx.open(input["upload"]) as f:
            ctx.artifact("copy.bin", f)
        return {"size": size}

    try:
        yield app, prefix
    finally:
        app.close()


@pytest.fixture
def s3_client(s3_app: tuple[App, str]) -> Iterator[TestClient]:
    from jobdock.api import create_api

    with TestClient(create_api(s3_app[0]), raise_server_exceptions=False) as client:
        yield client


def key_for(app: App, tenant: str) -> str:
    if app.engine.store.tenant_get(tenant) is None:
        app.create_tenant(tenant)
    presented, _ = Access(app.engine.store).create_key(tenant)
    return presented


def test_files_end_to_end_on_s3(s3_app: tuple[App, str], s3_client: TestClient,
                                moto_s3: MotoS3) -> None:
    app, prefix = s3_app
    assert isinstance(app.engine.blobs, S3BlobStore)
    key = key_for(app, "acme")
    data = bytes(range(256)) * (9 * MIB // 256 + 3)  # over one 8 MiB part: a multipart put

    uploaded = s3_client.post("/v1/uploads", files={"file": ("input.bin", data)},
                              headers=bearer(key))
    assert uploaded.status_code == 201, uploaded.text
    up = uploaded.json()
    assert (up["size"], up["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert moto_s3.keys(prefix) == [f"{prefix}/acme/uploads/{up['id']}/content"]

    job = app.submit("checksum", {"upload": up["id"]}, tenant="acme")
    app.run_worker(concurrency=1, burst=True)
    done = app.get(job.id, tenant="acme")
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result == {"size": len(data)}

    listed = s3_client.get(f"/v1/jobs/{job.id}/artifacts", headers=bearer(key))
    assert listed.status_code == 200
    items = {item["name"]: item for item in listed.json()["items"]}
    assert set(items) == {"report.txt", "copy.bin"}
    copy = items["copy.bin"]
    assert copy["url"].startswith(f"{moto_s3.endpoint_url}/")  # presigned, not /v1/blobs
    downloaded = httpx.get(copy["url"], timeout=30)
    assert downloaded.status_code == 200
    assert downloaded.content == data
    assert downloaded.headers["content-disposition"] == 'attachment; filename="copy.bin"'
    report = httpx.get(items["report.txt"]["url"], timeout=30).content
    assert report == f"{hashlib.sha256(data).hexdigest()}  {len(data)}\n".encode()

    error_file = s3_client.get(f"/v1/jobs/{job.id}/errors/file", headers=bearer(key)).json()
    assert error_file["count"] == 10  # one per MiB read, the last one partial
    rows = list(csv.DictReader(io.StringIO(httpx.get(error_file["url"], timeout=30).text,
                                           newline="")))
    assert [row["message"] for row in rows] == [f"'={min((i + 1) * MIB, len(data))}"
                                                for i in range(10)]

    job_prefix = f"{prefix}/acme/{job.id}"
    assert moto_s3.keys(job_prefix) == sorted([f"{job_prefix}/artifacts/copy.bin",
                                               f"{job_prefix}/artifacts/report.txt",
                                               f"{job_prefix}/errors/errors.csv"])

    assert app.delete(job.id, tenant="acme") == [job.id]
    assert moto_s3.keys(job_prefix) == []
    # S3 answers 403 rather than 404 for a missing object when it will not say more.
    assert httpx.get(copy["url"], timeout=30).status_code in (403, 404)
    # The upload outlives the job until its own retention ends; then nothing is left.
    assert moto_s3.keys(prefix) == [f"{prefix}/acme/uploads/{up['id']}/content"]
    expired = datetime.fromisoformat(up["expires_at"]) + timedelta(seconds=1)
    assert app.engine.maintain(now=expired).uploads_purged == 1
    assert moto_s3.keys(prefix) == []


def test_an_upload_over_the_limit_leaves_nothing_in_the_bucket(
        s3_app: tuple[App, str], s3_client: TestClient, moto_s3: MotoS3,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, prefix = s3_app
    # Past two 8 MiB parts, so that a multipart upload has begun when the limit is hit.
    monkeypatch.setattr(app.settings, "max_upload_bytes", 17 * MIB)
    key = key_for(app, "acme")

    response = s3_client.post("/v1/uploads", files={"file": ("big.bin", b"x" * (24 * MIB))},
                              headers=bearer(key))

    assert response.status_code == 413, response.text
    assert moto_s3.keys(prefix) == []
    pending = moto_s3.client.list_multipart_uploads(Bucket=moto_s3.bucket, Prefix=prefix)
    assert pending.get("Uploads", []) == []
