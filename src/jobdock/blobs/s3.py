"""Blobs as objects in an S3 bucket (AWS, MinIO or any S3-compatible store), via boto3.

`s3://bucket/prefix`: every key lives under `prefix/`. Credentials and region come
from boto3's own configuration (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, profiles, instance roles); the endpoint from
JOBDOCK_S3_ENDPOINT_URL, else boto3's AWS_ENDPOINT_URL, else AWS.

botocore errors become jobdock errors here: an unreachable or throttling endpoint
is StoreUnavailable, any other failure StoreError, a missing object FileNotFoundError.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from jobdock.blobs.base import BlobInfo, BlobStore, check_key, content_disposition, iter_chunks
from jobdock.errors import StoreError, StoreUnavailable

__all__ = ["S3BlobStore"]

MIB = 1 << 20
MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts, except the last one
MAX_PARTS = 10_000
MAX_PRESIGN_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys per call

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_BUSY = {"500", "502", "503", "504", "SlowDown", "ServiceUnavailable", "InternalError",
         "RequestTimeout", "Throttling", "ThrottlingException"}


_loader_lock = threading.Lock()
_loader: Any = None


def _new_session() -> boto3.session.Session:
    """A session of our own (boto3's default one is not safe across threads) that
    shares one data loader: parsing botocore's S3 model anew costs about 0.2 s."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
    core = botocore.session.Session()
    core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)


class S3BlobStore(BlobStore):
    """Blobs under `prefix/` in `bucket`.

    `put` streams: it reads `part_size` bytes at a time in the calling thread (so a
    generator over a database cursor is safe to pass) and uploads at most
    `max_concurrency` parts at once, so an upload holds about
    `(max_concurrency + 1) * part_size` bytes, whatever its size.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        addressing_style: str = "auto",
        part_size: int = 8 * MIB,
        max_concurrency: int = 4,
        delete_batch: int = DELETE_BATCH,
    ) -> None:
        if not _BUCKET.match(bucket):
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not 1 <= delete_batch <= DELETE_BATCH:
            raise ValueError(f"delete_batch must be between 1 and {DELETE_BATCH}")
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.delete_batch = delete_batch
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            max_pool_connections=max(10, 2 * max_concurrency),
        )
        self.client: Any = _new_session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=region_name, config=config
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3BlobStore:
        """`s3://bucket` or `s3://bucket/prefix`; options go to the constructor."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"invalid S3 blob URL {url!r}: use s3://bucket/prefix")
        return cls(parts.netloc, parts.path, **options)

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}')"

    def _object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- writing -------------------------------------------------------------
    def put(self, key: str, data: bytes | BinaryIO | Iterable[bytes]) -> BlobInfo:
        object_key = self._object_key(key)
        digest = hashlib.sha256()
        size = 0

        def hashed() -> Iterator[bytes]:
            nonlocal size
            for chunk in iter_chunks(data):
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        parts = _parts(hashed(), self.part_size)
        first = next(parts, bytearray())
        second = next(parts, None)
        if second is None:
            # Fits in one part: one PutObject, no multipart bookkeeping.
            with _translated("upload", object_key):
                self.client.put_object(Bucket=self.bucket, Key=object_key, Body=first)
        else:
            head = [first, second]
            del first, second
            self._multipart(object_key, _chain(head, parts))
        return BlobInfo(key, size, digest.hexdigest())

    def _multipart(self, object_key: str, parts: Iterator[bytearray]) -> None:
        extra: dict[str, str] = {}
        calculation = getattr(self.client.meta.config, "request_checksum_calculation", None)
        if calculation == "when_supported":
            # As s3transfer does: botocore adds a CRC32 to each part anyway, and S3
            # only accepts those part checksums if the upload declared the algorithm.
            extra["ChecksumAlgorithm"] = "CRC32"
        with _translated("upload", object_key):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=object_key, **extra
            )["UploadId"]
        try:
            done = self._upload_parts(object_key, upload_id, parts, extra)
            with _translated("upload", object_key):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
        except BaseException:
            # Unfinished parts are billed until aborted; the original error is what matters.
            with suppress(BotoCoreError, ClientError):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id
                )
            raise

    def _upload_parts(
        self, object_key: str, upload_id: str, parts: Iterator[bytearray], extra: dict[str, str]
    ) -> list[dict[str, Any]]:
        def upload(number: int, body: bytearray) -> dict[str, Any]:
            with _translated("upload", object_key):
                response = self.client.upload_part(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                    PartNumber=number, Body=body, **extra,
                )
            part = {"PartNumber": number, "ETag": response["ETag"]}
            if "ChecksumCRC32" in response:
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            return part

        done: list[dict[str, Any]] = []
        in_flight: deque[Future[dict[str, Any]]] = deque()
        pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="jobdock-s3-put")
        try:
            for number, body in enumerate(parts, start=1):
                if number > MAX_PARTS:
                    raise StoreError(
                        f"blob {object_key!r} needs more than {MAX_PARTS} parts of"
                        f" {self.part_size} bytes; raise the part size"
                    )
                # At most max_concurrency parts in flight plus the one just read.
                if len(in_flight) >= self.max_concurrency:
                    done.append(in_flight.popleft().result())
                in_flight.append(pool.submit(upload, number, body))
                del body
            while in_flight:
                done.append(in_flight.popleft().result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return done

    # -- reading -------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        object_key = self._object_key(key)
        try:
            with _translated("download", object_key):
                body = self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"]
        except StoreError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(f"blob {key!r} not found") from None
            raise
        return io.BufferedReader(_BodyReader(body, object_key), 256 * 1024)

    def exists(self, key: str) -> bool:
        object_key = self._object_key(key)
        try:
            with _translated("lookup", object_key):
                self.client.head_object(Bucket=self.bucket, Key=object_key)
        except StoreError as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    # -- deleting ------------------------------------------------------------
    def delete_prefix(self, prefix: str) -> int:
        # The trailing '/' keeps `t/abc` from matching `t/abcd/...`.
        folder = self._object_key(prefix) + "/"
        deleted = 0
        with _translated("delete", folder):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, PaginationConfig={"PageSize": self.delete_batch}
            )
            # Listing continues after the last key returned, so deleting page by
            # page does not skip anything.
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                for start in range(0, len(keys), self.delete_batch):
                    batch = keys[start : start + self.delete_batch]
                    response = self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                    )
                    errors = response.get("Errors", [])
                    deleted += len(batch) - len(errors)
                    if errors:
                        first = errors[0]
                        raise StoreError(
                            f"S3 could not delete {len(errors)} blobs under {folder!r}"
                            f" (first: {first.get('Key')!r}: {first.get('Code')}"
                            f" {first.get('Message')})",
                            deleted=deleted,
                        )
        return deleted

    # -- sharing -------------------------------------------------------------
    def presigned_url(
        self, key: str, expires_in_s: int, filename: str | None = None
    ) -> str | None:
        object_key = self._object_key(key)
        if not 1 <= expires_in_s <= MAX_PRESIGN_S:
            raise ValueError(f"expires_in_s must be between 1 and {MAX_PRESIGN_S}")
        params = {"Bucket": self.bucket, "Key": object_key}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        with _translated("presign", object_key):
            url: str = self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in_s
            )
        return url


class _BodyReader(io.RawIOBase):
    """botocore's StreamingBody as a raw stream, so BufferedReader gives it readline,
    read1 and peek (what csv, TextIOWrapper and friends expect)."""

    def __init__(self, body: Any, object_key: str) -> None:
        self._body = body
        self._object_key = object_key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with _translated("download", self._object_key):
            data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _parts(chunks: Iterator[bytes], size: int) -> Iterator[bytearray]:
    """Regroup chunks into parts of exactly `size` bytes; the last may be shorter.

    A part is the bytearray it was gathered in (botocore takes one as a body), so
    each byte is copied once on its way to S3.
    """
    buffer = bytearray()
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            room = size - len(buffer)
            buffer += view[:room]
            view = view[room:]
            if len(buffer) == size:
                part, buffer = buffer, bytearray()
                yield part
    if buffer:
        yield buffer


def _chain(head: list[bytearray], rest: Iterator[bytearray]) -> Iterator[bytearray]:
    # Pops rather than iterates so that a part sent is no longer referenced here.
    while head:
        yield head.pop(0)
    yield from rest


@contextmanager
def _translated(action: str, object_key: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        )
        message = f"S3 {action} of {object_key!r} failed: {code} {error.get('Message', '')}"
        cls = StoreUnavailable if code in _BUSY else StoreError
        raise cls(message.strip(), s3_code=code) from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        raise StoreUnavailable(f"S3 cannot be reached for {action} of {object_key!r}: {exc}",
                               s3_code="") from exc
    except BotoCoreError as exc:
        raise StoreError(f"S3 {action} of {object_key!r} failed: {exc}", s3_code="") from exc


def _is_not_found(exc: StoreError) -> bool:
    return exc.details.get("s3_code") in _NOT_FOUND
