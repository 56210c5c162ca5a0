"""Engine rules (engine.py) on every backend: submit checks, cancel, retry, delete,
page tokens, retention and maintenance."""

from __future__ import annotations

import base64
import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

import jobdock.errors as errors
from jobdock.blobs import blob_key
from jobdock.blobs.local import LocalBlobStore
from jobdock.config import Settings
from jobdock.engine import Engine, KindSpec, SubmitRequest
from jobdock.model import Completion, Job, JobQuery, JobStatus, Outcome
from jobdock.store import open_store

S = JobStatus
DEFAULT_RETENTION_S = 1000


class RowsInput(BaseModel):
    table: str
    rows: int = Field(ge=0)


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    store = open_store(database_url)
    store.migrate()
    settings = Settings(retention_s=DEFAULT_RETENTION_S, retry_backoff_base_s=0.0,
                        retry_backoff_max_s=0.0)
    eng = Engine(store, LocalBlobStore(tmp_path / "blobs"), settings)
    eng.register_kind(KindSpec("k", max_attempts=3))
    eng.register_kind(KindSpec("rows", input_model=RowsInput))
    try:
        yield eng
    finally:
        store.close()


def submit(engine: Engine, tenant: str = "default", **fields: object) -> Job:
    fields.setdefault("kind", "k")
    return engine.submit(SubmitRequest(**fields), tenant)  # type: ignore[arg-type]


def run(engine: Engine, job: Job, worker: str = "w1") -> Job:
    """Claim `job` (which must be the only one due) as a worker would."""
    [claimed] = engine.claim(worker, [job.kind], 10)
    assert claimed.id == job.id
    return claimed


def all_ids(engine: Engine, tenant: str = "default") -> list[str]:
    return [j.id for j in engine.store.job_list(JobQuery(tenant_id=tenant))]


# -- submit ------------------------------------------------------------------


def test_unknown_kind_names_the_registered_kinds(engine: Engine) -> None:
    with pytest.raises(errors.UnknownKind) as caught:
        submit(engine, kind="nope")
    assert caught.value.details["known"] == ["k", "rows"]
    assert "'nope'" in str(caught.value) and "k, rows" in str(caught.value)


def test_invalid_input_lists_field_errors_and_inserts_nothing(engine: Engine) -> None:
    good = SubmitRequest("rows", {"table": "t", "rows": 1})
    bad = SubmitRequest("rows", {"rows": -1})
    with pytest.raises(errors.InvalidInput) as caught:
        engine.submit_many([good, bad])
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {"table", "rows"}
    assert all_ids(engine) == []


def test_valid_input_is_stored_as_the_model_dumps_it(engine: Engine) -> None:
    job = submit(engine, kind="rows", input={"table": "t", "rows": "3"})
    assert engine.get("default", job.id).input == {"table": "t", "rows": 3}


def test_input_of_a_kind_without_model_must_be_an_object(engine: Engine) -> None:
    with pytest.raises(errors.InvalidInput):
        submit(engine, input=[1, 2])


def test_unknown_tenant_is_tenant_not_found(engine: Engine) -> None:
    with pytest.raises(errors.TenantNotFound):
        submit(engine, tenant="nobody")


def test_naive_run_at_is_invalid_input(engine: Engine) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        submit(engine, run_at=datetime(2030, 1, 1))  # a naive datetime: the point
    assert caught.value.errors[0]["field"] == "run_at"
    assert all_ids(engine) == []


def test_bulk_submit_leaves_the_cycle_collector_as_it_found_it(engine: Engine) -> None:
    # A bulk submit pauses it while it makes its objects (_no_cycle_collection).
    bulk = [SubmitRequest("k", {"i": i}) for i in range(1000)]
    assert gc.isenabled()
    assert len(engine.submit_many(bulk)) == 1000
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(engine.submit_many(bulk)) == 1000
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(errors.InvalidInput):
        engine.submit_many([*bulk, SubmitRequest("rows", {"table": "t", "rows": -1})])
    assert gc.isenabled()
    assert engine.job_counts("default") == {("k", S.QUEUED): 2000}


def test_future_run_at_is_scheduled_until_maintenance_promotes_it(engine: Engine) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    job = submit(engine, run_at=run_at)
    assert job.status is S.SCHEDULED
    assert engine.claim("w1", ["k"], 10) == []
    assert engine.maintain(now=run_at - timedelta(seconds=1)).promoted == 0
    assert engine.maintain(now=run_at).promoted == 1
    assert engine.get("default", job.id).status is S.QUEUED


def test_submit_uses_kind_defaults_unless_the_request_overrides(engine: Engine) -> None:
    defaults = submit(engine)
    assert (defaults.status, defaults.max_attempts, defaults.priority) == (S.QUEUED, 3, 0)
    custom = submit(engine, max_attempts=1, priority=7, labels={"flow": "f1"}, name="n")
    assert (custom.max_attempts, custom.priority, custom.labels, custom.name) == (
        1, 7, {"flow": "f1"}, "n")
    with pytest.raises(errors.InvalidInput):
        submit(engine, max_attempts=0)


# -- cancel ------------------------------------------------------------------


@pytest.mark.parametrize("future", [False, True], ids=["queued", "scheduled"])
def test_cancel_of_a_waiting_job_is_immediate(engine: Engine, future: bool) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1) if future else None
    job = submit(engine, run_at=run_at)
    canceled = engine.cancel("default", job.id)
    assert canceled.status is S.CANCELED and canceled.finished_at is not None
    assert engine.cancel("default", job.id).status is S.CANCELED, "a second cancel is a no-op"
    assert engine.claim("w1", ["k"], 10) == []


def test_cancel_of_a_running_job_asks_the_worker(engine: Engine) -> None:
    job = run(engine, submit(engine))
    assert engine.cancel("default", job.id).status is S.CANCELING
    assert engine.cancel("default", job.id).status is S.CANCELING
    assert engine.heartbeat([(job.id, job.attempt)]).canceling == {job.id}
    completion = engine.failure(job, errors.JobCanceled(), cancelled=True)
    assert completion.outcome is Outcome.CANCELED
    assert engine.complete([completion]) == {job.id}
    assert engine.get("default", job.id).status is S.CANCELED


def test_hard_cancel_stops_a_running_job_at_once(engine: Engine) -> None:
    job = run(engine, submit(engine))
    assert engine.cancel("default", job.id, hard=True).status is S.CANCELED
    assert engine.heartbeat([(job.id, job.attempt)]).lost == {job.id}
    late = Completion(job.id, job.attempt, Outcome.SUCCEEDED, result="late")
    assert engine.complete([late]) == set()
    stored = engine.get("default", job.id)
    assert (stored.status, stored.result) == (S.CANCELED, None)


def test_cancel_of_a_succeeded_job_is_an_illegal_transition(engine: Engine) -> None:
    job = run(engine, submit(engine))
    assert engine.complete([Completion(job.id, job.attempt, Outcome.SUCCEEDED, result=1)])
    with pytest.raises(errors.IllegalTransition):
        engine.cancel("default", job.id)
    with pytest.raises(errors.IllegalTransition):
        engine.cancel("default", job.id, hard=True)
    assert engine.get("default", job.id).status is S.SUCCEEDED


def test_cancel_of_an_unknown_or_foreign_job_is_not_found(engine: Engine) -> None:
    engine.create_tenant("other")
    job = submit(engine)
    with pytest.raises(errors.JobNotFound):
        engine.cancel("other", job.id)
    with pytest.raises(errors.JobNotFound):
        engine.cancel("default", "not-an-id")


# -- retry -------------------------------------------------------------------


def test_retry_of_a_failed_job_requeues_it_with_its_history(engine: Engine) -> None:
    job = run(engine, submit(engine, max_attempts=1))
    failure = engine.failure(job, ValueError("bad data"), cancelled=False)
    assert failure.outcome is Outcome.FAILED
    assert engine.complete([failure]) == {job.id}
    retried = engine.retry("default", job.id)
    assert (retried.status, retried.error, retried.attempt) == (S.QUEUED, None, 1)
    assert retried.max_attempts == 1 + 3, "the kind's attempts again, on top of those spent"
    again = run(engine, retried)
    assert again.attempt == 2
    assert engine.complete([Completion(again.id, 2, Outcome.SUCCEEDED, result="ok")])
    history = engine.store.job_attempts("default", job.id)
    assert [(a.attempt, a.status) for a in history] == [(1, "failed")]
    assert history[0].error == {"code": "ValueError", "message": "bad data"}
    assert engine.get("default", job.id).result == "ok"


def test_retry_of_a_canceled_job_takes_extra_attempts(engine: Engine) -> None:
    job = submit(engine)
    engine.cancel("default", job.id)
    assert engine.retry("default", job.id, extra_attempts=5).max_attempts == 5


@pytest.mark.parametrize("status", [S.QUEUED, S.RUNNING, S.SUCCEEDED])
def test_retry_of_a_job_that_did_not_fail_is_illegal(engine: Engine, status: S) -> None:
    job = submit(engine)
    if status is not S.QUEUED:
        job = run(engine, job)
    if status is S.SUCCEEDED:
        assert engine.complete([Completion(job.id, job.attempt, Outcome.SUCCEEDED)])
    with pytest.raises(errors.IllegalTransition):
        engine.retry("default", job.id)
    assert engine.get("default", job.id).status is status


def test_failure_retries_while_attempts_are_left(engine: Engine) -> None:
    job = run(engine, submit(engine, max_attempts=2))
    first = engine.failure(job, RuntimeError("flaky"), cancelled=False)
    assert first.outcome is Outcome.RETRY and first.retry_at is not None
    assert engine.complete([first]) == {job.id}
    second = run(engine, job)
    assert engine.failure(second, RuntimeError("flaky"), cancelled=False).outcome is (
        Outcome.FAILED)
    assert engine.failure(second, errors.InvalidInput("no"), cancelled=False).outcome is (
        Outcome.FAILED)


# -- delete ------------------------------------------------------------------


def test_delete_removes_the_job_its_children_and_their_blobs(engine: Engine) -> None:
    parent = submit(engine)
    child = submit(engine, parent_id=parent.id)
    other = submit(engine)
    blobs = engine.blobs
    for job in (parent, child, other):
        blobs.put(blob_key("default", job.id, "artifacts", "out.csv"), b"a,b\n")
    assert sorted(engine.delete("default", parent.id)) == sorted([parent.id, child.id])
    for job in (parent, child):
        assert not blobs.exists(blob_key("default", job.id, "artifacts", "out.csv"))
        with pytest.raises(errors.JobNotFound):
            engine.get("default", job.id)
    assert blobs.exists(blob_key("default", other.id, "artifacts", "out.csv"))
    with pytest.raises(errors.JobNotFound):
        engine.delete("default", parent.id)


def test_delete_of_another_tenants_job_is_not_found(engine: Engine) -> None:
    engine.create_tenant("other")
    job = submit(engine)
    with pytest.raises(errors.JobNotFound):
        engine.delete("other", job.id)
    assert engine.get("default", job.id).id == job.id


# -- page tokens ---------------------------------------------------------------


def test_page_tokens_walk_every_job_once(engine: Engine) -> None:
    expected = [j.id for j in engine.submit_many([SubmitRequest("k") for _ in range(7)])]
    seen: list[str] = []
    token = None
    for _ in range(10):
        page = engine.list_jobs(JobQuery(tenant_id="default", page_size=3), token)
        seen.extend(j.id for j in page.items)
        token = page.next_page_token
        if token is None:
            break
    assert seen == list(reversed(expected))


def test_a_full_last_page_has_no_token(engine: Engine) -> None:
    engine.submit_many([SubmitRequest("k") for _ in range(3)])
    page = engine.list_jobs(JobQuery(tenant_id="default", page_size=3))
    assert (len(page.items), page.next_page_token) == (3, None)


@pytest.mark.parametrize("token", ["garbage!", "", "e30", base64.urlsafe_b64encode(
    json.dumps({"a": "0" * 24, "q": "0" * 16}).encode()).decode()])
def test_forged_page_tokens_are_invalid_input(engine: Engine, token: str) -> None:
    engine.submit_many([SubmitRequest("k") for _ in range(3)])
    query = JobQuery(tenant_id="default", page_size=1)
    if not token:
        assert len(engine.list_jobs(query, token).items) == 1, "an empty token is no token"
        return
    with pytest.raises(errors.InvalidInput):
        engine.list_jobs(query, token)


def test_a_page_token_is_refused_with_other_filters(engine: Engine) -> None:
    engine.create_tenant("other")
    engine.submit_many([SubmitRequest("k") for _ in range(3)])
    token = engine.list_jobs(JobQuery(tenant_id="default", page_size=1)).next_page_token
    assert token is not None
    for query in (JobQuery(tenant_id="default", page_size=1, kinds=["k"]),
                  JobQuery(tenant_id="default", page_size=1, statuses=[S.QUEUED]),
                  JobQuery(tenant_id="default", page_size=1, labels={"a": "b"}),
                  JobQuery(tenant_id="other", page_size=1)):
        with pytest.raises(errors.InvalidInput):
            engine.list_jobs(query, token)
    same = engine.list_jobs(JobQuery(tenant_id="default", page_size=2), token)
    assert len(same.items) == 2, "the page size may change between pages"


def test_page_size_is_bounded(engine: Engine) -> None:
    for size in (0, 1001):
        with pytest.raises(errors.InvalidInput):
            engine.list_jobs(JobQuery(tenant_id="default", page_size=size))


# -- retention and maintenance -------------------------------------------------


def test_retention_job_over_kind_over_tenant_over_default(engine: Engine) -> None:
    engine.register_kind(KindSpec("kept", retention_s=200))
    engine.create_tenant("plain")
    engine.create_tenant("keeper", retention_s=500)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"tenant": "plain"}, DEFAULT_RETENTION_S),
        ({"tenant": "keeper"}, 500),
        ({"tenant": "keeper", "kind": "kept"}, 200),
        ({"tenant": "keeper", "kind": "kept", "retention_s": 50}, 50),
    ]
    for fields, retention in cases:
        job = submit(engine, **fields)
        assert job.retention_s == retention
        claimed = run(engine, job)
        assert engine.complete([Completion(job.id, claimed.attempt, Outcome.SUCCEEDED)])
        done = engine.get(job.tenant_id, job.id)
        assert done.finished_at is not None and done.expires_at is not None
        assert done.expires_at - done.finished_at == timedelta(seconds=retention)


def test_an_expired_job_is_not_found_at_once(engine: Engine) -> None:
    job = run(engine, submit(engine, retention_s=60))
    assert engine.complete([Completion(job.id, job.attempt, Outcome.SUCCEEDED)])
    expires_at = engine.get("default", job.id).expires_at
    assert expires_at is not None
    assert engine.get("default", job.id, now=expires_at - timedelta(seconds=1)).id == job.id
    with pytest.raises(errors.JobNotFound):
        engine.get("default", job.id, now=expires_at)
    page = engine.list_jobs(JobQuery(tenant_id="default"), now=expires_at)
    assert page.items == []


def test_maintain_purges_expired_jobs_and_their_blobs(engine: Engine) -> None:
    done = run(engine, submit(engine, retention_s=60))
    waiting = submit(engine)
    assert engine.complete([Completion(done.id, done.attempt, Outcome.SUCCEEDED)])
    keys = {job.id: blob_key("default", job.id, "artifacts", "out.csv") for job in (done, waiting)}
    for key in keys.values():
        engine.blobs.put(key, b"x")
    later = datetime.now(UTC) + timedelta(seconds=61)
    report = engine.maintain(now=later)
    assert report.ran and report.purged == 1
    assert not engine.blobs.exists(keys[done.id])
    assert engine.blobs.exists(keys[waiting.id])
    assert all_ids(engine) == [waiting.id]
    assert engine.maintain(now=later).purged == 0


def test_maintain_rescues_expired_leases(engine: Engine) -> None:
    job = run(engine, submit(engine, max_attempts=1))
    report = engine.maintain(now=datetime.now(UTC) + timedelta(seconds=engine.settings.lease_s
                                                               + 60))
    assert (report.requeued, report.failed) == (0, 1)
    assert engine.get("default", job.id).status is S.FAILED


def test_maintain_rescues_while_another_process_holds_the_lock(engine: Engine,
                                                               database_url: str) -> None:
    """A worker stalled inside its maintenance round (holding the lock) must not stop
    the others from rescuing jobs; only the purges wait for the lock."""
    job = run(engine, submit(engine))
    done = run(engine, submit(engine, retention_s=60))
    assert engine.complete([Completion(done.id, done.attempt, Outcome.SUCCEEDED)])
    rival = open_store(database_url)
    try:
        with rival.maintenance_lock() as held:
            assert held
            later = datetime.now(UTC) + timedelta(seconds=engine.settings.lease_s + 120)
            report = engine.maintain(now=later)
    finally:
        rival.close()
    assert not report.ran and (report.requeued, report.purged) == (1, 0)
    assert engine.get("default", job.id).status is S.QUEUED
