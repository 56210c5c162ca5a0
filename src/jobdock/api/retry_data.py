"""Reading and correcting the retry data of a per-record error.

    GET /v1/jobs/{id}/errors/{error_id}/retry-data    the record an errors retry runs again
    PUT /v1/jobs/{id}/errors/{error_id}/retry-data    replace it (a JSON object)

Retry data that names a blob of the job (`{"blob": key, "retry_id": ...}`, as the
`flow_import` kind keeps each failing record) is answered with the blob's content,
and a PUT rewrites that blob: the next errors retry runs the corrected record.
Other retry data is answered as it is stored; it cannot be changed (409), nor can
the data of an error that was already retried (its retry ran) or that has none.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

import jobdock.errors as errors
from jobdock.access import Principal
from jobdock.api.deps import EngineDep, Reader, Writer, visible_job
from jobdock.api.native import problem_responses
from jobdock.engine import Engine
from jobdock.ids import is_id
from jobdock.model import JobErrorRecord

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["errors"])

_ANY_JSON: dict[int | str, dict[str, Any]] = {200: {"description": "the retry data (JSON)",
                   "content": {"application/json": {"schema": {}}}}}


def _error(engine: Engine, principal: Principal, job_id: str,
           error_id: str) -> JobErrorRecord:
    job = visible_job(engine, principal, job_id)
    missing = errors.NotFound(f"job {job_id!r} has no error {error_id!r}", job_id=job_id,
                              error_id=error_id)
    if not is_id(error_id):
        raise missing
    number = int(error_id, 16)
    # Errors are listed after an id: start just before this one.
    found = engine.errors(job.tenant_id, job.id, f"{number - 1:024x}" if number else None, 1)
    if not found or found[0].id != error_id:
        raise missing
    return found[0]


def _blob_key(error: JobErrorRecord) -> str | None:
    """The blob that holds the error's retry data, when it is one of its job's."""
    data = error.retry_data
    key = data.get("blob") if isinstance(data, dict) else None
    if isinstance(key, str) and key.startswith(f"{error.tenant_id}/{error.job_id}/retry/"):
        return key
    return None


@router.get("/jobs/{job_id}/errors/{error_id}/retry-data", response_model=None,
            responses={**_ANY_JSON, **problem_responses(404)})
def get_retry_data(job_id: str, error_id: str, principal: Reader,
                   engine: EngineDep) -> JSONResponse:
    """The record an errors retry would run again for this error (null when none)."""
    error = _error(engine, principal, job_id, error_id)
    key = _blob_key(error)
    if key is None:
        return JSONResponse(error.retry_data)
    try:
        with engine.blobs.open(key) as f:
            return JSONResponse(json.loads(f.read()))
    except FileNotFoundError:
        raise errors.NotFound(f"the retry data of error {error_id!r} no longer exists",
                              job_id=job_id, error_id=error_id) from None


@router.put("/jobs/{job_id}/errors/{error_id}/retry-data", response_model=None,
            responses={**_ANY_JSON, **problem_responses(404, 409, described={
                409: "the error was retried already, or its retry data cannot be changed"})})
def put_retry_data(job_id: str, error_id: str,
                   body: Annotated[dict[str, Any], Body(description="the corrected record")],
                   principal: Writer, engine: EngineDep) -> JSONResponse:
    """Replace the record an errors retry runs again for this error."""
    error = _error(engine, principal, job_id, error_id)
    if error.retried:
        raise errors.Conflict(f"error {error_id!r} was retried already; correct the errors"
                              " of the retry's job instead", job_id=job_id, error_id=error_id)
    key = _blob_key(error)
    if key is None:
        raise errors.Conflict(f"the retry data of error {error_id!r} cannot be changed (it is"
                              " kept with the error, not as a file)", job_id=job_id,
                              error_id=error_id)
    try:
        data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except ValueError as exc:
        raise errors.InvalidInput(f"the retry data must be JSON: {exc}",
                                  [{"field": "body", "message": str(exc)}]) from None
    engine.blobs.put(key, data)
    return JSONResponse(body)
