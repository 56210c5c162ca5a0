"""Plain data: jobs, their statuses and the transitions allowed between them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NoReturn, TypeVar


class JobStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELING = "canceling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED})
ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.CANCELING})

S = JobStatus
# The one table of allowed status changes. Everything that changes a status
# checks it here (engine) and repeats the source states in its guarded UPDATE
# (store), so an illegal change is refused rather than written.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELED, S.SKIPPED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELED, S.SKIPPED}),
    # running -> queued: retry after backoff, lease rescue, or a graceful release.
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELING, S.CANCELED, S.QUEUED}),
    # A job asked to cancel may still finish; its lease may also run out.
    S.CANCELING: frozenset({S.CANCELED, S.SUCCEEDED, S.FAILED}),
    # A manual retry re-queues a finished job as a new attempt on the same job.
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELED: frozenset({S.QUEUED}),
    S.SUCCEEDED: frozenset(),
    S.SKIPPED: frozenset(),
}


def can_transition(current: JobStatus, wanted: JobStatus) -> bool:
    return wanted in TRANSITIONS[current]


def sources_of(wanted: JobStatus) -> frozenset[JobStatus]:
    """Every status from which `wanted` may be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if wanted in targets)


class _FrozenEmpty(dict[str, Any]):
    """An empty dict that refuses every change.

    The stores give the jobs of a claim this one object for their empty stats,
    progress and labels, instead of three new dicts per job (about 0.2 KB of a
    held or finished job's 1.3 KB). Nothing changes a job's dicts in place (a
    JobContext copies them first); a change would raise rather than reach
    every other job."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("this empty mapping is shared by many jobs: copy it to change it")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse


EMPTY: dict[str, Any] = _FrozenEmpty()


@dataclass(slots=True)
class Tenant:
    id: str
    created_at: datetime
    retention_s: int | None = None


@dataclass(slots=True)
class Job:
    id: str
    tenant_id: str
    kind: str
    status: JobStatus
    input: Any
    seq: int = 0
    app_id: str | None = None
    name: str | None = None
    priority: int = 0
    result: Any = None
    error: dict[str, Any] | None = None
    stats: dict[str, int] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    parent_id: str | None = None
    attempt: int = 0
    max_attempts: int = 1
    run_at: datetime | None = None
    timeout_s: float | None = None
    retention_s: int | None = None
    idempotency_key: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(slots=True)
class NewJob:
    """What a submit asks for; the engine fills every field before the store sees it."""

    id: str
    tenant_id: str
    kind: str
    input: Any
    status: JobStatus
    run_at: datetime
    created_at: datetime
    max_attempts: int
    retention_s: int
    app_id: str | None = None
    name: str | None = None
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    parent_id: str | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None


class Outcome(enum.StrEnum):
    """How one attempt ended, as a worker reports it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # no attempts left, or not retryable
    RETRY = "retry"  # back to queued at `retry_at`
    CANCELED = "canceled"
    RELEASED = "released"  # worker shut down before running it; the attempt is given back


@dataclass(slots=True)
class Completion:
    """One attempt's end, fenced by (job_id, attempt)."""

    job_id: str
    attempt: int
    outcome: Outcome
    result: Any = None
    error: dict[str, Any] | None = None
    retry_at: datetime | None = None
    stats: dict[str, int] | None = None
    progress: dict[str, Any] | None = None


@dataclass(slots=True)
class ProgressUpdate:
    """A running attempt's counters and progress, written as absolute values."""

    job_id: str
    attempt: int
    stats: dict[str, int] | None = None
    progress: dict[str, Any] | None = None


@dataclass(slots=True)
class JobErrorRecord:
    """One per-record error of a job (a row that failed, an object that could not be read)."""

    id: str
    tenant_id: str
    job_id: str
    attempt: int
    message: str
    code: str | None = None
    source: str | None = None
    record: Any = None
    retry_data: Any = None
    resolved: bool = False
    retried: bool = False
    created_at: datetime | None = None


@dataclass(slots=True)
class Artifact:
    tenant_id: str
    job_id: str
    name: str
    blob_key: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime | None = None


@dataclass(slots=True)
class Attempt:
    """History of one attempt that did not end the job in success."""

    job_id: str
    attempt: int
    status: str
    error: dict[str, Any] | None
    started_at: datetime | None
    ended_at: datetime | None
    worker_id: str | None


@dataclass(slots=True)
class JobQuery:
    """Filters for listing jobs; every field is optional. Newest first."""

    tenant_id: str
    kinds: list[str] | None = None
    statuses: list[JobStatus] | None = None
    parent_id: str | None = None
    app_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created_at_gte: datetime | None = None
    created_at_lte: datetime | None = None
    finished_at_gte: datetime | None = None
    finished_at_lte: datetime | None = None
    stats_gte: dict[str, int] = field(default_factory=dict)
    stats_lte: dict[str, int] = field(default_factory=dict)
    page_size: int = 100
    after_id: str | None = None  # keyset: jobs with an id lower than this one


Item = TypeVar("Item")


@dataclass(slots=True)
class Page(Generic[Item]):
    """A page of a list (jobs, or the API's job records) and the token of the next one."""

    items: list[Item]
    next_page_token: str | None


@dataclass(slots=True)
class RescueResult:
    requeued: int = 0
    failed: int = 0
    canceled: int = 0


@dataclass(slots=True)
class PurgeResult:
    jobs: list[tuple[str, str]] = field(default_factory=list)  # (tenant_id, job_id)


# -- identity, uploads and webhooks --------------------------------------------
SCOPES = ("jobs:read", "jobs:write", "jobs:delete", "admin")


@dataclass(slots=True)
class AppRecord:
    """An application of a tenant; keys and jobs may belong to one."""

    id: str
    tenant_id: str
    name: str
    created_at: datetime | None = None


@dataclass(slots=True)
class ApiKey:
    """An API key as stored: its public prefix and a hash of the whole key, never the key."""

    id: str
    prefix: str
    secret_hash: str
    tenant_id: str
    scopes: list[str]
    app_id: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(slots=True)
class Upload:
    """A file uploaded for jobs to read; job input names it by id."""

    id: str
    tenant_id: str
    name: str
    size: int
    sha256: str
    content_type: str
    blob_key: str
    app_id: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(slots=True)
class Webhook:
    """A subscription of a tenant (or one of its apps) to job events."""

    id: str
    tenant_id: str
    url: str
    events: list[str]
    secret: str
    app_id: str | None = None
    description: str | None = None
    created_at: datetime | None = None
