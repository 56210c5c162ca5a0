"""Store.job_errors_update: resolving and marking per-record errors, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

from jobdock.ids import new_id
from jobdock.model import JobErrorRecord, JobStatus, NewJob
from jobdock.store import Store

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def job(store: Store, tenant: str = "default") -> str:
    new = NewJob(id=new_id(), tenant_id=tenant, kind="k", input={}, status=JobStatus.QUEUED,
                 run_at=T0, created_at=T0, max_attempts=1, retention_s=60)
    return store.job_insert_many([new])[0].job.id


def errors_of(store: Store, job_id: str, n: int, tenant: str = "default") -> list[str]:
    ids = [new_id() for _ in range(n)]
    store.job_errors_insert_many([
        JobErrorRecord(id=i, tenant_id=tenant, job_id=job_id, attempt=1, message="bad",
                       record={"i": n}, retry_data={"i": n}, created_at=T0) for i in ids])
    return ids


def flags(store: Store, job_id: str, tenant: str = "default") -> list[tuple[bool, bool]]:
    return [(e.resolved, e.retried) for e in store.job_errors_list(tenant, job_id)]


def test_update_sets_only_the_flags_given_and_returns_the_changed_errors(store: Store) -> None:
    job_id = job(store)
    ids = errors_of(store, job_id, 3)
    changed = store.job_errors_update("default", job_id, [ids[2], ids[0]], resolved=True)
    assert [e.id for e in changed] == [ids[0], ids[2]]
    assert all(e.resolved and not e.retried for e in changed)
    assert changed[0].record == {"i": 3} and changed[0].created_at == T0
    assert flags(store, job_id) == [(True, False), (False, False), (True, False)]
    store.job_errors_update("default", job_id, ids, retried=True)
    assert flags(store, job_id) == [(True, True), (False, True), (True, True)]
    store.job_errors_update("default", job_id, [ids[0]], resolved=False)
    assert flags(store, job_id) == [(False, True), (False, True), (True, True)]


def test_update_ignores_ids_of_other_jobs_and_tenants(store: Store) -> None:
    store.tenant_create("other")
    mine, theirs = job(store), job(store, "other")
    other_job = job(store)
    [their_error] = errors_of(store, theirs, 1, "other")
    [other_error] = errors_of(store, other_job, 1)
    assert store.job_errors_update("default", mine, [their_error, other_error],
                                   resolved=True) == []
    assert store.job_errors_update("default", theirs, [their_error], resolved=True) == []
    assert store.job_errors_update("default", mine, [], resolved=True) == []
    assert flags(store, theirs, "other") == [(False, False)]
    assert flags(store, other_job) == [(False, False)]


def test_update_of_many_errors_at_once(store: Store) -> None:
    job_id = job(store)
    ids = errors_of(store, job_id, 1200)
    assert len(store.job_errors_update("default", job_id, ids, retried=True)) == 1200
    assert set(flags(store, job_id)) == {(False, True)}
