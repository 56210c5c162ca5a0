"""Files over HTTP: uploads, downloads through signed tokens, error files, artifacts.

    POST /v1/uploads                        multipart field `file`, or a raw body with ?name=
    GET  /v1/uploads/{id}                   an upload's record
    GET  /v1/blobs/{token}                  download through a signed, expiring token
    GET  /v1/jobs/{id}/errors/file          {url, expires_at, count, format} (?format=csv|jsonl)
    GET  /v1/jobs/{id}/artifacts            a job's results, each with a download link
    GET  /v1/jobs/{id}/artifacts/{name}     one of them

An upload goes from the request stream to the blob store chunk by chunk: the body is
never held whole in memory nor spooled to disk, and reading stops at the size limit.
"""

from __future__ import annotations

import mimetypes
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, BinaryIO

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

import jobdock.errors as errors
import jobdock.files as files
from jobdock.access import Principal
from jobdock.api.deps import EngineDep, Reader, Writer
from jobdock.blobs import content_disposition
from jobdock.blobs.signing import verify_blob_token
from jobdock.engine import Engine
from jobdock.model import Artifact, Job, Upload

router = APIRouter(prefix="/v1", tags=["files"])

UPLOAD_THREADS = 64  # uploads written to the blob store at once, each holding a thread
MAX_PART_HEADERS = 16 * 1024  # bytes of headers one multipart part may have
DOWNLOAD_CHUNK = 256 * 1024
_MEDIA_TYPES = {".csv": "text/csv; charset=utf-8", ".jsonl": "application/x-ndjson"}


# -- response bodies -------------------------------------------------------------
class UploadOut(BaseModel):
    id: str
    name: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime | None
    expires_at: datetime | None


class ArtifactOut(BaseModel):
    name: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime | None
    url: str
    expires_at: datetime


class ArtifactList(BaseModel):
    items: list[ArtifactOut]


class ErrorFileOut(BaseModel):
    url: str
    expires_at: datetime
    count: int
    format: files.ErrorFormat


# -- uploads -----------------------------------------------------------------------
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file, as the multipart field `file`, or as the raw body with"
                       " `?name=`. Larger than the upload limit: 413.",
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("/uploads", status_code=201, response_model=UploadOut, openapi_extra=_UPLOAD_BODY,
             responses={413: {"description": "larger than the upload limit"},
                        422: {"description": "no `file` part, no file name, or a malformed"
                              " multipart body"}})
async def create_upload(
    request: Request, response: Response, principal: Writer, engine: EngineDep,
    name: Annotated[str | None, Query(max_length=files.MAX_NAME_LENGTH,
                                      description="file name; required for a raw body")] = None,
) -> UploadOut:
    """Upload a file that job input can then name by its id."""
    limit = engine.settings.max_upload_bytes
    header = request.headers.get("content-type", "")
    if header.lower().startswith("multipart/form-data"):
        form = _MultipartFile(header, request.stream())
        if not await form.find_file():
            raise errors.InvalidInput("the multipart body has no `file` field: send the file"
                                      " as the form field named `file`",
                                      [{"field": "file", "message": "missing"}])
        filename = name or form.filename
        content_type = form.content_type or _guess_type(filename)
        chunks = form.file_chunks()
    else:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            # Refused before a byte is read; a body without a length is cut off as it comes.
            raise errors.TooLarge(f"the upload is larger than the limit of {limit} bytes"
                                  " (setting max_upload_bytes)", max_bytes=limit)
        filename = name
        # curl --data-binary sends this type for any file: it says nothing of the file.
        sent = "" if header.startswith("application/x-www-form-urlencoded") else header
        content_type = sent or _guess_type(filename)
        chunks = request.stream()
    if not filename:
        raise errors.InvalidInput("the upload needs a file name: give ?name=, or a filename in"
                                  " the multipart part's Content-Disposition",
                                  [{"field": "name", "message": "missing"}])
    try:
        upload = await _in_thread(request, lambda pulled: files.create_upload(
            engine, principal.tenant_id, filename, pulled, content_type=content_type,
            app_id=principal.app_id, max_bytes=limit), chunks)
    except ClientDisconnect:
        # Nobody is left to answer; this keeps a routine event out of the error log.
        raise errors.InvalidInput("the client went away before the upload was complete;"
                                  " nothing was kept") from None
    response.headers["Location"] = f"/v1/uploads/{upload.id}"
    return _upload_out(upload)


@router.get("/uploads/{upload_id}", response_model=UploadOut)
def get_upload(upload_id: str, principal: Reader, engine: EngineDep) -> UploadOut:
    """An upload of the caller's tenant (and app, for an app's key)."""
    return _upload_out(engine.upload(principal.tenant_id, upload_id, principal.app_id))


def _upload_out(u: Upload) -> UploadOut:
    return UploadOut(id=u.id, name=u.name, size=u.size, sha256=u.sha256,
                     content_type=u.content_type, created_at=u.created_at,
                     expires_at=u.expires_at)


async def _in_thread(request: Request, write: Callable[[Iterator[bytes]], Upload],
                     source: AsyncIterator[bytes]) -> Upload:
    """Run `write(chunks)` in a worker thread, its chunks pulled from `source` on the event
    loop one at a time: the blob store's blocking writes never stop the loop, and the
    request is read only as fast as the store takes it."""

    async def next_chunk() -> bytes | None:
        try:
            return await source.__anext__()
        except StopAsyncIteration:
            return None

    def pulled() -> Iterator[bytes]:
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            if chunk:
                yield chunk

    limiter = getattr(request.app.state, "upload_limiter", None)
    if limiter is None:
        limiter = request.app.state.upload_limiter = anyio.CapacityLimiter(UPLOAD_THREADS)
    upload: Upload = await anyio.to_thread.run_sync(write, pulled(), limiter=limiter)
    return upload


class _MultipartFile:
    """The `file` part of a multipart/form-data body, parsed as the body arrives.

    Other parts are read past and dropped. Parser callbacks only queue events; the
    async methods hand them on, so at most one request chunk is held at a time.
    """

    def __init__(self, content_type: str, stream: AsyncIterator[bytes]) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise errors.InvalidInput("the multipart Content-Type has no boundary",
                                      [{"field": "content-type", "message": "no boundary"}])
        self.filename: str | None = None
        self.content_type: str | None = None
        self._stream = stream
        self._events: deque[tuple[str, bytes]] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_name = b""
        self._header_value = b""
        self._header_bytes = 0
        self._in_file = False
        self._found = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        })

    async def find_file(self) -> bool:
        """Read until the `file` part's headers; False when the body has none."""
        while True:
            while self._events:
                kind, _ = self._events.popleft()
                if kind == "file":
                    return True
            if not await self._feed():
                return False

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """The `file` part's data, as it arrives; InvalidInput if the body stops short."""
        while True:
            while self._events:
                kind, data = self._events.popleft()
                if kind == "end":
                    return
                yield data
            if not await self._feed():
                raise errors.InvalidInput("the multipart body ended inside the `file` part;"
                                          " the upload was incomplete")

    async def _feed(self) -> bool:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            return False
        try:
            if chunk:
                self._parser.write(chunk)
        except MultipartParseError as exc:
            raise errors.InvalidInput(f"malformed multipart body: {exc}") from None
        return True

    # -- parser callbacks --------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers = []
        self._header_bytes = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADERS:
            raise errors.InvalidInput(f"a multipart part has more than {MAX_PART_HEADERS}"
                                      " bytes of headers")

    def _on_header_end(self) -> None:
        self._headers.append((self._header_name.lower(), self._header_value))
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        headers = dict(self._headers)
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        if options.get(b"name") != b"file" or self._found:
            return
        self._found = self._in_file = True
        raw_name = options.get(b"filename")
        self.filename = raw_name.decode("utf-8", "replace") if raw_name else None
        raw_type = headers.get(b"content-type")
        self.content_type = raw_type.decode("latin-1") if raw_type else None
        self._events.append(("file", b""))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and end > start:
            self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._events.append(("end", b""))


def _guess_type(filename: str | None) -> str | None:
    return mimetypes.guess_type(filename)[0] if filename else None


# -- downloads ---------------------------------------------------------------------
@router.get("/blobs/{token}", response_class=StreamingResponse, responses={
    200: {"description": "the file, as an attachment, with the media type its name suggests",
          "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
    403: {"description": "expired or invalid token"}})
def download(token: str, request: Request, engine: EngineDep) -> StreamingResponse:
    """A blob, to whoever holds a valid token for it (no API key needed)."""
    key, filename = verify_blob_token(request.app.state.secret, token)
    try:
        f = engine.blobs.open(key)
    except FileNotFoundError:
        raise errors.NotFound("this file no longer exists") from None
    filename = filename or key.rsplit("/", 1)[-1]
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    media_type = (_MEDIA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0]
                  or files.DEFAULT_CONTENT_TYPE)
    headers = {
        "Content-Disposition": content_disposition(filename),
        # Served from the API's own origin: never let a browser render it as a page.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(_read(f), media_type=media_type, headers=headers,
                             background=BackgroundTask(f.close))


def _read(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(DOWNLOAD_CHUNK):
            yield chunk


def _absolute(request: Request, url: str) -> str:
    return str(request.base_url).rstrip("/") + url if url.startswith("/") else url


def _link(request: Request, engine: Engine, key: str, filename: str) -> files.Link:
    link = files.download_link(engine.blobs, request.app.state.secret, key, filename)
    return files.Link(_absolute(request, link.url), link.expires_at)


# -- jobs' files ---------------------------------------------------------------------
def _job(engine: Engine, principal: Principal, job_id: str) -> Job:
    """The caller's job; another tenant's or another app's answers like a missing one."""
    return engine.get(principal.tenant_id, job_id, app_id=principal.app_id)


@router.get("/jobs/{job_id}/errors/file", response_model=ErrorFileOut)
def error_file(job_id: str, request: Request, principal: Reader, engine: EngineDep,
               format: files.ErrorFormat = "csv") -> ErrorFileOut:
    """A link to every error of the job in one file, written now (CSV or JSONL)."""
    job = _job(engine, principal, job_id)
    written = files.write_error_file(engine, job.tenant_id, job.id, format)
    link = _link(request, engine, written.key, written.filename)
    return ErrorFileOut(url=link.url, expires_at=link.expires_at, count=written.count,
                        format=written.format)


@router.get("/jobs/{job_id}/artifacts", response_model=ArtifactList)
def list_artifacts(job_id: str, request: Request, principal: Reader,
                   engine: EngineDep) -> ArtifactList:
    """The job's result files, each with a download link."""
    job = _job(engine, principal, job_id)
    return ArtifactList(items=[_artifact_out(request, engine, a)
                               for a in engine.store.artifact_list(job.tenant_id, job.id)])


@router.get("/jobs/{job_id}/artifacts/{name}", response_model=ArtifactOut)
def get_artifact(job_id: str, name: str, request: Request, principal: Reader,
                 engine: EngineDep) -> ArtifactOut:
    """One result file of the job, with a download link."""
    job = _job(engine, principal, job_id)
    for artifact in engine.store.artifact_list(job.tenant_id, job.id):
        if artifact.name == name:
            return _artifact_out(request, engine, artifact)
    raise errors.NotFound(f"job {job_id!r} has no artifact {name!r}", job_id=job_id, name=name)


def _artifact_out(request: Request, engine: Engine, a: Artifact) -> ArtifactOut:
    link = _link(request, engine, a.blob_key, a.name)
    return ArtifactOut(name=a.name, size=a.size, sha256=a.sha256, content_type=a.content_type,
                       created_at=a.created_at, url=link.url, expires_at=link.expires_at)
