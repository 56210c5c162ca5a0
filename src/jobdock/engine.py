"""The rule book: every change of a job goes through here.

Routers, workers and the CLI call the engine; the engine checks the rules
(kinds, inputs, tenants, the transition table) and asks the store for guarded
writes. When a guarded write finds the job in another status than the one it
was decided on (a race with a worker or the rescuer), the engine reads the job
again and decides again.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import importlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

import jobdock.errors as errors
from jobdock.blobs import BlobStore
from jobdock.config import Settings
from jobdock.ids import is_id, new_ids
from jobdock.model import (
    ACTIVE,
    TERMINAL,
    Completion,
    Job,
    JobErrorRecord,
    JobQuery,
    JobStatus,
    NewJob,
    Outcome,
    Page,
    ProgressUpdate,
    Tenant,
    Upload,
    can_transition,
)
from jobdock.store import HeartbeatResult, InsertResult, Store
from jobdock.store.backoff import backoff_s
from jobdock.store.records import Record

if TYPE_CHECKING:
    from pydantic import BaseModel

log = logging.getLogger("jobdock.engine")

MAX_PAGE_SIZE = 1000
T = TypeVar("T")
_TENANT_CACHE_S = 10.0
_RETRIES_ON_RACE = 5
# A submit of at least this many jobs pauses the cycle collector (_no_cycle_collection).
_BULK_JOBS = 1000
_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Most per-record errors one errors retry re-runs; a later retry takes the rest.
MAX_ERRORS_RETRIED = 10_000

FinishListener = Callable[[Sequence[Job]], None]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What the engine knows of a job kind: its defaults and its input schema.

    A kind may name its input model as "module:attribute" (`input_model_ref`)
    instead of giving it: the module is imported when the model is first needed
    (`model()`), so that a process that never meets the kind never loads it."""

    name: str
    max_attempts: int = 3
    timeout_s: float | None = None
    retention_s: int | None = None
    priority: int = 0
    input_model: type[BaseModel] | None = None
    description: str = ""
    # Labels a job of this kind gets from its (validated) input; given labels win.
    labels_of: Callable[[Any], dict[str, str]] | None = None
    input_model_ref: str | None = None

    def model(self) -> type[BaseModel] | None:
        """The input model, imported on first use when the kind names it by reference."""
        if self.input_model is None and self.input_model_ref is not None:
            # Kept on the spec: later calls cost one attribute read, as for a given model.
            object.__setattr__(self, "input_model", imported(self.input_model_ref))
        return self.input_model

    def input_schema(self) -> dict[str, Any]:
        model = self.model()
        if model is None:
            return {"type": "object"}
        return model.model_json_schema()


@cache
def imported(ref: str) -> Any:
    """What "module:attribute" names, importing the module."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(slots=True)
class SubmitRequest:
    kind: str
    input: Any = field(default_factory=dict)
    name: str | None = None
    labels: dict[str, str] | None = None
    priority: int | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    retention_s: int | None = None
    idempotency_key: str | None = None
    parent_id: str | None = None
    app_id: str | None = None


@dataclass(slots=True)
class MaintenanceReport:
    ran: bool = False
    promoted: int = 0
    requeued: int = 0
    failed: int = 0
    canceled: int = 0
    purged: int = 0
    uploads_purged: int = 0


class Engine:
    def __init__(self, store: Store, blobs: BlobStore, settings: Settings | None = None) -> None:
        self.store = store
        self.blobs = blobs
        self.settings = settings or Settings()
        self.kinds: dict[str, KindSpec] = {}
        self._tenants: dict[str, tuple[float, Tenant]] = {}
        self._finish_listeners: list[FinishListener] = []

    # -- kinds and tenants -------------------------------------------------
    def register_kind(self, spec: KindSpec) -> None:
        if spec.max_attempts < 1:
            raise ValueError(f"kind {spec.name!r}: max_attempts must be at least 1")
        self.kinds[spec.name] = spec

    def kind(self, name: str) -> KindSpec:
        spec = self.kinds.get(name)
        if spec is None:
            raise errors.UnknownKind(name, list(self.kinds))
        return spec

    def create_tenant(self, tenant_id: str, retention_s: int | None = None) -> Tenant:
        _check_tenant_name(tenant_id)
        return self.store.tenant_create(tenant_id, retention_s)

    def tenant(self, tenant_id: str) -> Tenant:
        cached = self._tenants.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < _TENANT_CACHE_S:
            return cached[1]
        found = self.store.tenant_get(tenant_id)
        if found is None:
            raise errors.TenantNotFound(tenant_id)
        self._tenants[tenant_id] = (time.monotonic(), found)
        return found

    # -- submit ------------------------------------------------------------
    def submit(self, request: SubmitRequest, tenant: str = "default") -> Job:
        return self.submit_many([request], tenant)[0]

    def submit_many(self, requests: Sequence[SubmitRequest], tenant: str = "default",
                    now: datetime | None = None) -> list[Job]:
        """Submit jobs in one transaction: all of them or none."""
        return [r.job for r in self.submit_results(requests, tenant, now)]

    def submit_results(self, requests: Sequence[SubmitRequest], tenant: str = "default",
                       now: datetime | None = None) -> list[InsertResult]:
        """As submit_many, telling of each job whether it was created or is the existing
        job of its idempotency key."""
        if not requests:
            return []
        tenant_row = self.tenant(tenant)
        moment = now or datetime.now(UTC)
        ids = new_ids(len(requests), moment.timestamp())
        parents = {r.parent_id for r in requests if r.parent_id is not None}
        for parent_id in parents:
            self.get(tenant, parent_id)
        retentions: dict[str, int] = {}  # the default retention per kind, for this batch
        with _no_cycle_collection(len(requests) >= _BULK_JOBS):
            new_jobs = [self._new_job(job_id, r, tenant_row, moment, retentions)
                        for job_id, r in zip(ids, requests, strict=True)]
            try:
                results = self.store.job_insert_many(new_jobs)
            except (TypeError, ValueError) as exc:
                raise errors.InvalidInput(f"job input must be JSON: {exc}") from exc
        return results

    def validate_input(self, kind: str, value: Any) -> Any:
        """The input as a job of `kind` would store it: UnknownKind, or InvalidInput whose
        errors name fields of the input itself."""
        return _validated_input(self.kind(kind), value)

    def _new_job(self, job_id: str, r: SubmitRequest, tenant: Tenant, now: datetime,
                 retentions: dict[str, int]) -> NewJob:
        # Runs for every job of a bulk submit (20,000 in one call): the default
        # retention is found once per kind, and nothing is called that is not needed.
        spec = self.kind(r.kind)
        run_at = now if r.run_at is None else _aware(r.run_at, "run_at") or now
        max_attempts = spec.max_attempts if r.max_attempts is None else r.max_attempts
        if max_attempts < 1:
            raise errors.InvalidInput("max_attempts must be at least 1",
                                      [{"field": "max_attempts", "message": "must be >= 1"}])
        if r.timeout_s is not None and r.timeout_s <= 0:
            raise errors.InvalidInput("timeout_s must be positive",
                                      [{"field": "timeout_s", "message": "must be > 0"}])
        retention = r.retention_s
        if retention is None:
            retention = retentions.get(r.kind)
            if retention is None:
                retention = retentions[r.kind] = next(
                    v for v in (spec.retention_s, tenant.retention_s, self.settings.retention_s)
                    if v is not None)
        validated = _validated_input(spec, r.input)
        labels = r.labels
        if spec.labels_of is not None:
            labels = {**spec.labels_of(validated), **(r.labels or {})}
        return NewJob(
            id=job_id, tenant_id=tenant.id, kind=r.kind, input=validated,
            status=JobStatus.SCHEDULED if run_at > now else JobStatus.QUEUED,
            run_at=run_at, created_at=now, max_attempts=max_attempts, retention_s=retention,
            app_id=r.app_id, name=r.name,
            priority=spec.priority if r.priority is None else int(r.priority),
            labels=_checked_labels(labels) if labels else {}, parent_id=r.parent_id,
            timeout_s=spec.timeout_s if r.timeout_s is None else r.timeout_s,
            idempotency_key=r.idempotency_key,
        )

    # -- read --------------------------------------------------------------
    def get(self, tenant: str, job_id: str, now: datetime | None = None,
            app_id: str | None = None) -> Job:
        """A job of `tenant`; with `app_id`, only one of that app. A job that is missing,
        expired, another tenant's or another app's is JobNotFound, all alike."""
        job = self.store.job_get(tenant, job_id, now) if is_id(job_id) else None
        if job is None or (app_id is not None and job.app_id != app_id):
            raise errors.JobNotFound(job_id)
        return job

    def list_jobs(self, query: JobQuery, page_token: str | None = None,
             now: datetime | None = None) -> Page[Job]:
        """A page of jobs, newest first; `next_page_token` continues the same query."""
        jobs, token = _paged(query, page_token, lambda q: self.store.job_list(q, now),
                             _job_id)
        return Page(jobs, token)

    def list_records(self, query: JobQuery, page_token: str | None = None,
                     now: datetime | None = None) -> Page[Record]:
        """list_jobs' page as records, the native API's JSON shape (no Job per job)."""
        records, token = _paged(query, page_token,
                                lambda q: self.store.job_list_records(q, now), _record_id)
        return Page(records, token)

    def children(self, tenant: str, job_id: str) -> list[Job]:
        self.get(tenant, job_id)
        out: list[Job] = []
        token = None
        while True:
            query = JobQuery(tenant_id=tenant, parent_id=job_id, page_size=MAX_PAGE_SIZE)
            page = self.list_jobs(query, token)
            out.extend(page.items)
            if page.next_page_token is None:
                return out
            token = page.next_page_token

    def errors(self, tenant: str, job_id: str, after_id: str | None = None,
               limit: int = 1000) -> list[JobErrorRecord]:
        self.get(tenant, job_id)
        return self.store.job_errors_list(tenant, job_id, after_id, limit)

    def error_page(
        self, tenant: str, job_id: str, page_size: int = 100, page_token: str | None = None,
        app_id: str | None = None,
    ) -> Page[JobErrorRecord]:
        """A page of a job's per-record errors in the order they were recorded."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise errors.InvalidParameter(f"page_size must be between 1 and {MAX_PAGE_SIZE}",
                                          [{"field": "page_size", "message": "out of range"}])
        self.get(tenant, job_id, app_id=app_id)
        fingerprint = _fingerprint(["errors", tenant, job_id])
        after = _decode_token(page_token, fingerprint) if page_token else None
        found = self.store.job_errors_list(tenant, job_id, after, page_size + 1)
        if len(found) > page_size:
            return Page(found[:page_size], _encode_token(found[page_size - 1].id,
                                                              fingerprint))
        return Page(found, None)

    def resolve_error(self, tenant: str, job_id: str, error_id: str, resolved: bool = True,
                      app_id: str | None = None) -> JobErrorRecord:
        """Mark one per-record error resolved (or not); NotFound for an unknown error."""
        self.get(tenant, job_id, app_id=app_id)
        changed = (self.store.job_errors_update(tenant, job_id, [error_id], resolved=resolved)
                   if is_id(error_id) else [])
        if not changed:
            raise errors.NotFound(f"job {job_id!r} has no error {error_id!r}",
                                  job_id=job_id, error_id=error_id)
        return changed[0]

    def retry_errors(self, tenant: str, job_id: str, app_id: str | None = None,
                     limit: int = MAX_ERRORS_RETRIED) -> Job:
        """Re-run a job's unresolved per-record errors as a new job of the same kind.

        The new job's input is the old one with `retry_of` (the job id) and `records`
        (the errors' retry data, in order); it carries the label `retry_of`, and the
        errors are marked retried. Errors that were resolved, already retried, or have
        no retry data are left out. Asking again after a failure half-way returns the
        same new job (an idempotency key derived from the errors' ids)."""
        job = self.get(tenant, job_id, app_id=app_id)
        pending: list[JobErrorRecord] = []
        after: str | None = None
        while len(pending) < limit:
            batch = self.store.job_errors_list(tenant, job_id, after, MAX_PAGE_SIZE)
            if not batch:
                break
            pending.extend(e for e in batch
                           if not e.resolved and not e.retried and e.retry_data is not None)
            after = batch[-1].id
        pending = pending[:limit]
        if not pending:
            raise errors.Conflict(f"job {job_id!r} has no unresolved errors with retry data"
                                  " to run again", job_id=job_id)
        base = job.input if isinstance(job.input, dict) else {}
        new_input = {**base, "retry_of": job_id, "records": [e.retry_data for e in pending]}
        validated = self.validate_input(job.kind, new_input)
        if not isinstance(validated, dict) or "records" not in validated:
            raise errors.InvalidInput(
                f"kind {job.kind!r} cannot re-run records: its input has no 'records' field",
                [{"field": "kind", "message": "no 'records' in the kind's input"}])
        ids = [e.id for e in pending]
        key = "errors-retry:" + _fingerprint([job_id, *ids])
        retry = self.submit(SubmitRequest(
            kind=job.kind, input=new_input, name=job.name, priority=job.priority,
            labels={**job.labels, "retry_of": job_id}, parent_id=job.parent_id,
            app_id=job.app_id, idempotency_key=key), tenant)
        self.store.job_errors_update(tenant, job_id, ids, retried=True)
        return retry

    def upload(self, tenant: str, upload_id: str, app_id: str | None = None,
               now: datetime | None = None) -> Upload:
        """An upload of `tenant`; with `app_id`, only one made by that app.

        NotFound when it is missing, expired, another tenant's or another app's,
        all alike, so that nobody learns of uploads they may not read."""
        found = self.store.upload_get(tenant, upload_id, now) if is_id(upload_id) else None
        if found is None or (app_id is not None and found.app_id != app_id):
            raise errors.NotFound(f"upload {upload_id!r} not found", upload_id=upload_id)
        return found

    # -- user actions ------------------------------------------------------
    def cancel(self, tenant: str, job_id: str, hard: bool = False) -> Job:
        """Cancel a job: at once when it waits; a running job is asked to stop
        (it sees `ctx.cancelled` within a heartbeat), or stopped at once with `hard`."""
        for _ in range(_RETRIES_ON_RACE):
            job = self.get(tenant, job_id)
            if job.status is JobStatus.CANCELED:
                return job
            if job.status in TERMINAL:
                raise errors.IllegalTransition(job_id, job.status, JobStatus.CANCELED)
            if job.status in ACTIVE:
                target = JobStatus.CANCELED if hard else JobStatus.CANCELING
                if job.status is JobStatus.CANCELING and not hard:
                    return job
            else:
                target = JobStatus.CANCELED
            changed = self._set_status(job, target)
            if changed is not None:
                if changed.status is JobStatus.CANCELED:
                    self._finished([changed])
                return changed
        raise errors.Conflict(f"job {job_id!r} kept changing while being canceled; try again")

    def retry(self, tenant: str, job_id: str, extra_attempts: int | None = None) -> Job:
        """Run a failed or canceled job again, as a new attempt with its history kept."""
        for _ in range(_RETRIES_ON_RACE):
            job = self.get(tenant, job_id)
            if job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
                raise errors.IllegalTransition(job_id, job.status, JobStatus.QUEUED)
            budget = extra_attempts or self.kinds.get(job.kind, KindSpec(job.kind)).max_attempts
            changed = self._set_status(job, JobStatus.QUEUED, max_attempts=job.attempt + budget)
            if changed is not None:
                return changed
        raise errors.Conflict(f"job {job_id!r} kept changing while being retried; try again")

    def delete(self, tenant: str, job_id: str) -> list[str]:
        """Delete a job with its children, errors and files; return the ids deleted.

        A running job's worker finds its lease gone and its result refused."""
        self.get(tenant, job_id)
        deleted = self.store.job_delete(tenant, job_id)
        for deleted_id in deleted:
            self.blobs.delete_prefix(f"{tenant}/{deleted_id}")
        return deleted

    # -- probes ------------------------------------------------------------
    def ping(self) -> None:
        """Raise a StoreError unless the database answers."""
        self.store.ping()

    def job_counts(self, tenant: str | None = None) -> dict[tuple[str, JobStatus], int]:
        """Unexpired jobs per (kind, status), of one tenant or of all."""
        return self.store.job_counts(tenant)

    def _set_status(self, job: Job, target: JobStatus, **changes: Any) -> Job | None:
        if not can_transition(job.status, target):
            raise errors.IllegalTransition(job.id, job.status, target)
        return self.store.job_set_status(job.tenant_id, job.id, frozenset({job.status}), target,
                                         **changes)

    # -- workers -----------------------------------------------------------
    def claim(self, worker_id: str, kinds: Sequence[str], limit: int) -> list[Job]:
        return self.store.job_claim_many(worker_id, kinds, limit, self.settings.lease_s)

    def heartbeat(self, claims: Sequence[tuple[str, int]]) -> HeartbeatResult:
        return self.store.job_heartbeat_many(claims, self.settings.lease_s)

    def record_progress(self, updates: Sequence[ProgressUpdate]) -> None:
        self.store.job_progress_many(updates)

    def record_errors(self, records: Sequence[JobErrorRecord]) -> None:
        self.store.job_errors_insert_many(records)

    def complete(self, completions: Sequence[Completion],
                 jobs: Mapping[str, Job] | None = None) -> set[str]:
        """End attempts; return the ids accepted. With `jobs` (the attempts' jobs by id),
        finish listeners hear of the accepted ones that may have ended."""
        accepted = self.store.job_complete_many(completions)
        if jobs and self._finish_listeners:
            self._finished([jobs[c.job_id] for c in completions
                            if c.job_id in accepted and c.job_id in jobs
                            and c.outcome is not Outcome.RELEASED])
        return accepted

    def failure(self, job: Job, exc: BaseException, cancelled: bool,
                stats: dict[str, int] | None = None,
                progress: dict[str, Any] | None = None) -> Completion:
        """How an attempt that raised `exc` ends: canceled, retried later, or failed."""
        error = {"code": getattr(exc, "code", None) or type(exc).__name__,
                 "message": str(exc) or type(exc).__name__}
        if cancelled or isinstance(exc, errors.JobCanceled):
            outcome, retry_at = Outcome.CANCELED, None
        elif job.attempt < job.max_attempts and not isinstance(exc, errors.InvalidInput):
            delay = backoff_s(job.attempt, self.settings.retry_backoff_base_s,
                              self.settings.retry_backoff_max_s)
            outcome, retry_at = Outcome.RETRY, datetime.now(UTC) + timedelta(seconds=delay)
        else:
            outcome, retry_at = Outcome.FAILED, None
        return Completion(job.id, job.attempt, outcome, error=error, retry_at=retry_at,
                          stats=stats, progress=progress)

    # -- finish listeners (webhook events) ----------------------------------
    def on_finished(self, listener: FinishListener) -> None:
        """Call `listener` with jobs that may just have ended, after the change is committed.

        A job passed is terminal as the store returned it, or, from a worker, who the
        job is (id, tenant, kind, app, attempt; no input, times or counters) and not
        terminal: a listener that cares reads its end back.
        Listeners run on the caller's thread; their failures are logged, never raised,
        so an event can be lost but a committed completion is never retried."""
        self._finish_listeners.append(listener)

    def _finished(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        for listener in self._finish_listeners:
            try:
                listener(jobs)
            except Exception:
                log.exception("a finish listener failed on %d jobs; their events are lost",
                              len(jobs))

    # -- maintenance -------------------------------------------------------
    def maintain(self, now: datetime | None = None) -> MaintenanceReport:
        """One round of maintenance: promote due scheduled jobs and rescue expired
        leases, then, in one process at a time, purge expired jobs and uploads with
        their files.

        Promotion and rescue are guarded statements (each row re-checked once
        locked, rows locked elsewhere skipped), safe in any number of processes at
        once, so every worker runs them: a worker stalled while holding the
        maintenance lock must not keep the jobs of another stalled worker from
        being rescued. Only the purges, which delete files, need the lock."""
        report = MaintenanceReport()
        report.promoted = self.store.job_promote_scheduled(now)
        rescued = self.store.job_rescue_expired(
            self.settings.retry_backoff_base_s, self.settings.retry_backoff_max_s, now)
        report.requeued, report.failed = rescued.requeued, rescued.failed
        report.canceled = rescued.canceled
        with self.store.maintenance_lock() as held:
            if not held:
                return report
            report.ran = True
            purged = self.store.job_purge_expired(now)
            for tenant_id, job_id in purged:
                self.blobs.delete_prefix(f"{tenant_id}/{job_id}")
            report.purged = len(purged)
            uploads = self.store.upload_purge_expired(now)
            for upload in uploads:
                self.blobs.delete_prefix(upload_prefix(upload.tenant_id, upload.id))
            report.uploads_purged = len(uploads)
        return report


def upload_prefix(tenant: str, upload_id: str) -> str:
    """The blob folder of an upload. Uploads belong to the tenant, not to a job (any
    number of jobs may read one), and go when their own retention ends."""
    return f"{tenant}/uploads/{upload_id}"


@contextmanager
def _no_cycle_collection(pause: bool) -> Iterator[None]:
    """Python's cycle collector paused while a bulk submit makes its objects.

    A submit of 20,000 jobs makes about ten containers per job (requests, jobs,
    rows, results), which set off hundreds of collections, two of them full
    ones that walk every object of the process; none of it is garbage. That
    was a fifth to a third of the submit's CPU. Objects are still freed by
    reference counting; the collector runs again afterwards, unless it was
    off before."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _validated_input(spec: KindSpec, value: Any) -> Any:
    model = spec.model()
    if model is None:
        if not isinstance(value, dict):
            raise errors.InvalidInput(f"input of kind {spec.name!r} must be a JSON object",
                                      [{"field": "input", "message": "expected an object"}])
        return value
    # pydantic_core's ValidationError is pydantic's, loaded with the model: a worker
    # whose kinds have none never loads either (pydantic-core alone is 3 MB).
    from pydantic_core import ValidationError

    try:
        return model.model_validate(value).model_dump(mode="json")
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]) or "input",
                     "message": e["msg"]} for e in exc.errors()]
        details = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise errors.InvalidInput(f"input of kind {spec.name!r} is invalid: {details}",
                                  problems) from None


def _checked_labels(labels: dict[str, str] | None) -> dict[str, str]:
    if not labels:
        return {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise errors.InvalidInput("labels must map strings to strings",
                                      [{"field": f"labels.{key}", "message": "expected a string"}])
    return dict(labels)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise errors.InvalidInput(f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)",
                                  [{"field": name, "message": "naive datetime"}])
    return value


def _check_tenant_name(name: str) -> None:
    if not _TENANT_NAME.match(name):
        raise errors.InvalidInput(
            f"invalid tenant name {name!r}: use 1 to 63 lowercase letters, digits, '_' or '-',"
            " starting with a letter or digit",
            [{"field": "name", "message": "invalid tenant name"}])


def _paged(query: JobQuery, page_token: str | None, fetch: Callable[[JobQuery], list[T]],
           id_of: Callable[[T], str]) -> tuple[list[T], str | None]:
    """A page of `query` from `fetch` (a store's list), and the token of the next one:
    the store is asked for one more than a page, to know whether another follows."""
    if not 1 <= query.page_size <= MAX_PAGE_SIZE:
        raise errors.InvalidParameter(f"page_size must be between 1 and {MAX_PAGE_SIZE}",
                                      [{"field": "page_size", "message": "out of range"}])
    fingerprint = _query_fingerprint(query)
    if page_token:
        query.after_id = _decode_token(page_token, fingerprint)
    wanted = query.page_size
    query.page_size = wanted + 1
    items = fetch(query)
    query.page_size = wanted
    if len(items) > wanted:
        return items[:wanted], _encode_token(id_of(items[wanted - 1]), fingerprint)
    return items, None


def _job_id(job: Job) -> str:
    return job.id


_record_id: Callable[[Record], str] = itemgetter("id")


def _query_fingerprint(q: JobQuery) -> str:
    """A short hash of what a page token belongs to, so a token is refused elsewhere."""
    parts = [q.tenant_id, q.kinds, q.statuses, q.parent_id, q.app_id, sorted(q.labels.items()),
             q.created_at_gte, q.created_at_lte, q.finished_at_gte, q.finished_at_lte,
             sorted(q.stats_gte.items()), sorted(q.stats_lte.items())]
    return _fingerprint(parts)


def _fingerprint(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _encode_token(after_id: str, fingerprint: str) -> str:
    raw = json.dumps({"a": after_id, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> str:
    bad = errors.InvalidParameter(
        "page_token is not valid for this query: pass the next_page_token of the previous"
        " page unchanged, with the same filters",
        [{"field": "page_token", "message": "invalid page token"}])
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("q") != fingerprint:
        raise bad
    after = data.get("a")
    if not isinstance(after, str) or not is_id(after):
        raise bad
    return after
