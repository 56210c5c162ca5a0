"""A real moto S3 server on 127.0.0.1, run as a subprocess, for every test that needs S3.

The server runs apart so that what it stores is not counted when a test measures this
process's memory, and so that its warnings stay its own. `tests/conftest.py` starts one
per session (the `moto_s3` fixture), shared by the blob and the API tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from jobdock.blobs.s3 import MIN_PART_SIZE, S3BlobStore

BUCKET = "jobdock-test"
# A test store uses the smallest part S3 allows so that multipart starts early.
PART_SIZE = MIN_PART_SIZE


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    bucket: str
    client: Any

    def store(self, prefix: str | None = None, **options: Any) -> S3BlobStore:
        """A store under a fresh prefix of the test bucket."""
        options.setdefault("part_size", PART_SIZE)
        options.setdefault("max_concurrency", 2)
        return S3BlobStore(self.bucket, prefix or f"run-{uuid.uuid4().hex[:12]}",
                           endpoint_url=self.endpoint_url, **options)

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`, read straight from S3."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


# On Linux the server also stops when pytest itself is killed, instead of lingering.
_MOTO_MAIN = """
import signal, sys
try:
    import ctypes
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
from moto.server import main
main(sys.argv[1:])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_moto_s3(log: Path) -> Iterator[MotoS3]:
    """Start the server with one bucket, configure boto3 through its usual env vars for
    as long as it runs, and stop it at the end (a generator, for a fixture)."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MOTO_MAIN, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto server did not answer on {endpoint}:\n{log.read_text()}")
                time.sleep(0.05)
        with pytest.MonkeyPatch.context() as env:
            # Only what these variables say, never the machine's AWS configuration.
            for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                         "AWS_SESSION_TOKEN", "JOBDOCK_S3_ENDPOINT_URL"):
                env.delenv(name, raising=False)
            missing = str(Path(os.devnull))
            env.setenv("AWS_CONFIG_FILE", missing)
            env.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            client = boto3.session.Session().client("s3", endpoint_url=endpoint)
            client.create_bucket(Bucket=BUCKET)
            yield MotoS3(endpoint, BUCKET, client)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
