"""What only the S3 store does: multipart, the prefix, URLs, settings, errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from jobdock.blobs import open_blobs
from jobdock.blobs.s3 import S3BlobStore
from jobdock.config import Settings
from jobdock.errors import InvalidInput, StoreError, StoreUnavailable
from tests.blobs.conftest import PART_SIZE, MotoS3

MB = 1 << 20


def _etag(moto: MotoS3, object_key: str) -> str:
    etag: str = moto.client.head_object(Bucket=moto.bucket, Key=object_key)["ETag"]
    return etag.strip('"')


def test_keys_live_under_the_configured_prefix(
    moto_s3: MotoS3, object_keys: Callable[[str], list[str]]
) -> None:
    store = moto_s3.store("tenants/eu")
    store.put("t/job1/artifacts/a.csv", b"a")

    assert object_keys("tenants/eu/t/") == ["tenants/eu/t/job1/artifacts/a.csv"]
    assert object_keys("t/") == []


def test_small_blob_is_one_put_large_blob_goes_multipart(s3_store: S3BlobStore,
                                                          moto_s3: MotoS3) -> None:
    data = bytes(range(251)) * (2 * PART_SIZE // 251 + 7)  # a little over two parts

    s3_store.put("t/j/artifacts/small", b"small")
    info = s3_store.put("t/j/artifacts/large", data)

    assert "-" not in _etag(moto_s3, f"{s3_store.prefix}/t/j/artifacts/small")
    assert _etag(moto_s3, f"{s3_store.prefix}/t/j/artifacts/large").endswith("-3")
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    with s3_store.open("t/j/artifacts/large") as f:
        assert f.read() == data


def test_exactly_one_part_is_a_single_put(s3_store: S3BlobStore, moto_s3: MotoS3) -> None:
    s3_store.put("t/j/artifacts/one", b"x" * PART_SIZE)

    assert "-" not in _etag(moto_s3, f"{s3_store.prefix}/t/j/artifacts/one")


def test_failing_source_leaves_no_object_and_no_open_upload(
    s3_store: S3BlobStore, moto_s3: MotoS3
) -> None:
    class SourceBroke(Exception):
        pass

    def source() -> Iterator[bytes]:
        yield b"x" * (3 * PART_SIZE)
        raise SourceBroke("the database went away")

    with pytest.raises(SourceBroke):
        s3_store.put("t/j/artifacts/broken", source())

    assert not s3_store.exists("t/j/artifacts/broken")
    uploads = moto_s3.client.list_multipart_uploads(Bucket=moto_s3.bucket,
                                                    Prefix=s3_store.prefix)
    assert uploads.get("Uploads", []) == []


def test_open_streams_in_pieces(s3_store: S3BlobStore) -> None:
    s3_store.put("t/j/artifacts/lines", b"".join(b"line %d\n" % i for i in range(1000)))

    with s3_store.open("t/j/artifacts/lines") as f:
        assert f.readline() == b"line 0\n"
        assert f.read(7) == b"line 1\n"
        rest = f.read()
    assert rest.endswith(b"line 999\n")


def test_delete_prefix_pages_through_batches(
    moto_s3: MotoS3, object_keys: Callable[[str], list[str]]
) -> None:
    store = moto_s3.store(delete_batch=2)
    calls: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        calls.append(len(params["Delete"]["Objects"]))

    store.client.meta.events.register("provide-client-params.s3.DeleteObjects", count)
    for i in range(5):
        store.put(f"t/job/artifacts/{i}", b"x")
    store.put("t/jobs/artifacts/kept", b"x")

    assert store.delete_prefix("t/job") == 5

    assert calls == [2, 2, 1]
    assert object_keys(f"{store.prefix}/") == [f"{store.prefix}/t/jobs/artifacts/kept"]


def test_presigned_url_with_a_non_ascii_filename(s3_store: S3BlobStore) -> None:
    s3_store.put("t/j/artifacts/r", b"data")

    url = s3_store.presigned_url("t/j/artifacts/r", 60, filename='Bericht "März".csv')

    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Bericht _M_rz_.csv\";"
        " filename*=UTF-8''Bericht%20%22M%C3%A4rz%22.csv"
    )


def test_presigned_url_without_filename_and_its_limits(s3_store: S3BlobStore) -> None:
    s3_store.put("t/j/artifacts/r", b"data")

    url = s3_store.presigned_url("t/j/artifacts/r", 60)

    assert url is not None
    response = httpx.get(url)
    assert (response.status_code, response.content) == (200, b"data")
    assert "content-disposition" not in response.headers
    for bad in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError):
            s3_store.presigned_url("t/j/artifacts/r", bad)


def test_open_blobs_takes_the_endpoint_from_settings(moto_s3: MotoS3) -> None:
    store = open_blobs(f"s3://{moto_s3.bucket}/from/settings",
                       Settings(s3_endpoint_url=moto_s3.endpoint_url))

    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (moto_s3.bucket, "from/settings")
    store.put("t/j/artifacts/x", b"x")
    assert store.exists("t/j/artifacts/x")


def test_open_blobs_reads_jobdock_s3_endpoint_url(moto_s3: MotoS3,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBDOCK_S3_ENDPOINT_URL", moto_s3.endpoint_url)

    store = open_blobs(f"s3://{moto_s3.bucket}")

    assert isinstance(store, S3BlobStore)
    assert store.prefix == ""
    store.put("no-prefix/j/artifacts/x", b"x")
    assert store.exists("no-prefix/j/artifacts/x")


def test_open_blobs_honours_aws_endpoint_url(moto_s3: MotoS3,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)

    store = open_blobs(f"s3://{moto_s3.bucket}/aws-env", Settings())

    store.put("t/j/artifacts/x", b"x")
    assert store.exists("t/j/artifacts/x")


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3:///prefix", "s3://Bad_Bucket/x", "s3://b/x", "s3://bucket/x?region=eu",
     "s3://bucket/x#frag"],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        open_blobs(url, Settings())


@pytest.mark.parametrize("prefix", ["a/../b", "a//b", ".hidden"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidInput):
        open_blobs(f"s3://bucket/{prefix}", Settings())


def test_missing_bucket_is_a_store_error(moto_s3: MotoS3) -> None:
    store = S3BlobStore("no-such-bucket", "p", endpoint_url=moto_s3.endpoint_url)

    with pytest.raises(StoreError) as caught:
        store.put("t/j/artifacts/x", b"x")

    assert not isinstance(caught.value, StoreUnavailable)
    assert caught.value.details["s3_code"] == "NoSuchBucket"


def test_unreachable_endpoint_is_store_unavailable(moto_s3: MotoS3,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.blobs.conftest import _free_port

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retries with backoff
    store = S3BlobStore(moto_s3.bucket, "p", endpoint_url=f"http://127.0.0.1:{_free_port()}")

    with pytest.raises(StoreUnavailable):
        store.exists("t/j/artifacts/x")
    with pytest.raises(StoreUnavailable):
        store.open("t/j/artifacts/x")
