"""The store interface: every read and write of job data goes through it.

Methods are noun-first (`job_claim_many`, `tenant_create`) and take `now`
where time matters, so that tests can fix the clock; `now=None` means the
database's clock. Implementations translate driver errors into
`jobdock.errors.StoreError` subclasses at this boundary.

Guarded writes: every method that changes a job's status names the statuses
it may change it from in its WHERE clause and reports whether it happened, so
that a race (a rescue against a completion, a cancel against a claim) is
decided by the database and never overwrites a newer state.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobdock.model import (
    TERMINAL,
    ApiKey,
    AppRecord,
    Artifact,
    Attempt,
    Completion,
    Job,
    JobErrorRecord,
    JobQuery,
    JobStatus,
    NewJob,
    ProgressUpdate,
    RescueResult,
    Tenant,
    Upload,
    Webhook,
)
from jobdock.store.records import Record


@dataclass(slots=True)
class HeartbeatResult:
    """What a heartbeat learned about the jobs a worker holds."""

    lost: set[str] = field(default_factory=set)  # no longer this worker's attempt: stop them
    canceling: set[str] = field(default_factory=set)  # cancel requested: tell the job


@dataclass(slots=True)
class InsertResult:
    job: Job
    created: bool  # False when an idempotency key matched an existing job


class QueueWaiter(abc.ABC):
    """Blocks an idle worker until jobs may be available (a hint, never the truth)."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when woken by a hint of new jobs."""

    @abc.abstractmethod
    def close(self) -> None: ...


class Store(abc.ABC):
    backend: str

    # -- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> list[int]:
        """Apply pending migrations (safe to run twice and concurrently); return those applied."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def now(self) -> datetime:
        """The database's clock."""

    # -- tenants -----------------------------------------------------------
    @abc.abstractmethod
    def tenant_create(self, tenant_id: str, retention_s: int | None = None) -> Tenant:
        """Create a tenant; AlreadyExists if it exists."""

    @abc.abstractmethod
    def tenant_get(self, tenant_id: str) -> Tenant | None: ...

    @abc.abstractmethod
    def tenant_list(self) -> list[Tenant]: ...

    # -- jobs: submit and read ---------------------------------------------
    @abc.abstractmethod
    def job_insert_many(self, jobs: Sequence[NewJob]) -> list[InsertResult]:
        """Insert jobs in one transaction (all or none), assigning per-tenant `seq`.

        A job whose (tenant, idempotency_key) exists returns the existing job with
        created=False when the input is equal, and raises IdempotencyConflict when
        it differs. An unknown tenant raises TenantNotFound.
        """

    @abc.abstractmethod
    def job_get(self, tenant_id: str, job_id: str, now: datetime | None = None) -> Job | None:
        """The job, or None when it does not exist, belongs to another tenant or has expired."""

    @abc.abstractmethod
    def job_list(self, query: JobQuery, now: datetime | None = None) -> list[Job]:
        """Up to `query.page_size` jobs, newest (highest id) first, below `query.after_id`."""

    @abc.abstractmethod
    def job_list_records(self, query: JobQuery, now: datetime | None = None) -> list[Record]:
        """job_list's jobs as records (store/records.py), the native API's JSON shape."""

    @abc.abstractmethod
    def job_attempts(self, tenant_id: str, job_id: str) -> list[Attempt]:
        """The recorded history of attempts that did not end the job in success."""

    @abc.abstractmethod
    def job_counts(self, tenant_id: str | None = None,
                   now: datetime | None = None) -> dict[tuple[str, JobStatus], int]:
        """How many unexpired jobs there are per (kind, status), of one tenant or of all."""

    # -- jobs: the queue ---------------------------------------------------
    @abc.abstractmethod
    def job_claim_many(
        self,
        worker_id: str,
        kinds: Sequence[str],
        limit: int,
        lease_s: float,
        now: datetime | None = None,
    ) -> list[Job]:
        """Claim up to `limit` due queued jobs of `kinds`, round robin across tenants.

        Claimed jobs become running with `attempt` incremented, `started_at` and a
        lease until now + lease_s.
        """

    @abc.abstractmethod
    def job_heartbeat_many(
        self, claims: Sequence[tuple[str, int]], lease_s: float, now: datetime | None = None
    ) -> HeartbeatResult:
        """Extend the leases of (job_id, attempt) pairs the caller still holds."""

    @abc.abstractmethod
    def job_progress_many(self, updates: Sequence[ProgressUpdate]) -> None:
        """Write counters and progress of running attempts (fenced on job id and attempt)."""

    @abc.abstractmethod
    def job_complete_many(
        self, completions: Sequence[Completion], now: datetime | None = None
    ) -> set[str]:
        """End attempts, fenced on (id, attempt, running or canceling); return accepted ids.

        Outcomes: SUCCEEDED, FAILED and CANCELED end the job and set `expires_at`
        to now + its retention; RETRY re-queues it at `retry_at` (a job asked to
        cancel becomes canceled instead); RELEASED gives the attempt back and
        re-queues it now. A refused completion (the attempt lost its lease) is
        recorded in the job's attempt history and changes nothing else.
        """

    @abc.abstractmethod
    def job_rescue_expired(
        self,
        backoff_base_s: float,
        backoff_max_s: float,
        now: datetime | None = None,
        limit: int = 1000,
    ) -> RescueResult:
        """Jobs whose lease expired: re-queue with backoff, fail when attempts are spent,
        and cancel those that were asked to cancel."""

    @abc.abstractmethod
    def job_promote_scheduled(self, now: datetime | None = None, limit: int = 10_000) -> int:
        """Move scheduled jobs whose `run_at` has come to queued; return how many."""

    # -- jobs: user actions ------------------------------------------------
    @abc.abstractmethod
    def job_set_status(
        self,
        tenant_id: str,
        job_id: str,
        sources: frozenset[JobStatus],
        target: JobStatus,
        now: datetime | None = None,
        max_attempts: int | None = None,
    ) -> Job | None:
        """Move a job from one of `sources` to `target`; None when it was in no source status.

        Terminal targets set `finished_at` and `expires_at`; QUEUED from a terminal
        status (a manual retry) records the finished attempt in the history, clears
        the result, error and finish times and sets `max_attempts` when given.
        """

    @abc.abstractmethod
    def job_delete(self, tenant_id: str, job_id: str) -> list[str]:
        """Delete a job, its descendants, their errors, attempts and artifact rows.

        Returns the ids deleted (empty when the job did not exist)."""

    @abc.abstractmethod
    def job_purge_expired(
        self, now: datetime | None = None, limit: int = 1000
    ) -> list[tuple[str, str]]:
        """Delete up to `limit` expired jobs (with errors, attempts, artifacts rows);
        return their (tenant_id, job_id) so that their blobs can be deleted."""

    # -- per-record errors and artifacts -------------------------------------
    @abc.abstractmethod
    def job_errors_insert_many(self, records: Sequence[JobErrorRecord]) -> None: ...

    @abc.abstractmethod
    def job_errors_list(
        self, tenant_id: str, job_id: str, after_id: str | None = None, limit: int = 1000
    ) -> list[JobErrorRecord]:
        """Errors of a job in creation order, after `after_id`."""

    @abc.abstractmethod
    def job_errors_update(self, tenant_id: str, job_id: str, error_ids: Sequence[str], *,
                          resolved: bool | None = None,
                          retried: bool | None = None) -> list[JobErrorRecord]:
        """Set `resolved` and/or `retried` (None leaves a flag as it is) on errors of one
        job; return the errors changed, in id order. Ids of other jobs are ignored."""

    @abc.abstractmethod
    def artifact_put(self, artifact: Artifact) -> None:
        """Record an artifact (replacing one of the same name)."""

    @abc.abstractmethod
    def artifact_list(self, tenant_id: str, job_id: str) -> list[Artifact]: ...

    # -- apps, keys, uploads, webhooks ---------------------------------------
    @abc.abstractmethod
    def app_create(self, app: AppRecord) -> AppRecord:
        """Create an app; AlreadyExists for a name the tenant uses, TenantNotFound."""

    @abc.abstractmethod
    def app_get(self, tenant_id: str, app_id: str) -> AppRecord | None: ...

    @abc.abstractmethod
    def app_list(self, tenant_id: str) -> list[AppRecord]: ...

    @abc.abstractmethod
    def key_create(self, key: ApiKey) -> None:
        """Store a key (its prefix and hash only); TenantNotFound, NotFound for the app."""

    @abc.abstractmethod
    def key_by_prefix(self, prefix: str) -> ApiKey | None:
        """The key with this public prefix, revoked and expired ones included."""

    @abc.abstractmethod
    def key_list(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Keys of a tenant (every tenant's when None), oldest first."""

    @abc.abstractmethod
    def key_revoke(self, key_id: str, now: datetime | None = None) -> ApiKey | None:
        """Revoke a key (idempotent); None when there is no such key."""

    @abc.abstractmethod
    def upload_create(self, upload: Upload) -> None: ...

    @abc.abstractmethod
    def upload_get(self, tenant_id: str, upload_id: str,
                   now: datetime | None = None) -> Upload | None:
        """The upload, or None when missing, another tenant's, or expired."""

    @abc.abstractmethod
    def upload_purge_expired(self, now: datetime | None = None,
                             limit: int = 1000) -> list[Upload]:
        """Delete up to `limit` expired upload rows; return them so their blobs can go too."""

    @abc.abstractmethod
    def webhook_create(self, webhook: Webhook) -> None: ...

    @abc.abstractmethod
    def webhook_get(self, tenant_id: str, webhook_id: str) -> Webhook | None: ...

    @abc.abstractmethod
    def webhook_list(self, tenant_id: str) -> list[Webhook]:
        """Every subscription of a tenant (its apps' included), oldest first."""

    @abc.abstractmethod
    def webhook_delete(self, tenant_id: str, webhook_id: str) -> bool: ...

    # -- coordination ------------------------------------------------------
    @abc.abstractmethod
    def maintenance_lock(self) -> AbstractContextManager[bool]:
        """Context manager yielding True in the one process that may run maintenance now."""

    @abc.abstractmethod
    def queue_waiter(self) -> QueueWaiter:
        """A waiter woken when jobs are queued (LISTEN/NOTIFY, or cheap polling)."""


# The most (kind, status) pairs a list walks jobs_kind_status for, one walk each.
MAX_INDEX_WALKS = 16


def index_walks(query: JobQuery) -> list[tuple[str, JobStatus]]:
    """The (kind, status) pairs whose walks of jobs_kind_status (finished jobs in id
    order, migration 0003) make up the jobs of `query`: every pair of its kinds and
    statuses when all the statuses are finished ones; none otherwise, or when there
    are more than MAX_INDEX_WALKS."""
    if not query.kinds or not query.statuses or not all(s in TERMINAL for s in query.statuses):
        return []
    walks = [(kind, status) for kind in dict.fromkeys(query.kinds)
             for status in dict.fromkeys(query.statuses)]
    return walks if len(walks) <= MAX_INDEX_WALKS else []


def one_report_per_job(completions: Sequence[Completion]) -> list[list[Completion]]:
    """Completions split into rounds that name each job at most once, in order.

    A job reported twice in one batch is handled as two reports in a row: the
    second round sees the first's effect (and is refused if it ended the attempt).
    Stores write a round in one statement, where a job must not appear twice."""
    rounds: list[list[Completion]] = []
    seen: dict[str, int] = {}
    for c in completions:
        n = seen.get(c.job_id, 0)
        seen[c.job_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(c)
    return rounds


def merge_progress(updates: Sequence[ProgressUpdate]) -> list[ProgressUpdate]:
    """One update per (job, attempt), in (job, attempt) order: later updates overwrite
    earlier ones field by field, as they would written one at a time."""
    merged: dict[tuple[str, int], ProgressUpdate] = {}
    for u in updates:
        key = (u.job_id, u.attempt)
        seen = merged.get(key)
        if seen is None:
            merged[key] = ProgressUpdate(u.job_id, u.attempt, u.stats, u.progress)
        else:
            seen.stats = u.stats if u.stats is not None else seen.stats
            seen.progress = u.progress if u.progress is not None else seen.progress
    return sorted(merged.values(), key=lambda u: (u.job_id, u.attempt))


def iter_batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Slices of at most `size` items, so that one statement never gets too many parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
