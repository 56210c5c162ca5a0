"""The integrator.io dialect: its Job API under `/compat/integrator`.

    GET /v1/jobs                              flow, export and import jobs, filtered
    GET /v1/jobs/{_id}                        one of them
    GET /v1/jobs/{_id}/joberrors              its first 1,000 errors (also /jobErrors)
    GET /v1/jobs/{_id}/errorFile/signedURL    {"signedURL": ...}: every error, as a file

Jobs are the `flow` kind's: a `flow` job is `type: "flow"`, its `flow_export` child
`"export"` (`oIndex` 0) and its `flow_import` children `"import"` (`oIndex` 1, errors
retries included), each child with `_flowJobId` = the flow job. Counters are the
native ones: `numExport` exported, `numPagesProcessed` pages, `numSuccess` success,
`numError` errors, `numIgnore` ignored. A flow job carries no counters of its own:
it is shown with its steps' (export: numExport and numPagesProcessed; first import:
the others) and with a status made from theirs (running while a step is not
finished; then failed, canceled or completed as the steps ended).

Filters map to native ones: `_integrationId`, `_flowId`, `_exportId`, `_importId` and
`_bulkJobId` to the labels `integration_id`, `flow_id`, `export_id`, `import_id`,
`bulk_job_id`; `_flowJobId` to the parent; `type`/`type_in` to kinds;
`createdAt_gte/_lte` to creation times; `status` to statuses and `num*_gte/_lte` to
counters, in the store, when no flow job can be listed. Flow jobs' status and
counters are made from their steps', so with flow jobs in the list those filters,
like `_flowId_in` (several flow ids) and `retriable`, are checked on each job of a
page read from the store: a page may then hold fewer jobs than asked for, and the
`Link: <...>; rel="next"` header still leads on. Pages hold `pageSize` jobs (at most
1,000, the default), newest first; `pageToken` is the opaque cursor of the link.

`retriable` is true when the job (a flow: its first import) has an error that is
neither resolved nor retried and has retry data. It costs nothing for a job without
errors, and for one with errors a read of its errors, 1,000 at a time, until one
such error is found (usually the first read; all of them when every error was
retried or resolved).

Requests need `Authorization: Bearer <key>` with `jobs:read`. Errors are
`{"errors": [{"code": ..., "message": ...}]}`: 400 for a malformed filter value, 401
without a valid key, 403 without the scope, 404 for a job that is not one of the
caller's flow jobs, 503 when the database cannot be reached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import jobdock.errors as errors
from jobdock import files
from jobdock.access import Principal
from jobdock.api.deps import bearer_token, get_access, get_engine, visible_job
from jobdock.dialects.common import timestamp
from jobdock.engine import MAX_PAGE_SIZE, Engine
from jobdock.kinds.flow import RETRY_ID
from jobdock.model import Job, JobErrorRecord, JobQuery, JobStatus

PREFIX = "/compat/integrator"
MAX_JOB_ERRORS = 1000

TYPES = {"flow": "flow", "export": "flow_export", "import": "flow_import"}
KIND_TYPES = {kind: name for name, kind in TYPES.items()}
O_INDEX = {"flow_export": 0, "flow_import": 1}
STATUS: dict[JobStatus, str] = {
    JobStatus.SCHEDULED: "queued", JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "running", JobStatus.CANCELING: "running",
    JobStatus.SUCCEEDED: "completed", JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "canceled", JobStatus.SKIPPED: "canceled",
}
NATIVE_STATUSES: dict[str, list[JobStatus]] = {}
for _native, _word in STATUS.items():
    NATIVE_STATUSES.setdefault(_word, []).append(_native)
LABELS = {"_integrationId": "integration_id", "_flowId": "flow_id",
          "_exportId": "export_id", "_importId": "import_id", "_bulkJobId": "bulk_job_id"}
COUNTERS = {"numSuccess": "success", "numExport": "exported", "numIgnore": "ignored"}
_COUNT = re.compile(r"^\d{1,18}$")

router = APIRouter(prefix=PREFIX, tags=["compat: integrator"])


class BadParameter(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def problem(status: int, code: str, text: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    error: dict[str, str] = {"code": code, "message": text}
    if field:
        error["field"] = field
    return JSONResponse({"errors": [error]}, status_code=status, headers=headers)


def _answer(request: Request, work: Callable[[Engine, Principal], JSONResponse]) -> JSONResponse:
    """Authenticate, then answer with `work`, turning failures into the dialect's errors."""
    try:
        try:
            principal = get_access(request).authenticate(bearer_token(request))
        except errors.Unauthenticated as exc:
            return problem(401, "unauthorized", exc.message)
        if not principal.can("jobs:read"):
            return problem(403, "forbidden", "this API key lacks the 'jobs:read' scope")
        return work(get_engine(request), principal)
    except BadParameter as exc:
        return problem(400, "invalid_parameter", str(exc), exc.name)
    except errors.InvalidParameter as exc:
        return problem(400, "invalid_parameter", exc.message)
    except errors.JobNotFound as exc:
        return problem(404, "not_found", exc.message)
    except errors.StoreError:
        return problem(503, "unavailable", "the service is unavailable; try again later")


def _flow_job(engine: Engine, principal: Principal, job_id: str) -> Job:
    job = visible_job(engine, principal, job_id)
    if job.kind not in KIND_TYPES:
        raise errors.JobNotFound(job_id)
    return job


# -- routes ------------------------------------------------------------------------
@router.get("/v1/jobs", include_in_schema=False)
def list_jobs(request: Request) -> JSONResponse:
    """Flow, export and import jobs of the caller, newest first, filtered."""
    def work(engine: Engine, principal: Principal) -> JSONResponse:
        params = request.query_params
        query, checks = parse_filters(principal, params.multi_items())
        page = engine.list_jobs(query, params.get("pageToken") or None)
        out = []
        for job in page.items:
            rendered = render(engine, job)
            if all(check(job, rendered) for check in checks):
                out.append(rendered)
        headers = {}
        if page.next_page_token:
            kept = [(k, v) for k, v in params.multi_items() if k != "pageToken"]
            url = str(request.url.replace(query=urlencode(
                [*kept, ("pageToken", page.next_page_token)])))
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse(out, headers=headers)

    return _answer(request, work)


@router.get("/v1/jobs/{id}", include_in_schema=False)
def get_job(id: str, request: Request) -> JSONResponse:
    return _answer(request, lambda engine, principal: JSONResponse(
        render(engine, _flow_job(engine, principal, id))))


@router.get("/v1/jobs/{id}/joberrors", include_in_schema=False)
@router.get("/v1/jobs/{id}/jobErrors", include_in_schema=False)
def job_errors(id: str, request: Request) -> JSONResponse:
    """The job's errors in the order they were recorded, at most 1,000."""
    def work(engine: Engine, principal: Principal) -> JSONResponse:
        job = _flow_job(engine, principal, id)
        found = engine.errors(job.tenant_id, job.id, None, MAX_JOB_ERRORS)
        return JSONResponse([render_error(job, e) for e in found])

    return _answer(request, work)


@router.get("/v1/jobs/{id}/errorFile/signedURL", include_in_schema=False)
def error_file(id: str, request: Request) -> JSONResponse:
    """A link to a file of every error of the job (CSV, written now)."""
    def work(engine: Engine, principal: Principal) -> JSONResponse:
        job = _flow_job(engine, principal, id)
        written = files.write_error_file(engine, job.tenant_id, job.id, "csv")
        link = files.download_link(engine.blobs, request.app.state.secret, written.key,
                                   written.filename)
        url = (str(request.base_url).rstrip("/") + link.url if link.url.startswith("/")
               else link.url)
        return JSONResponse({"signedURL": url})

    return _answer(request, work)


# -- filters -------------------------------------------------------------------------
Check = Callable[[Job, dict[str, Any]], bool]


def parse_filters(principal: Principal,
                  items: list[tuple[str, str]]) -> tuple[JobQuery, list[Check]]:
    """The native query for the seed's filters, and checks for what it cannot ask."""
    values: dict[str, list[str]] = {}
    for key, item in items:
        values.setdefault(key, []).append(item)

    def one(name: str) -> str | None:
        found = values.get(name)
        return found[-1] if found else None

    query = JobQuery(tenant_id=principal.tenant_id, app_id=principal.app_id,
                     page_size=_page_size(one("pageSize")))
    kinds = set(TYPES.values())
    for name in ("type", "type_in"):
        given = values.get(name)
        if given:
            words = {w.strip() for v in given for w in v.split(",") if w.strip()}
            unknown = sorted(words - set(TYPES))
            if unknown or not words:
                raise BadParameter(name, f"unknown job type(s) {unknown or ['']}; use"
                                   f" {', '.join(TYPES)}")
            kinds &= {TYPES[w] for w in words}
    query.kinds = sorted(kinds)
    flows_listed = "flow" in kinds
    for name, label in LABELS.items():
        wanted_label = one(name)
        if wanted_label is not None:
            query.labels[label] = wanted_label
    if (parent := one("_flowJobId")) is not None:
        query.parent_id = parent
    checks: list[Check] = []
    flow_ids = {w.strip() for v in values.get("_flowId_in", []) for w in v.split(",")
                if w.strip()}
    if "_flowId_in" in values:
        checks.append(lambda job, _: job.labels.get("flow_id") in flow_ids)
    for name in ("createdAt_gte", "createdAt_lte"):
        value = one(name)
        if value is not None:
            setattr(query, "created_at_" + name[-3:], _moment(name, value))
    status = one("status")
    if status is not None:
        if status not in NATIVE_STATUSES:
            raise BadParameter("status", f"unknown status {status!r}; use"
                               f" {', '.join(NATIVE_STATUSES)}")
        if flows_listed:
            checks.append(lambda _, out: out["status"] == status)
        else:
            query.statuses = list(NATIVE_STATUSES[status])
    for field, counter in COUNTERS.items():
        for bound in ("gte", "lte"):
            name = f"{field}_{bound}"
            value = one(name)
            if value is None:
                continue
            if not _COUNT.match(value.strip()):
                raise BadParameter(name, f"{value!r} is not a whole number")
            number = int(value)
            if flows_listed:
                checks.append(_counter_check(field, bound, number))
            else:
                getattr(query, f"stats_{bound}")[counter] = number
    retriable = one("retriable")
    if retriable is not None:
        if retriable.lower() not in ("true", "false"):
            raise BadParameter("retriable", f"{retriable!r} is not true or false")
        wanted = retriable.lower() == "true"
        checks.append(lambda _, out: out["retriable"] is wanted)
    return query, checks


def _counter_check(field: str, bound: str, number: int) -> Check:
    if bound == "gte":
        return lambda _, out: int(out[field]) >= number
    return lambda _, out: int(out[field]) <= number


def _page_size(value: str | None) -> int:
    if value is None:
        return MAX_PAGE_SIZE
    if not _COUNT.match(value.strip()) or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise BadParameter("pageSize", f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(value)


def _moment(name: str, value: str) -> datetime:
    text = value.strip().replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a date (ISO 8601, e.g."
                           " 2017-10-24T00:55:49.128Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# -- rendering -------------------------------------------------------------------------
def render(engine: Engine, job: Job) -> dict[str, Any]:
    """A job as integrator.io shows it."""
    kind = job.kind
    status = STATUS[job.status]
    stats = job.stats
    pages_from = stats
    started, ended = job.started_at, job.finished_at if job.terminal else None
    errors_of: Job | None = job
    if kind == "flow":
        steps = {c.kind: c for c in sorted(engine.children(job.tenant_id, job.id),
                                           key=lambda c: c.id, reverse=True)
                 if "retry_of" not in c.labels}
        export, imported = steps.get("flow_export"), steps.get("flow_import")
        status, ended = _flow_status(job, export, imported)
        stats = {**(export.stats if export else {}),
                 **{k: v for k, v in (imported.stats if imported else {}).items()
                    if k != "pages"}}
        pages_from = export.stats if export else {}
        errors_of = imported
    out: dict[str, Any] = {"_id": job.id, "type": KIND_TYPES.get(kind, kind)}
    if kind == "flow_import":
        out["_importId"] = job.labels.get("import_id", "")
    elif kind == "flow_export":
        out["_exportId"] = job.labels.get("export_id", "")
    if kind != "flow" and job.parent_id:
        out["_flowJobId"] = job.parent_id
    out["_flowId"] = job.labels.get("flow_id", "")
    out["_integrationId"] = job.labels.get("integration_id", "")
    if started is not None:
        out["startedAt"] = timestamp(started)
    if ended is not None:
        out["endedAt"] = timestamp(ended)
    out.update({
        "status": status,
        "numError": stats.get("errors", 0),
        "numSuccess": stats.get("success", 0),
        "numIgnore": stats.get("ignored", 0),
        "numExport": stats.get("exported", 0),
        "numPagesProcessed": pages_from.get("pages", 0),
    })
    if kind in O_INDEX:
        out["oIndex"] = O_INDEX[kind]
    out["retriable"] = errors_of is not None and retriable(engine, errors_of)
    out["createdAt"] = timestamp(job.created_at)
    out["lastModified"] = timestamp(job.updated_at)
    return out


def _flow_status(job: Job, export: Job | None,
                 imported: Job | None) -> tuple[str, datetime | None]:
    steps = [s for s in (export, imported) if s is not None]
    if not steps or any(not s.terminal for s in steps) or (
            export is not None and export.status is JobStatus.SUCCEEDED and imported is None):
        if job.terminal and job.status is not JobStatus.SUCCEEDED:
            return STATUS[job.status], job.finished_at
        if job.status is JobStatus.SUCCEEDED or any(s.started_at for s in steps):
            return "running", None
        return STATUS[job.status], None
    ended = max((s.finished_at for s in steps if s.finished_at), default=job.finished_at)
    for native in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED):
        if any(s.status is native for s in steps):
            return STATUS[native], ended
    return "completed", ended


def retriable(engine: Engine, job: Job) -> bool:
    """Whether the job has an error neither resolved nor retried, with retry data."""
    if not job.stats.get("errors"):
        return False
    after: str | None = None
    while True:
        page = engine.errors(job.tenant_id, job.id, after, MAX_JOB_ERRORS)
        if any(not e.resolved and not e.retried and e.retry_data is not None for e in page):
            return True
        if len(page) < MAX_JOB_ERRORS:
            return False
        after = page[-1].id


def render_error(job: Job, e: JobErrorRecord) -> dict[str, Any]:
    """An error record as integrator.io shows it."""
    record = e.record if isinstance(e.record, dict) else {}
    retry = e.retry_data if isinstance(e.retry_data, dict) else {}
    field = record.get("field") or ""
    spec = job.input.get("import", {}) if isinstance(job.input, dict) else {}
    mapping = spec.get("mapping", {}) if isinstance(spec, dict) else {}
    return {
        "resolve": e.resolved,
        "retry": e.retried,
        "createdAt": timestamp(e.created_at),
        "code": e.code or "",
        "extract": str(mapping.get(field, field)) if field else "",
        "generate": str(field),
        "extracted": _json_text(record.get("extracted")),
        "generated": _json_text(record.get("mapped")),
        "message": e.message,
        "source": e.source or "",
        "exportDataURI": "",
        "importDataURI": "",
        "_retryId": str(retry.get(RETRY_ID, "")),
        "_jobId": e.job_id,
    }


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
