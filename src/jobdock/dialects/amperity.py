"""The Amperity dialect: `GET /compat/amperity/api/ingest/jobs/{id}`.

An ingest job (kind `ingest`) is rendered as Amperity's ingest job: `id` is
`isj-` + the job's id, `workflow_id` the input's `workflow_id` or else `wf-` +
the job's id, and `tables[]` its `ingest_table` children in the order of the
input, with their own state, times and counters, and per-file counters. A
table whose child is not submitted yet is shown `scheduled` (or as its parent
ended, when it failed or was canceled before submitting it).

Requests need `Authorization: Bearer <key>` (a key with `jobs:read`), an
`amperity-tenant` header naming the key's tenant, and a supported version in
the `api-version` header or the `api_version` query parameter. Errors are
`{"message": "..."}` (the document shows no error body): 400 for a missing or
unsupported version, 401 without a valid key or tenant header, 403 for another
tenant or a key without `jobs:read`, 404 for an id that is not one of the
caller's ingest jobs, 503 when the database cannot be reached.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import jobdock.errors as errors
from jobdock.api.deps import bearer_token, get_access, get_engine, visible_job
from jobdock.dialects.common import timestamp
from jobdock.engine import Engine
from jobdock.model import Job, JobStatus

PREFIX = "/compat/amperity"
SUPPORTED_VERSIONS = ("2024-04-01",)
JOB_PREFIX = "isj-"
WORKFLOW_PREFIX = "wf-"

# Amperity's states (lower case, as its sample) for each jobdock status.
STATES: dict[JobStatus, str] = {
    JobStatus.SCHEDULED: "scheduled",
    JobStatus.QUEUED: "scheduled",
    JobStatus.RUNNING: "running",
    JobStatus.CANCELING: "stopping",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "canceled",
    JobStatus.SKIPPED: "skipped",
}

router = APIRouter(prefix=PREFIX, tags=["compat: amperity"])


def message(status: int, text: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return JSONResponse({"message": text}, status_code=status, headers=headers)


@router.get("/api/ingest/jobs/{id}", include_in_schema=False)
def get_ingest_job(id: str, request: Request) -> JSONResponse:
    """One ingest job of the caller's tenant, as Amperity renders it."""
    try:
        try:
            principal = get_access(request).authenticate(bearer_token(request))
        except errors.Unauthenticated as exc:
            return message(401, exc.message)
        tenant = request.headers.get("amperity-tenant")
        if not tenant:
            return message(401, "the amperity-tenant header is required: name your tenant")
        if tenant != principal.tenant_id:
            return message(403, f"this API key does not belong to tenant {tenant!r}")
        if not principal.can("jobs:read"):
            return message(403, "this API key lacks the 'jobs:read' scope")
        version = request.headers.get("api-version") or request.query_params.get("api_version")
        if version not in SUPPORTED_VERSIONS:
            said = "is required" if not version else f"{version!r} is not supported"
            return message(400, f"an API version {said}: send the api-version header or the"
                           f" api_version parameter; supported versions:"
                           f" {', '.join(SUPPORTED_VERSIONS)}")
        engine = get_engine(request)
        job_id = id.removeprefix(JOB_PREFIX) if id.startswith(JOB_PREFIX) else ""
        try:
            job = visible_job(engine, principal, job_id) if job_id else None
        except errors.JobNotFound:
            job = None
        if job is None or job.kind != "ingest":
            return message(404, f"ingest job {id!r} not found")
        return JSONResponse(render(engine, job, engine.children(job.tenant_id, job.id)))
    except errors.StoreError:
        return message(503, "the service is unavailable; try again later")


def render(engine: Engine, job: Job, children: list[Job]) -> dict[str, Any]:
    """The ingest job `job`, with its `ingest_table` children, in Amperity's shape."""
    spec = job.input if isinstance(job.input, dict) else {}
    by_table = {c.input.get("table_name"): c for c in children
                if c.kind == "ingest_table" and isinstance(c.input, dict)}
    tables = [_table(engine, job, t, by_table.get(t.get("table_name")))
              for t in spec.get("tables", [])]
    return {"id": JOB_PREFIX + job.id,
            "workflow_id": spec.get("workflow_id") or WORKFLOW_PREFIX + job.id,
            "tables": tables}


def _table(engine: Engine, job: Job, spec: dict[str, Any], child: Job | None) -> dict[str, Any]:
    if child is None:
        state = {JobStatus.FAILED: "failed", JobStatus.CANCELED: "canceled",
                 JobStatus.CANCELING: "stopping"}.get(job.status, "scheduled")
        stats: dict[str, int] = {}
        files = [(file_id, _upload_name(engine, job, file_id))
                 for file_id in spec.get("files", [])]
        started = ended = None
    else:
        state = STATES[child.status]
        stats = child.stats
        files = [(f.get("file_id"), f.get("name")) for f in child.input.get("files", [])]
        started, ended = child.started_at, child.finished_at if child.terminal else None
    return {
        "errors": stats.get("errors", 0),
        "feed_id": spec.get("feed_id"),
        "read": stats.get("read", 0),
        "rejected": stats.get("rejected", 0),
        "updated": stats.get("updated", 0),
        "inserted": stats.get("inserted", 0),
        "started_at": timestamp(started),
        "ended_at": timestamp(ended),
        "state": state,
        "files": [{"file_id": file_id, "name": name,
                   "read": stats.get(f"file_{index}_read", 0),
                   "errors": stats.get(f"file_{index}_errors", 0)}
                  for index, (file_id, name) in enumerate(files)],
        "table_name": spec.get("table_name"),
        "job_id": JOB_PREFIX + job.id,
    }


def _upload_name(engine: Engine, job: Job, upload_id: str) -> str:
    try:
        return engine.upload(job.tenant_id, upload_id, job.app_id).name
    except errors.NotFound:
        return upload_id
