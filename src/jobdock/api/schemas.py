"""Request and response bodies of the native API (/v1/jobs..., /v1/kinds).

Times are RFC 3339 strings in UTC with microseconds (`2026-01-02T03:04:05.000000Z`);
times sent may carry any offset but must carry one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Response
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import to_json

from jobdock.engine import KindSpec
from jobdock.model import Job, JobErrorRecord, JobStatus
from jobdock.store.records import job_record, rfc3339

__all__ = [
    "MAX_LABELS",
    "DeletedOut",
    "ErrorOut",
    "ErrorPageOut",
    "FieldError",
    "JobOut",
    "JobPage",
    "KindList",
    "KindOut",
    "Problem",
    "ResolveIn",
    "SubmitIn",
    "job_json",
    "job_page_response",
    "job_response",
    "rfc3339",
]

MAX_LABELS = 64
JOB_ID_PATTERN = r"^[0-9a-f]{24}$"
LABEL_NAME_PATTERN = r"^[A-Za-z0-9_.:/-]{1,128}$"
_INT32 = 2**31 - 1
MAX_DEPTH = 100
_TEN_YEARS_S = 10 * 366 * 86_400


def _json_time(value: datetime | None) -> datetime | str | None:
    """`value` for pydantic-core's `to_json`, which writes it as rfc3339 does: as is
    when in UTC with microseconds (stored times are; `to_json` then writes
    `...T03:04:05.000001Z`, faster than formatting it here), else rfc3339's text
    (`to_json` would drop a zero fraction and keep another offset)."""
    if value is None or (value.tzinfo is UTC and value.microsecond):
        return value
    return rfc3339(value)


Time = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time",
                    "examples": ["2026-01-02T03:04:05.000000Z"]}),
]
def _utc_time(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


def storable(value: Any) -> Any:
    """`value` if every store can keep it and give it back as JSON (PostgreSQL refuses
    what SQLite would keep and then fail to answer): no NaN or infinity,
    no NUL character or unpaired surrogate in a string, at most MAX_DEPTH levels deep."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("a string holds a NUL character (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds an unpaired surrogate") from None
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON")
        elif isinstance(item, dict):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list):
            stack.extend((part, depth + 1) for part in item)
    return value


JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=1024)]
InTime = Annotated[AwareDatetime, AfterValidator(_utc_time)]


# -- requests ----------------------------------------------------------------------
class SubmitIn(BaseModel):
    """A job to run. Fields left out take the kind's defaults."""

    # A misspelt field (`lables`) must fail, not be dropped silently.
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=200, description="a registered kind (GET /v1/kinds)")
    input: Any = Field(default_factory=dict,
                       description="the job's input; checked against the kind's input schema")
    name: str | None = Field(None, max_length=500, description="a name for people to read")
    labels: dict[LabelName, LabelValue] = Field(
        default_factory=dict, max_length=MAX_LABELS,
        description="string labels to filter on (`label.<name>=value`); names use letters,"
        " digits and `_ . : / -`")
    priority: int | None = Field(None, ge=-_INT32, le=_INT32,
                                 description="higher runs first within the tenant")
    run_at: InTime | None = Field(None, description="not before this time (RFC 3339)")
    max_attempts: int | None = Field(None, ge=1, le=1000)
    timeout_s: float | None = Field(None, gt=0, le=_TEN_YEARS_S,
                                    description="an attempt running longer is stopped")
    retention_s: int | None = Field(None, ge=0, le=_TEN_YEARS_S,
                                    description="keep the finished job this long")
    parent_id: JobId | None = Field(None, description="a job of the caller to attach this to")

    @field_validator("input", "name", "labels")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolved: StrictBool = Field(True,
                                 description="false marks a resolved error unresolved again")


# -- responses ---------------------------------------------------------------------
class JobOut(BaseModel):
    """A job, with every field it has."""

    id: str = Field(description="24 hex characters, sortable by creation time")
    tenant_id: str
    app_id: str | None
    seq: int = Field(description="per-tenant sequence number")
    kind: str
    name: str | None
    status: JobStatus
    priority: int
    input: Any
    result: Any
    error: dict[str, Any] | None = Field(description="`{code, message}` of the last failure")
    stats: dict[str, int] = Field(description="named counters: read, success, errors, ...")
    progress: dict[str, Any] = Field(description="`{done, total, message}`")
    labels: dict[str, str]
    parent_id: str | None
    attempt: int = Field(description="attempts started so far")
    max_attempts: int
    run_at: Time | None
    timeout_s: float | None
    retention_s: int | None
    idempotency_key: str | None
    created_at: Time | None
    started_at: Time | None
    finished_at: Time | None
    updated_at: Time | None
    expires_at: Time | None = Field(description="when the finished job is deleted")

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id, tenant_id=job.tenant_id, app_id=job.app_id, seq=job.seq, kind=job.kind,
            name=job.name, status=job.status, priority=job.priority, input=job.input,
            result=job.result, error=job.error, stats=job.stats, progress=job.progress,
            labels=job.labels, parent_id=job.parent_id, attempt=job.attempt,
            max_attempts=job.max_attempts, run_at=job.run_at, timeout_s=job.timeout_s,
            retention_s=job.retention_s, idempotency_key=job.idempotency_key,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            updated_at=job.updated_at, expires_at=job.expires_at)


def job_json(job: Job) -> dict[str, Any]:
    """`JobOut.of(job)` as values for pydantic-core's `to_json`, built without a model:
    GET answers with it (tests check both give the same bytes), as a model and FastAPI's
    validation of the answer were a third of the time. List pages come as records from
    the store (jobdock.store.records), the same values."""
    return job_record(job, _json_time)


def job_response(job: Job) -> Response:
    """A JobOut answer, encoded once (pydantic's encoder, as FastAPI's would be)."""
    return Response(_encoded(job_json(job)), media_type="application/json")


def job_page_response(records: list[dict[str, Any]], next_page_token: str | None) -> Response:
    """A JobPage answer from the store's job records (jobdock.store.records: JobOut's
    fields as JSON values), encoded once."""
    page = {"items": records, "next_page_token": next_page_token}
    return Response(_encoded(page), media_type="application/json")


def _encoded(value: Any) -> bytes:
    # NaN and infinities as null, as the models write them (to_json writes NaN).
    return to_json(value, inf_nan_mode="null")


class JobPage(BaseModel):
    items: list[JobOut]
    next_page_token: str | None = Field(
        description="pass as `page_token` (with the same filters) for the next page;"
        " null on the last page")


class ErrorOut(BaseModel):
    """One per-record error of a job."""

    id: str
    job_id: str
    attempt: int
    code: str | None
    message: str
    source: str | None
    record: Any
    retry_data: Any = Field(description="what an errors retry runs again")
    resolved: bool
    retried: bool
    created_at: Time | None

    @classmethod
    def of(cls, e: JobErrorRecord) -> ErrorOut:
        return cls(id=e.id, job_id=e.job_id, attempt=e.attempt, code=e.code, message=e.message,
                   source=e.source, record=e.record, retry_data=e.retry_data,
                   resolved=e.resolved, retried=e.retried, created_at=e.created_at)


class ErrorPageOut(BaseModel):
    items: list[ErrorOut]
    next_page_token: str | None


class DeletedOut(BaseModel):
    deleted: list[str] = Field(description="ids of the job and of its descendants")


class KindOut(BaseModel):
    name: str
    description: str
    max_attempts: int
    timeout_s: float | None
    retention_s: int | None
    priority: int
    input_schema: dict[str, Any] = Field(description="JSON schema of the kind's input")

    @classmethod
    def of(cls, spec: KindSpec) -> KindOut:
        return cls(name=spec.name, description=spec.description,
                   max_attempts=spec.max_attempts, timeout_s=spec.timeout_s,
                   retention_s=spec.retention_s, priority=spec.priority,
                   input_schema=spec.input_schema())


class KindList(BaseModel):
    items: list[KindOut]


class FieldError(BaseModel):
    field: str = Field(description="the field or parameter, e.g. `input.seconds`")
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str = Field(description="what went wrong and what to change")
    code: str = Field(description="a stable machine-readable error code")
    errors: list[FieldError] | None = Field(None, description="field-level problems")
