"""The native job routes (/v1/jobs..., /v1/kinds).

    POST   /v1/jobs                              submit (Idempotency-Key) -> 201, or 200 replayed
    GET    /v1/jobs                              list, newest first, filtered, keyset pages
    GET    /v1/jobs/{id}                         one job; ?wait=S long-polls until it is terminal
    GET    /v1/jobs/{id}/events                  Server-Sent Events until it is terminal
    POST   /v1/jobs/{id}/cancel                  cancel (?hard=true stops a running job at once)
    POST   /v1/jobs/{id}/retry                   run a failed or canceled job again
    DELETE /v1/jobs/{id}                         delete with its children, errors and files
    GET    /v1/jobs/{id}/children                child jobs, paged
    GET    /v1/jobs/{id}/errors                  per-record errors, paged
    PATCH  /v1/jobs/{id}/errors/{error_id}       resolve (or unresolve) one error
    POST   /v1/jobs/{id}/errors/retry            re-run the unresolved errors as a new job
    GET    /v1/kinds                             registered kinds and their input schema

Routes call the engine only. A key sees its tenant's jobs, an app's key its app's
jobs; any other job id answers exactly as a missing one (404, same body).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

import jobdock.errors as errors
from jobdock.access import Principal
from jobdock.api.deps import Deleter, EngineDep, Reader, Writer, get_engine, visible_job
from jobdock.api.pagination import (
    LIST_PARAMETERS,
    PageTokens,
    bad_parameter,
    job_query,
)
from jobdock.api.schemas import (
    DeletedOut,
    ErrorOut,
    ErrorPageOut,
    JobOut,
    JobPage,
    KindList,
    KindOut,
    ResolveIn,
    SubmitIn,
    job_page_response,
    job_response,
)
from jobdock.engine import MAX_PAGE_SIZE, Engine, SubmitRequest
from jobdock.model import Job, JobQuery

__all__ = ["router"]

router = APIRouter(prefix="/v1")

WAIT_POLL_S = 0.2  # how often a long-poll reads the job again
EVENTS_POLL_S = 0.25  # how often an event stream reads the job again
KEEPALIVE_S = 15.0  # a comment line on a quiet event stream, so proxies keep it open
MAX_WAIT_S = 60.0


def problem_responses(*statuses: int,
                      described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these error statuses, as problem+json."""
    descriptions = {
        400: "a query parameter is invalid (named in `errors`)",
        401: "no valid API key",
        403: "the key lacks the scope",
        404: "no such job (another tenant's or app's job answers the same)",
        409: "the job's state does not allow it",
        413: "the body is over the size limit",
        415: "the body is not JSON",
        422: "the body is invalid (fields named in `errors`)",
        **(described or {}),
    }
    return {status: {"description": descriptions[status], "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in statuses}


_READ = problem_responses(400, 404)
_WRITE = problem_responses(404, 409)


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


def _tokens(request: Request) -> PageTokens:
    tokens: PageTokens | None = getattr(request.app.state, "page_tokens", None)
    if tokens is None:
        tokens = request.app.state.page_tokens = PageTokens(request.app.state.secret)
    return tokens


def _page_size(value: int, engine: Engine) -> int:
    if value > engine.settings.max_page_size:
        raise bad_parameter("page_size", f"must be between 1 and {engine.settings.max_page_size}")
    return value


PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")]
PageToken = Annotated[str | None, Query(
    max_length=2048, description="the `next_page_token` of the previous page")]


# -- submit ------------------------------------------------------------------------
_LOCATION = {"Location": {"description": "the job's URL", "schema": {"type": "string"}}}
_REPLAYED = {"Idempotent-Replayed": {"description": "`true`: an earlier submit's job",
                                     "schema": {"type": "string", "enum": ["true"]}}}


@router.post("/jobs", status_code=201, response_model=JobOut, tags=["jobs"],
             responses={201: {"description": "submitted", "headers": _LOCATION},
                        200: {"model": JobOut, "description": "replayed: the job submitted"
                              " earlier with this Idempotency-Key and the same body",
                              "headers": {**_LOCATION, **_REPLAYED}},
                        **problem_responses(409, 413, 415, 422)})
def submit_job(
    body: SubmitIn, response: Response, principal: Writer, engine: EngineDep,
    idempotency_key: Annotated[str | None, Header(
        min_length=1, max_length=255,
        description="submitting again with the same key and body returns the same job")] = None,
) -> JobOut:
    """Submit a job. `Location` names it; it runs when a worker claims it."""
    _check_input(engine, body)
    if body.parent_id is not None:
        try:
            visible_job(engine, principal, body.parent_id)
        except errors.JobNotFound:
            raise errors.InvalidInput(f"parent job {body.parent_id!r} not found", [
                {"field": "parent_id", "message": "no such job"}]) from None
    request = SubmitRequest(
        kind=body.kind, input=body.input, name=body.name, labels=body.labels,
        priority=body.priority, run_at=body.run_at, max_attempts=body.max_attempts,
        timeout_s=body.timeout_s, retention_s=body.retention_s, parent_id=body.parent_id,
        app_id=principal.app_id, idempotency_key=idempotency_key)
    try:
        [result] = engine.submit_results([request], principal.tenant_id)
    except errors.IdempotencyConflict as exc:
        raise _key_conflict(engine, principal, idempotency_key or "", exc) from None
    job = result.job
    if not result.created:
        if job.app_id != principal.app_id:
            raise _key_used_elsewhere(idempotency_key or "")
        differing = _differing_fields(body, job)
        if differing:
            raise errors.IdempotencyConflict(idempotency_key or "", job.id, " and ".join(differing))
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.of(job)


def _check_input(engine: Engine, body: SubmitIn) -> None:
    """The kind must exist and the input fit its schema; fields are named `input.<field>`."""
    try:
        engine.validate_input(body.kind, body.input)
    except errors.UnknownKind as exc:
        invalid = errors.InvalidInput(exc.message, [{"field": "kind", "message": exc.message}])
        invalid.code = exc.code
        raise invalid from None
    except errors.InvalidInput as exc:
        fields = [{**e, "field": "input" if e["field"] == "input" else f"input.{e['field']}"}
                  for e in exc.errors]
        raise errors.InvalidInput(exc.message, fields) from None


def _differing_fields(body: SubmitIn, job: Job) -> list[str]:
    """Fields of a replayed submit that differ from the job of its key (kind and input
    are compared by the store)."""
    differ = [name for name in ("name", "labels", "parent_id")
              if getattr(body, name) != getattr(job, name)]
    differ += [name for name in ("priority", "timeout_s", "retention_s")
               if getattr(body, name) is not None and getattr(body, name) != getattr(job, name)]
    return differ


def _key_used_elsewhere(key: str) -> errors.Conflict:
    return errors.Conflict(f"idempotency key {key!r} is already used by another app of this"
                           " tenant; use a new key", idempotency_key=key)


def _key_conflict(engine: Engine, principal: Principal, key: str,
                  exc: errors.IdempotencyConflict) -> errors.Conflict:
    """The store's conflict, unless it names a job the caller may not see."""
    try:
        visible_job(engine, principal, str(exc.details.get("job_id", "")))
    except errors.JobNotFound:
        return _key_used_elsewhere(key)
    return exc


# -- read --------------------------------------------------------------------------
_LIST_DOC = [{"name": p.name, "in": "query", "required": False, "schema": p.schema,
              "description": p.description} for p in LIST_PARAMETERS]


@router.get("/jobs", response_model=JobPage, tags=["jobs"], responses=problem_responses(400),
            openapi_extra={"parameters": _LIST_DOC})
def list_jobs(request: Request, principal: Reader) -> Response:
    """Jobs, newest first. Besides the parameters below: `label.<name>=value` (any number)
    and `stats.<name>_gte` / `stats.<name>_lte` (integers). An unknown parameter is a 400."""
    engine = get_engine(request)  # not a dependency: one fewer for FastAPI to solve
    query, signed = job_query(principal.tenant_id, request.query_params.multi_items(),
                              engine.settings.max_page_size)
    tokens = _tokens(request)
    token = tokens.open(signed)
    if principal.app_id is not None:
        if query.app_id not in (None, principal.app_id):
            return job_page_response([], None)  # no other app's job is visible
        query.app_id = principal.app_id
    page = engine.list_records(query, token)
    return job_page_response(page.items, tokens.sign(page.next_page_token))


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=_READ)
async def get_job(
    job_id: str, request: Request, principal: Reader,
    wait: Annotated[float | None, Query(
        gt=0, le=MAX_WAIT_S, description="wait up to this many seconds for the job to"
        " finish; answers as soon as it is terminal")] = None,
) -> Response:
    """One job; with `wait`, a long-poll that returns when it is terminal or time is up."""
    engine = get_engine(request)  # not a dependency: one fewer for FastAPI to solve
    job = await run_in_threadpool(visible_job, engine, principal, job_id)
    if wait is not None:
        deadline = time.monotonic() + wait
        while not job.terminal and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(WAIT_POLL_S, left))
            if await request.is_disconnected():
                break
            job = await run_in_threadpool(visible_job, engine, principal, job_id)
    return job_response(job)


@router.get("/jobs/{job_id}/events", response_class=EventStream, tags=["jobs"],
            responses={200: {"description": "`event: job` with the job as JSON whenever its"
                             " status, progress or counters change; the stream ends after a"
                             " terminal status (`event: gone` if the job is deleted)",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **_READ})
async def job_events(job_id: str, principal: Reader, engine: EngineDep) -> EventStream:
    """Server-Sent Events of one job."""
    job = await run_in_threadpool(visible_job, engine, principal, job_id)
    return EventStream(_events(engine, principal, job),
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(engine: Engine, principal: Principal, job: Job) -> AsyncIterator[str]:
    last: tuple[Any, ...] | None = None
    sent = 0
    quiet_since = time.monotonic()
    while True:
        seen = (job.status, job.attempt, job.stats, job.progress, job.error)
        if seen != last:
            last, sent, quiet_since = seen, sent + 1, time.monotonic()
            yield f"event: job\nid: {sent}\ndata: {JobOut.of(job).model_dump_json()}\n\n"
        elif time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        if job.terminal:
            return
        await asyncio.sleep(EVENTS_POLL_S)
        try:
            job = await run_in_threadpool(visible_job, engine, principal, job.id)
        except errors.JobNotFound:
            yield f'event: gone\ndata: {{"id": "{job.id}"}}\n\n'
            return
        except errors.StoreError:
            continue  # the database may come back; the stream waits for it


@router.get("/jobs/{job_id}/children", response_model=JobPage, tags=["jobs"],
            responses=_READ)
def job_children(job_id: str, request: Request, principal: Reader, engine: EngineDep,
                 page_size: PageSize = 100, page_token: PageToken = None) -> Response:
    """The job's child jobs, newest first."""
    visible_job(engine, principal, job_id)
    tokens = _tokens(request)
    query = JobQuery(tenant_id=principal.tenant_id, parent_id=job_id, app_id=principal.app_id,
                     page_size=_page_size(page_size, engine))
    page = engine.list_records(query, tokens.open(page_token))
    return job_page_response(page.items, tokens.sign(page.next_page_token))


# -- act ---------------------------------------------------------------------------
@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"], responses=_WRITE)
def cancel_job(job_id: str, principal: Writer, engine: EngineDep,
               hard: Annotated[bool, Query(description="end a running job at once instead of"
                                           " asking it to stop")] = False) -> JobOut:
    """Cancel: a waiting job at once; a running one is asked to stop (status canceling)."""
    visible_job(engine, principal, job_id)
    return JobOut.of(engine.cancel(principal.tenant_id, job_id, hard=hard))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"], responses=_WRITE)
def retry_job(job_id: str, principal: Writer, engine: EngineDep) -> JobOut:
    """Run a failed or canceled job again, as a new attempt of the same job."""
    visible_job(engine, principal, job_id)
    return JobOut.of(engine.retry(principal.tenant_id, job_id))


@router.delete("/jobs/{job_id}", response_model=DeletedOut, tags=["jobs"],
               responses=problem_responses(404))
def delete_job(job_id: str, principal: Deleter, engine: EngineDep) -> DeletedOut:
    """Delete the job with its descendants, their errors and their files. A running
    job's worker finds its lease gone and its result refused."""
    visible_job(engine, principal, job_id)
    return DeletedOut(deleted=engine.delete(principal.tenant_id, job_id))


# -- per-record errors -------------------------------------------------------------
@router.get("/jobs/{job_id}/errors", response_model=ErrorPageOut, tags=["errors"],
            responses=_READ)
def job_errors(job_id: str, request: Request, principal: Reader, engine: EngineDep,
               page_size: PageSize = 100, page_token: PageToken = None) -> ErrorPageOut:
    """The job's per-record errors, oldest first."""
    tokens = _tokens(request)
    page = engine.error_page(principal.tenant_id, job_id, _page_size(page_size, engine),
                             tokens.open(page_token), app_id=principal.app_id)
    return ErrorPageOut(items=[ErrorOut.of(e) for e in page.items],
                        next_page_token=tokens.sign(page.next_page_token))


@router.post("/jobs/{job_id}/errors/retry", status_code=201, response_model=JobOut,
             tags=["errors"], responses={
                 201: {"description": "the new job", "headers": _LOCATION},
                 **problem_responses(404, 409, 422)})
def retry_errors(job_id: str, response: Response, principal: Writer,
                 engine: EngineDep) -> JobOut:
    """Re-run the unresolved errors' records: a new job of the same kind whose input is
    the job's input plus `retry_of` and `records` (the errors' retry data), labelled
    `retry_of`. Those errors are marked retried."""
    job = engine.retry_errors(principal.tenant_id, job_id, app_id=principal.app_id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.of(job)


@router.patch("/jobs/{job_id}/errors/{error_id}", response_model=ErrorOut, tags=["errors"],
              responses=problem_responses(404, 413, 415, 422))
def resolve_error(job_id: str, error_id: str, body: ResolveIn, principal: Writer,
                  engine: EngineDep) -> ErrorOut:
    """Mark one error resolved (`{"resolved": true}`) or unresolved again."""
    return ErrorOut.of(engine.resolve_error(principal.tenant_id, job_id, error_id,
                                            body.resolved, app_id=principal.app_id))


# -- kinds -------------------------------------------------------------------------
@router.get("/kinds", response_model=KindList, tags=["kinds"])
def list_kinds(principal: Reader, engine: EngineDep) -> KindList:
    """The job kinds this server runs, with the JSON schema of their input."""
    return KindList(items=[KindOut.of(engine.kinds[name]) for name in sorted(engine.kinds)])

