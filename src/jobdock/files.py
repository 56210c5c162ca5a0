"""Files users send and fetch: uploads, error files and download links. No HTTP here.

- An upload is streamed into the blob store under `<tenant>/uploads/<upload id>/`,
  never under a name the user chose, and is cut off with `TooLarge` as soon as it
  passes its byte limit; what was written of it is deleted.
- An error file is written from the error table a page at a time, as CSV or JSONL,
  so a job with millions of errors never has them all in memory. CSV cells that a
  spreadsheet would run as a formula are neutralised.
- A download link is the blob store's own presigned URL (S3), or a path under
  `/v1/blobs/` with a signed, expiring token (local directory).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jobdock.errors as errors
from jobdock.blobs import BlobStore, blob_key
from jobdock.blobs.signing import sign_blob_token
from jobdock.engine import Engine, upload_prefix
from jobdock.ids import new_id
from jobdock.model import JobErrorRecord, Upload

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "ERROR_COLUMNS",
    "ERROR_PAGE_SIZE",
    "LINK_TTL_S",
    "MAX_NAME_LENGTH",
    "ErrorFile",
    "ErrorFormat",
    "Link",
    "create_upload",
    "download_link",
    "neutralise",
    "upload_key",
    "write_error_file",
]

log = logging.getLogger("jobdock.files")

ErrorFormat = Literal["csv", "jsonl"]

LINK_TTL_S = 3600  # how long a download link works
ERROR_PAGE_SIZE = 1000  # errors read from the store per query while writing a file
ERROR_COLUMNS = ("id", "created_at", "attempt", "code", "source", "message", "record",
                 "retry_data", "resolved", "retried")
MAX_NAME_LENGTH = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/"
                           r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
# What a spreadsheet may take for the start of a formula (OWASP "CSV injection"):
# = + - @, and tab or carriage return, which some strip before looking.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# -- uploads -------------------------------------------------------------------
def upload_key(tenant: str, upload_id: str) -> str:
    """The blob key of an upload's content. It sits in a folder of its own, because
    blob stores delete by folder."""
    return blob_key(*upload_prefix(tenant, upload_id).split("/"), "content")


def create_upload(engine: Engine, tenant: str, name: str, chunks: Iterable[bytes], *,
                  content_type: str | None = None, app_id: str | None = None,
                  max_bytes: int | None = None, now: datetime | None = None) -> Upload:
    """Stream `chunks` into a new upload of `tenant` and record it; return the record.

    Reading stops as soon as more than `max_bytes` (default: the `max_upload_bytes`
    setting) have arrived: TooLarge is raised and nothing of the upload is kept. The
    upload expires `retention_s` (a setting) after it is made; maintenance then
    deletes it with its blob.
    """
    name = _checked_name(name)
    limit = engine.settings.max_upload_bytes if max_bytes is None else max_bytes
    moment = now or datetime.now(UTC)
    upload_id = new_id()
    key = upload_key(tenant, upload_id)
    engine.tenant(tenant)  # TenantNotFound before any byte is stored
    try:
        info = engine.blobs.put(key, _capped(chunks, limit))
        upload = Upload(
            id=upload_id, tenant_id=tenant, name=name, size=info.size, sha256=info.sha256,
            content_type=_checked_content_type(content_type), blob_key=key, app_id=app_id,
            created_at=moment,
            expires_at=moment + timedelta(seconds=engine.settings.retention_s))
        engine.store.upload_create(upload)
    except BaseException:
        _delete_quietly(engine.blobs, upload_prefix(tenant, upload_id))
        raise
    return upload


def _capped(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise errors.TooLarge(f"the upload is larger than the limit of {limit} bytes"
                                  " (setting max_upload_bytes)", max_bytes=limit)
        yield chunk


def _checked_name(name: str) -> str:
    """The file name to show and to download as; only a label, never part of a key.

    A client may send a path (some browsers do): only its last part is kept.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base or len(base) > MAX_NAME_LENGTH or any(
            ord(c) < 32 or ord(c) == 127 for c in base):
        raise errors.InvalidInput(
            f"invalid upload name {name!r}: 1 to {MAX_NAME_LENGTH} characters without"
            " control characters", [{"field": "name", "message": "invalid file name"}])
    return base


def _checked_content_type(content_type: str | None) -> str:
    """`type/subtype` as sent, lower-cased and without parameters; else octet-stream."""
    if not content_type:
        return DEFAULT_CONTENT_TYPE
    bare = content_type.split(";", 1)[0].strip().lower()
    return bare if _CONTENT_TYPE.match(bare) else DEFAULT_CONTENT_TYPE


def _delete_quietly(blobs: BlobStore, prefix: str) -> None:
    # Called while another error is on its way up: that one is what the caller must see.
    try:
        blobs.delete_prefix(prefix)
    except Exception:
        log.exception("could not delete the blobs under %r; maintenance will not find them"
                      " either", prefix)


# -- error files ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ErrorFile:
    key: str
    format: ErrorFormat
    filename: str
    count: int
    size: int


def write_error_file(engine: Engine, tenant: str, job_id: str,
                     format: ErrorFormat = "csv") -> ErrorFile:
    """Write every error of a job to its error file (`<tenant>/<job>/errors/`), anew.

    Errors are read `ERROR_PAGE_SIZE` at a time and each page is written as soon as
    it is read, so memory holds one page whatever the number of errors. The file is
    deleted with its job. JobNotFound for a job the tenant cannot see.
    """
    if format not in ("csv", "jsonl"):
        raise errors.InvalidInput(f"unknown error file format {format!r}: use csv or jsonl",
                                  [{"field": "format", "message": "expected csv or jsonl"}])
    engine.get(tenant, job_id)
    key = blob_key(tenant, job_id, "errors", f"errors.{format}")
    count = 0

    def pages() -> Iterator[list[JobErrorRecord]]:
        nonlocal count
        after: str | None = None
        while True:
            page = engine.store.job_errors_list(tenant, job_id, after, ERROR_PAGE_SIZE)
            if not page:
                return
            count += len(page)
            yield page
            if len(page) < ERROR_PAGE_SIZE:
                return
            after = page[-1].id

    encode = _csv_chunks if format == "csv" else _jsonl_chunks
    info = engine.blobs.put(key, encode(pages()))
    return ErrorFile(key, format, f"{job_id}-errors.{format}", count, info.size)


def neutralise(cell: str) -> str:
    """A CSV cell that no spreadsheet runs as a formula: `'` before a risky first character."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _csv_chunks(pages: Iterable[list[JobErrorRecord]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(ERROR_COLUMNS)
    for page in pages:
        for record in page:
            writer.writerow([neutralise(_cell(value)) for value in _error_values(record)])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()  # the header of a job without errors


def _jsonl_chunks(pages: Iterable[list[JobErrorRecord]]) -> Iterator[bytes]:
    for page in pages:
        yield "".join(
            json.dumps(dict(zip(ERROR_COLUMNS, _error_values(record), strict=True)),
                       ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
            for record in page).encode()


def _error_values(e: JobErrorRecord) -> tuple[Any, ...]:
    created = e.created_at.isoformat() if e.created_at is not None else None
    return (e.id, created, e.attempt, e.code, e.source, e.message, e.record, e.retry_data,
            e.resolved, e.retried)


def _cell(value: Any) -> str:
    """A CSV cell: text as is, nothing as empty, anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# -- download links ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Link:
    url: str  # absolute for a presigned URL; a path under /v1/blobs/ for a signed token
    expires_at: datetime


def download_link(blobs: BlobStore, secret: bytes, key: str, filename: str | None = None,
                  expires_in_s: int = LINK_TTL_S, now: float | None = None) -> Link:
    """A link anyone can download blob `key` (as `filename`) from until it expires."""
    expires_at = int(time.time() if now is None else now) + expires_in_s
    url = blobs.presigned_url(key, expires_in_s, filename)
    if url is None:
        url = f"/v1/blobs/{sign_blob_token(secret, key, expires_at, filename)}"
    return Link(url, datetime.fromtimestamp(expires_at, UTC))
