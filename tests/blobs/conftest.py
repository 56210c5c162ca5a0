"""Blob store fixtures: one store per backend, S3 on the session's moto server.

The moto server itself (`moto_s3`) is started once per session by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jobdock.blobs import BlobStore
from jobdock.blobs.local import LocalBlobStore
from jobdock.blobs.s3 import S3BlobStore
from tests.moto_server import BUCKET, PART_SIZE, MotoS3, _free_port

__all__ = ["BUCKET", "PART_SIZE", "MotoS3", "_free_port"]


@pytest.fixture(params=["local", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """The same contract, once per backend; moto starts only if an S3 case runs."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    return moto.store()


@pytest.fixture
def s3_store(moto_s3: MotoS3) -> S3BlobStore:
    return moto_s3.store()


@pytest.fixture
def object_keys(moto_s3: MotoS3) -> Callable[[str], list[str]]:
    """Every object key in the test bucket under a prefix, read straight from S3."""
    return moto_s3.keys
