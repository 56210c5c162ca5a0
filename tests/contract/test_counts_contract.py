"""Store.job_counts: unexpired jobs per (kind, status), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobdock.ids import new_id
from jobdock.model import Completion, JobStatus, NewJob, Outcome
from jobdock.store import Store

S = JobStatus
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def new(tenant: str, kind: str, status: JobStatus = S.QUEUED) -> NewJob:
    return NewJob(id=new_id(T0.timestamp()), tenant_id=tenant, kind=kind, input={},
                  status=status, run_at=T0, created_at=T0, max_attempts=1, retention_s=60)


def test_counts_by_kind_and_status_of_one_tenant_or_all(store: Store) -> None:
    store.tenant_create("other")
    store.job_insert_many([new("default", "a"), new("default", "a"), new("default", "b"),
                           new("default", "a", S.SCHEDULED), new("other", "a")])
    assert store.job_counts("default", now=T0) == {
        ("a", S.QUEUED): 2, ("a", S.SCHEDULED): 1, ("b", S.QUEUED): 1}
    assert store.job_counts(now=T0) == {
        ("a", S.QUEUED): 3, ("a", S.SCHEDULED): 1, ("b", S.QUEUED): 1}
    assert store.job_counts("nobody", now=T0) == {}


def test_counts_follow_status_changes_and_leave_out_expired_jobs(store: Store) -> None:
    store.job_insert_many([new("default", "k"), new("default", "k")])
    claimed = store.job_claim_many("w", ["k"], 1, 30.0, now=T0)
    assert store.job_counts(now=T0) == {("k", S.QUEUED): 1, ("k", S.RUNNING): 1}
    store.job_complete_many([Completion(claimed[0].id, 1, Outcome.SUCCEEDED)], now=T0)
    assert store.job_counts(now=T0) == {("k", S.QUEUED): 1, ("k", S.SUCCEEDED): 1}
    # Retention is 60 s: after it, the finished job is no longer counted.
    assert store.job_counts(now=T0 + timedelta(seconds=61)) == {("k", S.QUEUED): 1}
