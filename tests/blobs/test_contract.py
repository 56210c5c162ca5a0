"""One contract for every blob store: the local directory and S3 (a moto server)."""

from __future__ import annotations

import csv
import hashlib
import io
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from jobdock.blobs import BlobStore, blob_key
from jobdock.blobs.s3 import S3BlobStore
from jobdock.errors import InvalidInput

MB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_sha(store: BlobStore, key: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with store.open(key) as f:
        while chunk := f.read(MB):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def test_put_bytes_then_open_and_exists(blob_store: BlobStore) -> None:
    key = blob_key("t", "job1", "artifacts", "out.csv")
    assert not blob_store.exists(key)

    info = blob_store.put(key, b"a,b\n1,2\n")

    assert (info.key, info.size, info.sha256) == (key, 8, _sha(b"a,b\n1,2\n"))
    assert blob_store.exists(key)
    with blob_store.open(key) as f:
        assert f.read() == b"a,b\n1,2\n"


def test_put_file_object(blob_store: BlobStore) -> None:
    data = bytes(range(256)) * 1000
    info = blob_store.put("t/job1/uploads/in.bin", io.BytesIO(data))

    assert (info.size, info.sha256) == (len(data), _sha(data))
    assert _read_sha(blob_store, "t/job1/uploads/in.bin") == (len(data), _sha(data))


def test_put_iterator_of_chunks(blob_store: BlobStore) -> None:
    chunks = [b"first,", b"", b"second,", b"third"]
    info = blob_store.put("t/job1/artifacts/chunks.txt", iter(chunks))

    assert info.sha256 == _sha(b"first,second,third")
    with blob_store.open("t/job1/artifacts/chunks.txt") as f:
        assert f.read() == b"first,second,third"


def test_put_empty(blob_store: BlobStore) -> None:
    info = blob_store.put("t/job1/artifacts/empty", iter([]))

    assert (info.size, info.sha256) == (0, _sha(b""))
    assert blob_store.exists("t/job1/artifacts/empty")
    with blob_store.open("t/job1/artifacts/empty") as f:
        assert f.read() == b""


def test_put_replaces(blob_store: BlobStore) -> None:
    blob_store.put("t/job1/artifacts/a", b"old")
    blob_store.put("t/job1/artifacts/a", b"new")
    with blob_store.open("t/job1/artifacts/a") as f:
        assert f.read() == b"new"


def test_large_stream_is_never_held_whole(blob_store: BlobStore) -> None:
    """20 MB from a generator: the digest is right and memory stays well under 20 MB."""
    total = 20 * MB
    expected = hashlib.sha256()

    def generate() -> Iterator[bytes]:
        for i in range(total // (64 * 1024)):
            chunk = i.to_bytes(4, "big") * (16 * 1024)
            expected.update(chunk)
            yield chunk

    tracemalloc.start()
    try:
        info = blob_store.put("t/big/artifacts/stream.bin", generate())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (info.size, info.sha256) == (total, expected.hexdigest())
    assert peak < total * 0.9, f"put held {peak / MB:.1f} MB at once"
    assert _read_sha(blob_store, "t/big/artifacts/stream.bin") == (total, expected.hexdigest())


def test_open_reads_as_text_lines(blob_store: BlobStore) -> None:
    """What the job kinds do with an uploaded CSV: csv over a text wrapper."""
    blob_store.put("t/job1/uploads/people.csv", "name,city\nZoë,Köln\nAl,Oslo\n".encode())

    raw = blob_store.open("t/job1/uploads/people.csv")
    with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        rows = list(csv.reader(text))
    assert raw.closed

    assert rows == [["name", "city"], ["Zoë", "Köln"], ["Al", "Oslo"]]


def test_open_missing_is_file_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        blob_store.open("t/job1/artifacts/nothing")


def test_delete_prefix_removes_exactly_the_prefix(blob_store: BlobStore) -> None:
    doomed = ["t/abc/artifacts/a", "t/abc/artifacts/b", "t/abc/uploads/deep/c"]
    kept = ["t/abcd/artifacts/a", "t/ab/artifacts/a", "u/abc/artifacts/a"]
    for key in doomed + kept:
        blob_store.put(key, key.encode())

    assert blob_store.delete_prefix("t/abc") == 3

    assert [k for k in doomed if blob_store.exists(k)] == []
    assert [k for k in kept if blob_store.exists(k)] == kept
    assert blob_store.delete_prefix("t/abc") == 0
    assert blob_store.delete_prefix("t/never") == 0


@pytest.mark.parametrize(
    "key",
    [
        "../escape",
        "t/../../escape",
        "t/job1/../../other/x",
        "/etc/passwd",
        "t//x",
        "t/x/",
        "./t/x",
        "",
        "t/.hidden",
        "t/x\n",
        "t\\..\\x",
    ],
)
def test_keys_escaping_the_prefix_are_refused(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        blob_store.put(key, b"x")
    with pytest.raises(InvalidInput):
        blob_store.open(key)
    with pytest.raises(InvalidInput):
        blob_store.exists(key)
    with pytest.raises(InvalidInput):
        blob_store.delete_prefix(key)
    with pytest.raises(InvalidInput):
        blob_store.presigned_url(key, 60)


def test_presigned_url(blob_store: BlobStore) -> None:
    blob_store.put("t/job1/artifacts/report.csv", b"x,y\n")

    url = blob_store.presigned_url("t/job1/artifacts/report.csv", 300, filename="report.csv")

    if not isinstance(blob_store, S3BlobStore):
        assert url is None  # the HTTP layer serves local blobs through signed tokens
        return
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"x,y\n"
    assert response.headers["content-disposition"] == 'attachment; filename="report.csv"'
