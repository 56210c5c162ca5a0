"""The Store contract (store/base.py), run against every backend via the `store` fixture.

Time is always passed as `now=`, relative to a whole-second `t0`: nothing here
sleeps to age a lease, and no assertion depends on how fast anything runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import jobdock.errors as errors
from jobdock.ids import new_id
from jobdock.model import (
    Artifact,
    Completion,
    Job,
    JobErrorRecord,
    Outcome,
    ProgressUpdate,
)
from jobdock.store import Store, open_store
from tests.contract.kit import LEASE_S, RETENTION_S, Kit, S


@pytest.fixture
def kit(store: Store) -> Kit:
    return Kit(store, datetime.now(UTC).replace(microsecond=0))


# -- lifecycle and tenants -------------------------------------------------------


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    assert store.migrate() == []
    assert store.migrate() == []
    store.ping()


def test_tenant_create_get_list(store: Store) -> None:
    created = store.tenant_create("acme", retention_s=60)
    assert (created.id, created.retention_s) == ("acme", 60)
    store.tenant_create("zeta")
    got = store.tenant_get("acme")
    assert got is not None and (got.id, got.retention_s) == ("acme", 60)
    zeta = store.tenant_get("zeta")
    assert zeta is not None and zeta.retention_s is None
    assert store.tenant_get("nobody") is None
    assert {"acme", "zeta"} <= {t.id for t in store.tenant_list()}


def test_tenant_create_twice_is_already_exists(store: Store) -> None:
    store.tenant_create("acme")
    with pytest.raises(errors.AlreadyExists):
        store.tenant_create("acme")


# -- insert ------------------------------------------------------------------


def test_insert_assigns_increasing_seq_per_tenant(kit: Kit) -> None:
    kit.store.tenant_create("other")
    first = kit.store.job_insert_many([kit.new(), kit.new("other"), kit.new()])
    second = kit.store.job_insert_many([kit.new("other"), kit.new()])
    assert all(r.created for r in first + second)
    by_tenant: dict[str, list[int]] = {}
    for r in first + second:
        by_tenant.setdefault(r.job.tenant_id, []).append(r.job.seq)
    for seqs in by_tenant.values():
        assert seqs == sorted(set(seqs)), "seq must increase with no duplicates"
    stored = kit.get(first[0].job)
    assert (stored.status, stored.seq, stored.input) == (S.QUEUED, first[0].job.seq, {"n": 1})


def test_insert_from_many_threads_never_repeats_a_seq(kit: Kit) -> None:
    seqs: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        for _ in range(20):
            job = kit.add()
            with lock:
                seqs.append(job.seq)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seqs) == len(set(seqs)) == 80


def test_insert_is_all_or_none_when_a_job_fails(kit: Kit) -> None:
    existing = kit.add()
    good = kit.new()
    clash = kit.new()
    clash.id = existing.id
    with pytest.raises(errors.JobdockError):
        kit.store.job_insert_many([good, clash])
    assert kit.store.job_get("default", good.id, now=kit.t()) is None
    assert kit.ids() == [existing.id]


def test_insert_for_unknown_tenant_inserts_nothing(kit: Kit) -> None:
    good = kit.new()
    with pytest.raises(errors.TenantNotFound):
        kit.store.job_insert_many([good, kit.new("nobody")])
    assert kit.ids() == []


def test_submit_of_one_tenant_for_unknown_tenant_inserts_nothing(kit: Kit) -> None:
    # The common submit (one tenant, no keys: one statement on PostgreSQL).
    for batch in ([kit.new("nobody")], [kit.new("nobody") for _ in range(3)]):
        with pytest.raises(errors.TenantNotFound, match="nobody"):
            kit.store.job_insert_many(batch)
    assert kit.store.job_counts(None, now=kit.t()) == {}
    assert [r.job.seq for r in kit.store.job_insert_many([kit.new()])] == [1]


def test_idempotency_key_with_same_input_returns_the_existing_job(kit: Kit) -> None:
    [first] = kit.store.job_insert_many([kit.new(idempotency_key="k1", input={"a": 1})])
    [again] = kit.store.job_insert_many([kit.new(idempotency_key="k1", input={"a": 1})])
    assert first.created and not again.created
    assert (again.job.id, again.job.seq) == (first.job.id, first.job.seq)
    assert kit.ids() == [first.job.id]


def test_idempotency_key_with_other_input_conflicts_and_inserts_nothing(kit: Kit) -> None:
    [first] = kit.store.job_insert_many([kit.new(idempotency_key="k1", input={"a": 1})])
    bystander = kit.new()
    with pytest.raises(errors.IdempotencyConflict):
        kit.store.job_insert_many([bystander, kit.new(idempotency_key="k1", input={"a": 2})])
    assert kit.ids() == [first.job.id]


def test_idempotency_keys_belong_to_one_tenant(kit: Kit) -> None:
    kit.store.tenant_create("other")
    [mine] = kit.store.job_insert_many([kit.new(idempotency_key="k1")])
    [theirs] = kit.store.job_insert_many([kit.new("other", idempotency_key="k1")])
    assert theirs.created and theirs.job.id != mine.job.id


# -- get and list --------------------------------------------------------------


def test_get_hides_other_tenants_and_unknown_ids(kit: Kit) -> None:
    kit.store.tenant_create("other")
    job = kit.add()
    assert kit.store.job_get("other", job.id, now=kit.t()) is None
    assert kit.store.job_get("default", new_id(), now=kit.t()) is None


def test_get_hides_an_expired_job(kit: Kit) -> None:
    job = kit.claim_one(kit.add(retention_s=100))
    assert kit.complete(job, Outcome.SUCCEEDED, at=10)
    assert kit.get(job, at=109).status is S.SUCCEEDED
    assert kit.store.job_get("default", job.id, now=kit.t(110)) is None


def test_list_is_newest_first_and_keyset_paged(kit: Kit) -> None:
    jobs = [kit.add(created=i) for i in range(7)]
    newest_first = [j.id for j in reversed(jobs)]
    assert kit.ids() == newest_first
    assert kit.ids(page_size=3) == newest_first[:3]
    assert kit.ids(page_size=3, after_id=newest_first[2]) == newest_first[3:6]
    assert kit.ids(page_size=3, after_id=newest_first[5]) == newest_first[6:]


def test_list_keyset_is_stable_while_new_jobs_arrive(kit: Kit) -> None:
    old = [kit.add(created=i) for i in range(6)]
    page1 = kit.ids(page_size=3)
    newer = [kit.add(created=100 + i) for i in range(5)]
    page2 = kit.ids(page_size=3, after_id=page1[-1])
    assert page1 + page2 == [j.id for j in reversed(old)]
    assert kit.ids(page_size=5) == [j.id for j in reversed(newer)]


def test_list_hides_expired_jobs(kit: Kit) -> None:
    short = kit.claim_one(kit.add(retention_s=10))
    kept = kit.add(created=1)
    assert kit.complete(short, Outcome.SUCCEEDED, at=5)
    assert kit.ids(at=14) == [kept.id, short.id]
    assert kit.ids(at=15) == [kept.id]


@pytest.fixture
def listing(kit: Kit) -> dict[str, Job]:
    """Four jobs of `default` that differ in every filtered field, plus another tenant's."""
    kit.store.tenant_create("other")
    j1 = kit.add(kind="a", app_id="x", labels={"flow": "f1"}, created=0, run_at=1000)
    j2 = kit.claim_one(kit.add(kind="b", app_id="y", labels={"flow": "f1", "env": "prod"},
                               created=10), at=10)
    j3 = kit.claim_one(kit.add(kind="a", parent_id=j2.id, labels={"flow": "f2"}, created=20),
                       at=20)
    j4 = kit.add(kind="b", app_id="x", created=30, run_at=1000, status=S.SCHEDULED)
    kit.add("other", kind="a", app_id="x", labels={"flow": "f1"}, created=5)
    assert kit.complete(j2, Outcome.SUCCEEDED, at=25, stats={"read": 5, "errors": 0})
    assert kit.complete(j3, Outcome.FAILED, at=40, stats={"read": 50, "errors": 3})
    return {"j1": j1, "j2": j2, "j3": j3, "j4": j4}


LIST_CASES: dict[str, tuple[Callable[[Kit, dict[str, Job]], dict[str, Any]], list[str]]] = {
    "all": (lambda k, j: {}, ["j4", "j3", "j2", "j1"]),
    "kinds": (lambda k, j: {"kinds": ["a"]}, ["j3", "j1"]),
    "several kinds": (lambda k, j: {"kinds": ["a", "b"]}, ["j4", "j3", "j2", "j1"]),
    "statuses": (lambda k, j: {"statuses": [S.SUCCEEDED, S.FAILED]}, ["j3", "j2"]),
    "scheduled": (lambda k, j: {"statuses": [S.SCHEDULED]}, ["j4"]),
    "parent": (lambda k, j: {"parent_id": j["j2"].id}, ["j3"]),
    "app": (lambda k, j: {"app_id": "x"}, ["j4", "j1"]),
    "label": (lambda k, j: {"labels": {"flow": "f1"}}, ["j2", "j1"]),
    "two labels": (lambda k, j: {"labels": {"flow": "f1", "env": "prod"}}, ["j2"]),
    "created gte": (lambda k, j: {"created_at_gte": k.t(20)}, ["j4", "j3"]),
    "created lte": (lambda k, j: {"created_at_lte": k.t(10)}, ["j2", "j1"]),
    "finished range": (lambda k, j: {"finished_at_gte": k.t(25), "finished_at_lte": k.t(30)},
                       ["j2"]),
    "finished gte": (lambda k, j: {"finished_at_gte": k.t(26)}, ["j3"]),
    "stats gte": (lambda k, j: {"stats_gte": {"read": 10}}, ["j3"]),
    "stats lte": (lambda k, j: {"stats_lte": {"errors": 0}}, ["j4", "j2", "j1"]),
    "stats range": (lambda k, j: {"stats_gte": {"read": 1}, "stats_lte": {"read": 5}}, ["j2"]),
    "combined": (lambda k, j: {"kinds": ["a"], "labels": {"flow": "f1"},
                               "statuses": [S.QUEUED], "app_id": "x"}, ["j1"]),
    "combined, none match": (lambda k, j: {"kinds": ["b"], "statuses": [S.FAILED]}, []),
    "combined with keyset": (lambda k, j: {"kinds": ["a", "b"], "after_id": j["j3"].id},
                             ["j2", "j1"]),
}


@pytest.mark.parametrize("case", LIST_CASES)
def test_list_filters(kit: Kit, listing: dict[str, Job], case: str) -> None:
    make_query, expected = LIST_CASES[case]
    names = {job.id: name for name, job in listing.items()}
    found = kit.ids(at=50, **make_query(kit, listing))
    assert [names.get(job_id, job_id) for job_id in found] == expected


def test_times_read_back_select_their_own_job(kit: Kit) -> None:
    """A time the store returns, passed back as a filter bound, still matches its job
    (times set by the database clock, here with `now=None`, included)."""
    kit.store.job_insert_many([kit.new() for _ in range(20)])
    for job in kit.store.job_claim_many("w1", ["k"], 20, LEASE_S):
        assert kit.store.job_complete_many([Completion(job.id, 1, Outcome.SUCCEEDED)])
        done = kit.get(job)
        assert done.finished_at is not None and done.expires_at is not None
        bounds = {"finished_at_gte": done.finished_at, "finished_at_lte": done.finished_at}
        assert job.id in kit.ids(**bounds)
        assert kit.store.job_get("default", job.id, now=done.expires_at) is None


# -- claim -------------------------------------------------------------------


def test_claim_makes_jobs_running_with_a_lease(kit: Kit) -> None:
    job = kit.add()
    [claimed] = kit.claim(at=5, worker="w7")
    assert claimed.id == job.id
    assert (claimed.status, claimed.attempt, claimed.worker_id) == (S.RUNNING, 1, "w7")
    assert claimed.started_at == kit.t(5)
    assert claimed.lease_expires_at == kit.t(5 + LEASE_S)
    stored = kit.get(job)
    assert (stored.status, stored.attempt, stored.lease_expires_at) == (
        S.RUNNING, 1, kit.t(5 + LEASE_S))


def test_claimed_jobs_share_equal_values_and_refuse_changes_to_them(kit: Kit) -> None:
    kit.add(created=1)
    kit.add(created=1)
    a, b = kit.claim(at=5)
    assert (a.tenant_id, a.kind) == (b.tenant_id, b.kind) == ("default", "k")
    assert a.tenant_id is b.tenant_id and a.kind is b.kind
    assert a.started_at is b.started_at and a.lease_expires_at is b.lease_expires_at
    assert a.stats == a.progress == a.labels == {}
    assert a.stats is b.stats  # one shared empty dict: it must not be changed in place
    with pytest.raises(TypeError):
        a.stats["n"] = 1
    assert dict(b.stats) == {} and b.labels == {}


def test_claim_takes_only_the_kinds_asked_for(kit: Kit) -> None:
    a, b = kit.add(kind="a"), kit.add(kind="b")
    kit.add(kind="c")
    assert kit.claim(kinds=("nothing",)) == []
    assert kit.store.job_claim_many("w", [], 10, LEASE_S, now=kit.t()) == []
    assert {j.id for j in kit.claim(kinds=("a", "b"))} == {a.id, b.id}


def test_claim_respects_limit_and_never_claims_twice(kit: Kit) -> None:
    jobs = {kit.add(created=i).id for i in range(5)}
    first = kit.claim(limit=3, at=10)
    second = kit.claim(limit=3, at=10)
    assert (len(first), len(second)) == (3, 2)
    assert {j.id for j in first} | {j.id for j in second} == jobs
    assert kit.claim(limit=3, at=11) == []


def test_claim_prefers_priority_then_oldest_run_at(kit: Kit) -> None:
    low = kit.add(priority=0, created=0)
    high_new = kit.add(priority=5, created=2)
    high_old = kit.add(priority=5, created=1)
    kit.add(priority=-1, created=0)
    assert {j.id for j in kit.claim(limit=2, at=3)} == {high_new.id, high_old.id}
    assert [j.id for j in kit.claim(limit=1, at=3)] == [low.id]
    a, b = kit.add(created=4), kit.add(created=5)
    assert [j.id for j in kit.claim(limit=1, at=6)] == [a.id]
    assert [j.id for j in kit.claim(limit=1, at=6)] == [b.id]


def test_claim_waits_for_run_at_and_skips_scheduled_jobs(kit: Kit) -> None:
    later = kit.add(run_at=60)
    scheduled = kit.add(run_at=10, status=S.SCHEDULED)
    assert kit.claim(at=59) == []
    assert [j.id for j in kit.claim(at=60)] == [later.id]
    assert kit.get(scheduled, at=60).status is S.SCHEDULED


def test_claim_is_fair_to_a_tenant_behind_a_flood(kit: Kit) -> None:
    kit.store.tenant_create("small")
    kit.store.job_insert_many([kit.new(created=-100) for _ in range(2000)])
    lone = kit.add("small", created=0)
    assert lone.id in {j.id for j in kit.claim(limit=10)}


def test_concurrent_claims_share_no_job(kit: Kit) -> None:
    expected = {r.job.id for r in kit.store.job_insert_many([kit.new() for _ in range(200)])}
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(worker: str) -> None:
        while batch := kit.claim(limit=7, worker=worker):
            with lock:
                claimed.extend(j.id for j in batch)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(expected)


# -- heartbeat and progress ----------------------------------------------------


def test_heartbeat_extends_the_lease(kit: Kit) -> None:
    job = kit.claim_one(kit.add())
    result = kit.store.job_heartbeat_many([(job.id, 1)], LEASE_S, now=kit.t(20))
    assert (result.lost, result.canceling) == (set(), set())
    assert kit.get(job, at=20).lease_expires_at == kit.t(20 + LEASE_S)
    assert kit.rescue(at=40) == (0, 0, 0)
    assert kit.get(job, at=40).status is S.RUNNING


def test_heartbeat_reports_lost_claims(kit: Kit) -> None:
    held = kit.claim_one(kit.add(created=0))
    done = kit.claim_one(kit.add(created=1), at=1)
    assert kit.complete(done, Outcome.SUCCEEDED, at=2)
    unknown = new_id()
    claims = [(held.id, 2), (done.id, 1), (unknown, 1)]
    result = kit.store.job_heartbeat_many(claims, LEASE_S, now=kit.t(3))
    assert (result.lost, result.canceling) == ({held.id, done.id, unknown}, set())
    assert kit.get(held, at=3).lease_expires_at == kit.t(LEASE_S), "a wrong attempt extends nothing"
    assert kit.store.job_heartbeat_many([(held.id, 1)], LEASE_S, now=kit.t(3)).lost == set()


def test_heartbeat_reports_a_cancel_request(kit: Kit) -> None:
    job = kit.claim_one(kit.add())
    assert kit.store.job_set_status("default", job.id, frozenset({S.RUNNING}), S.CANCELING,
                                    now=kit.t(1)) is not None
    result = kit.store.job_heartbeat_many([(job.id, 1)], LEASE_S, now=kit.t(2))
    assert (result.lost, result.canceling) == (set(), {job.id})
    assert kit.get(job, at=2).lease_expires_at == kit.t(2 + LEASE_S)


def test_progress_is_fenced_on_the_attempt(kit: Kit) -> None:
    job = kit.claim_one(kit.add())
    kit.store.job_progress_many([ProgressUpdate(job.id, 1, {"read": 3}, {"done": 3})])
    kit.store.job_progress_many([ProgressUpdate(job.id, 2, {"read": 99}, {"done": 99})])
    stored = kit.get(job)
    assert (stored.stats, stored.progress) == ({"read": 3}, {"done": 3})
    kit.store.job_progress_many([ProgressUpdate(job.id, 1, None, {"done": 4})])
    assert kit.get(job).stats == {"read": 3}, "a missing part leaves the stored one"
    assert kit.complete(job, Outcome.SUCCEEDED, at=1)
    kit.store.job_progress_many([ProgressUpdate(job.id, 1, {"read": 7})])
    assert kit.get(job, at=1).stats == {"read": 3}, "a finished attempt takes no progress"


# -- complete ------------------------------------------------------------------


def test_complete_succeeded_keeps_result_and_sets_expiry(kit: Kit) -> None:
    job = kit.claim_one(kit.add())
    assert kit.complete(job, Outcome.SUCCEEDED, at=10, result={"rows": 3},
                        stats={"read": 3}, progress={"done": 3, "total": 3})
    stored = kit.get(job, at=10)
    assert (stored.status, stored.result, stored.error) == (S.SUCCEEDED, {"rows": 3}, None)
    assert (stored.stats, stored.progress) == ({"read": 3}, {"done": 3, "total": 3})
    assert stored.finished_at == kit.t(10)
    assert stored.expires_at == kit.t(10 + RETENTION_S)
    assert stored.lease_expires_at is None
    assert kit.history(job) == [], "history holds attempts that did not succeed"


@pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.CANCELED])
def test_complete_failed_or_canceled_is_final_and_recorded(kit: Kit, outcome: Outcome) -> None:
    job = kit.claim_one(kit.add(max_attempts=3), at=1, worker="w9")
    error = {"code": "boom", "message": "it broke"}
    assert kit.complete(job, outcome, at=10, error=error)
    stored = kit.get(job, at=10)
    assert (stored.status.value, stored.error, stored.attempt) == (outcome.value, error, 1)
    assert (stored.finished_at, stored.expires_at) == (kit.t(10), kit.t(10 + RETENTION_S))
    [attempt] = kit.store.job_attempts("default", job.id)
    assert (attempt.attempt, attempt.status, attempt.error) == (1, outcome.value, error)
    assert (attempt.started_at, attempt.ended_at, attempt.worker_id) == (kit.t(1), kit.t(10),
                                                                        "w9")
    assert kit.claim(at=20) == []


def test_complete_retry_requeues_at_retry_at(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=3))
    error = {"code": "boom", "message": "try again"}
    assert kit.complete(job, Outcome.RETRY, at=10, error=error, retry_at=kit.t(60))
    stored = kit.get(job, at=10)
    assert (stored.status, stored.run_at, stored.error) == (S.QUEUED, kit.t(60), error)
    assert (stored.finished_at, stored.expires_at, stored.lease_expires_at) == (None, None, None)
    assert kit.history(job) == [(1, "retry")]
    assert kit.claim(at=59) == []
    [again] = kit.claim(at=60)
    assert (again.id, again.attempt) == (job.id, 2)


def test_complete_released_gives_the_attempt_back(kit: Kit) -> None:
    job = kit.claim_one(kit.add())
    assert kit.complete(job, Outcome.RELEASED, at=5)
    stored = kit.get(job, at=5)
    assert (stored.status, stored.attempt, stored.lease_expires_at) == (S.QUEUED, 1, None)
    assert stored.max_attempts == job.max_attempts + 1
    [again] = kit.claim(at=5)
    assert (again.id, again.attempt) == (job.id, 2)
    # The first claim's release, delivered twice, cannot free the second claim.
    assert not kit.complete(job, Outcome.RELEASED, at=6)
    assert kit.get(job, at=6).status is S.RUNNING


def test_release_of_a_job_asked_to_cancel_cancels_it(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=3))
    kit.store.job_set_status("default", job.id, frozenset({S.RUNNING}), S.CANCELING, now=kit.t(1))
    assert kit.complete(job, Outcome.RELEASED, at=5), "the attempt still held its claim"
    stored = kit.get(job, at=5)
    assert (stored.status, stored.finished_at) == (S.CANCELED, kit.t(5))
    assert "refused" not in [status for _, status in kit.history(job)]
    assert kit.claim(at=10) == []


def test_complete_is_refused_unless_the_attempt_is_running(kit: Kit) -> None:
    waiting = kit.add()
    assert not kit.complete(waiting, Outcome.SUCCEEDED, attempt=0)
    assert not kit.complete(waiting, Outcome.SUCCEEDED, attempt=1)
    job = kit.claim_one(waiting)
    assert kit.complete(job, Outcome.SUCCEEDED, at=1, result=1)
    for outcome in Outcome:
        assert not kit.complete(job, outcome, at=2, result=2, retry_at=kit.t(2))
    stored = kit.get(job, at=2)
    assert (stored.status, stored.result, stored.finished_at) == (S.SUCCEEDED, 1, kit.t(1))
    assert not kit.complete(Job(new_id(), "default", "k", S.RUNNING, {}, attempt=1),
                            Outcome.SUCCEEDED)


def test_late_completion_of_a_rescued_attempt_is_refused_and_recorded(kit: Kit) -> None:
    first = kit.claim_one(kit.add(max_attempts=3), worker="old")
    assert kit.rescue(at=LEASE_S + 1) == (1, 0, 0)
    second = kit.claim_one(first, at=LEASE_S + 1, worker="new")
    assert second.attempt == 2
    assert kit.complete(second, Outcome.SUCCEEDED, at=40, result="new")
    assert not kit.complete(first, Outcome.SUCCEEDED, at=41, result="old")
    assert not kit.complete(first, Outcome.FAILED, at=41, error={"code": "x", "message": "x"})
    stored = kit.get(first, at=41)
    assert (stored.status, stored.result, stored.attempt) == (S.SUCCEEDED, "new", 2)
    assert kit.history(first) == [(1, "lost"), (1, "refused"), (1, "refused")]


def test_late_completion_while_the_new_attempt_runs_is_refused(kit: Kit) -> None:
    first = kit.claim_one(kit.add(max_attempts=3))
    kit.rescue(at=LEASE_S + 1)
    second = kit.claim_one(first, at=LEASE_S + 1)
    assert not kit.complete(first, Outcome.FAILED, at=40, error={"code": "x", "message": "x"})
    stored = kit.get(first, at=40)
    assert (stored.status, stored.attempt, stored.error) == (S.RUNNING, 2, second.error)
    heartbeat = kit.store.job_heartbeat_many([(first.id, 1)], LEASE_S, now=kit.t(40))
    assert heartbeat.lost == {first.id}
    kit.store.job_progress_many([ProgressUpdate(first.id, 1, {"read": 9})])
    assert kit.get(first, at=40).stats == {}, "the old attempt's progress is fenced off"
    assert kit.complete(second, Outcome.SUCCEEDED, at=41)


def test_one_batch_of_held_and_late_reports_out_of_id_order(kit: Kit) -> None:
    kit.store.job_insert_many([kit.new(max_attempts=3) for _ in range(300)])
    jobs = kit.claim(limit=300)
    assert len(jobs) == 300
    held, late = jobs[::2], jobs[1::2]
    reports = [Completion(j.id, j.attempt, Outcome.SUCCEEDED, result=j.id) for j in held]
    reports += [Completion(j.id, j.attempt + 1, Outcome.FAILED) for j in late]
    reports.append(Completion(new_id(), 1, Outcome.SUCCEEDED))  # no such job
    reports.reverse()
    accepted = kit.store.job_complete_many(reports, now=kit.t(1))
    assert accepted == {j.id for j in held}
    assert all(kit.get(j, at=1).result == j.id for j in held)
    assert all(kit.get(j, at=1).status is S.RUNNING for j in late)
    assert all(kit.history(j) == [(2, "refused")] for j in late)
    assert all(kit.history(j) == [] for j in held)


def test_retry_of_a_job_asked_to_cancel_cancels_it(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=3))
    kit.store.job_set_status("default", job.id, frozenset({S.RUNNING}), S.CANCELING, now=kit.t(1))
    assert kit.complete(job, Outcome.RETRY, at=5, retry_at=kit.t(6),
                        error={"code": "boom", "message": "x"})
    stored = kit.get(job, at=5)
    assert stored.status is S.CANCELED
    assert (stored.finished_at, stored.expires_at) == (kit.t(5), kit.t(5 + RETENTION_S))
    assert kit.claim(at=10) == []


def test_a_job_asked_to_cancel_may_still_finish(kit: Kit) -> None:
    job = kit.claim_one(kit.add())
    kit.store.job_set_status("default", job.id, frozenset({S.RUNNING}), S.CANCELING, now=kit.t(1))
    assert kit.complete(job, Outcome.SUCCEEDED, at=2, result="done anyway")
    assert kit.get(job, at=2).status is S.SUCCEEDED


# -- rescue and promotion ------------------------------------------------------


def test_rescue_requeues_with_backoff(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=3), worker="w1")
    assert kit.rescue(at=LEASE_S, base_s=10, max_s=100) == (0, 0, 0), "lease not yet expired"
    assert kit.rescue(at=LEASE_S + 1, base_s=10, max_s=100) == (1, 0, 0)
    stored = kit.get(job, at=LEASE_S + 1)
    assert (stored.status, stored.attempt, stored.lease_expires_at) == (S.QUEUED, 1, None)
    assert stored.error is not None and stored.error["code"] == "lease_expired"
    assert stored.run_at is not None
    assert kit.t(LEASE_S + 1 + 5) <= stored.run_at <= kit.t(LEASE_S + 1 + 10)
    [lost] = kit.store.job_attempts("default", job.id)
    assert (lost.attempt, lost.status, lost.worker_id) == (1, "lost", "w1")
    assert kit.claim(at=LEASE_S + 1 + 4) == []
    [again] = kit.claim(at=LEASE_S + 1 + 10)
    assert again.attempt == 2


def test_rescue_fails_a_job_whose_attempts_are_spent(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=1))
    assert kit.rescue(at=100) == (0, 1, 0)
    stored = kit.get(job, at=100)
    assert (stored.status, stored.finished_at) == (S.FAILED, kit.t(100))
    assert stored.expires_at == kit.t(100 + RETENTION_S)
    assert kit.history(job) == [(1, "lost")]


def test_rescue_cancels_a_job_asked_to_cancel(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=3))
    kit.store.job_set_status("default", job.id, frozenset({S.RUNNING}), S.CANCELING, now=kit.t(1))
    assert kit.rescue(at=100) == (0, 0, 1)
    stored = kit.get(job, at=100)
    assert (stored.status, stored.finished_at) == (S.CANCELED, kit.t(100))


def test_rescue_leaves_jobs_completed_before_it(kit: Kit) -> None:
    done = kit.claim_one(kit.add(created=0))
    live = kit.claim_one(kit.add(created=1), at=90)
    assert kit.complete(done, Outcome.SUCCEEDED, at=LEASE_S - 1, result="kept")
    assert kit.rescue(at=100) == (0, 0, 0)
    assert (kit.get(done, at=100).status, kit.get(done, at=100).result) == (S.SUCCEEDED, "kept")
    assert kit.get(live, at=100).status is S.RUNNING
    assert kit.history(done) == []


def test_rescue_takes_at_most_limit_jobs(kit: Kit) -> None:
    kit.store.job_insert_many([kit.new(max_attempts=2) for _ in range(5)])
    assert len(kit.claim()) == 5
    result = kit.store.job_rescue_expired(0, 0, now=kit.t(100), limit=2)
    assert result.requeued == 2
    assert kit.rescue(at=100) == (3, 0, 0)


def test_promote_scheduled_jobs_when_their_time_comes(kit: Kit) -> None:
    soon = kit.add(run_at=60, status=S.SCHEDULED)
    later = kit.add(run_at=120, status=S.SCHEDULED)
    assert kit.store.job_promote_scheduled(now=kit.t(59)) == 0
    assert kit.store.job_promote_scheduled(now=kit.t(60)) == 1
    assert (kit.get(soon, at=60).status, kit.get(later, at=60).status) == (S.QUEUED, S.SCHEDULED)
    assert [j.id for j in kit.claim(at=60)] == [soon.id]
    assert kit.store.job_promote_scheduled(now=kit.t(500), limit=10) == 1


# -- user actions --------------------------------------------------------------


def test_set_status_is_guarded_by_the_source_statuses(kit: Kit) -> None:
    job = kit.add()
    assert kit.store.job_set_status("default", job.id, frozenset({S.RUNNING}), S.CANCELING,
                                    now=kit.t(1)) is None
    assert kit.get(job, at=1).status is S.QUEUED
    kit.store.tenant_create("other")
    assert kit.store.job_set_status("other", job.id, frozenset({S.QUEUED}), S.CANCELED,
                                    now=kit.t(1)) is None
    assert kit.store.job_set_status("default", new_id(), frozenset({S.QUEUED}), S.CANCELED,
                                    now=kit.t(1)) is None
    canceled = kit.store.job_set_status("default", job.id, frozenset({S.QUEUED}), S.CANCELED,
                                        now=kit.t(2))
    assert canceled is not None and canceled.status is S.CANCELED
    assert (canceled.finished_at, canceled.expires_at) == (kit.t(2), kit.t(2 + RETENTION_S))
    assert kit.get(job, at=2).status is S.CANCELED


def test_set_status_ignores_an_expired_job(kit: Kit) -> None:
    job = kit.claim_one(kit.add(retention_s=10))
    assert kit.complete(job, Outcome.FAILED, at=1, error={"code": "x", "message": "x"})
    assert kit.store.job_set_status("default", job.id, frozenset({S.FAILED}), S.QUEUED,
                                    now=kit.t(11)) is None


def test_manual_retry_keeps_history_and_clears_the_result(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=1))
    error = {"code": "boom", "message": "broke"}
    assert kit.complete(job, Outcome.FAILED, at=5, result={"partial": 1}, error=error)
    retried = kit.store.job_set_status("default", job.id, frozenset({S.FAILED}), S.QUEUED,
                                       now=kit.t(10), max_attempts=2)
    assert retried is not None
    assert (retried.status, retried.attempt, retried.max_attempts) == (S.QUEUED, 1, 2)
    assert (retried.result, retried.error, retried.finished_at, retried.expires_at) == (
        None, None, None, None)
    assert kit.history(job) == [(1, "failed")]
    [again] = kit.claim(at=10)
    assert again.attempt == 2
    assert kit.complete(again, Outcome.SUCCEEDED, at=11, result="ok")
    assert kit.history(job) == [(1, "failed")]
    assert kit.get(job, at=11).result == "ok"


def test_manual_retry_of_a_hard_canceled_job_records_the_attempt(kit: Kit) -> None:
    job = kit.claim_one(kit.add(max_attempts=1))
    kit.store.job_set_status("default", job.id, frozenset({S.RUNNING}), S.CANCELED, now=kit.t(1))
    kit.store.job_set_status("default", job.id, frozenset({S.CANCELED}), S.QUEUED, now=kit.t(2))
    assert kit.history(job) == [(1, "canceled")]


def _job_with_rows(kit: Kit, tenant: str = "default", parent: Job | None = None) -> Job:
    job = kit.claim_one(kit.add(tenant, parent_id=None if parent is None else parent.id))
    kit.store.job_errors_insert_many([JobErrorRecord(new_id(), tenant, job.id, 1, "bad row")])
    kit.store.artifact_put(Artifact(tenant, job.id, "out.csv", f"{tenant}/{job.id}/out.csv", 3,
                                    "0" * 64, "text/csv"))
    assert kit.complete(job, Outcome.RETRY, retry_at=kit.t(1000),
                        error={"code": "x", "message": "x"})
    return job


def _rows_left(kit: Kit, job: Job) -> tuple[bool, int, int, int]:
    t, j = job.tenant_id, job.id
    return (kit.store.job_get(t, j, now=kit.t()) is not None,
            len(kit.store.job_errors_list(t, j)), len(kit.store.job_attempts(t, j)),
            len(kit.store.artifact_list(t, j)))


def test_delete_removes_descendants_and_their_rows(kit: Kit) -> None:
    parent = _job_with_rows(kit)
    child = _job_with_rows(kit, parent=parent)
    grandchild = _job_with_rows(kit, parent=child)
    sibling = _job_with_rows(kit)
    assert _rows_left(kit, grandchild) == (True, 1, 1, 1)
    assert sorted(kit.store.job_delete("default", parent.id)) == sorted(
        [parent.id, child.id, grandchild.id])
    for gone in (parent, child, grandchild):
        assert _rows_left(kit, gone) == (False, 0, 0, 0)
    assert _rows_left(kit, sibling) == (True, 1, 1, 1)
    assert kit.store.job_delete("default", parent.id) == []


def test_delete_of_another_tenants_job_deletes_nothing(kit: Kit) -> None:
    kit.store.tenant_create("other")
    job = _job_with_rows(kit)
    assert kit.store.job_delete("other", job.id) == []
    assert _rows_left(kit, job) == (True, 1, 1, 1)


def test_purge_deletes_expired_jobs_and_their_rows(kit: Kit) -> None:
    kit.store.tenant_create("other")
    expired = [_job_with_rows(kit), _job_with_rows(kit, "other")]
    fresh = kit.claim_one(kit.add(retention_s=10_000))
    assert kit.complete(fresh, Outcome.SUCCEEDED, at=1000)
    for job in kit.claim(at=1000):
        assert kit.complete(job, Outcome.SUCCEEDED, at=1000)
    waiting = kit.add()
    assert kit.store.job_purge_expired(now=kit.t(1000 + RETENTION_S - 1)) == []
    purged = kit.store.job_purge_expired(now=kit.t(1000 + RETENTION_S))
    assert sorted(purged) == sorted((j.tenant_id, j.id) for j in expired)
    for job in expired:
        assert _rows_left(kit, job) == (False, 0, 0, 0)
    assert _rows_left(kit, fresh)[0] and _rows_left(kit, waiting)[0]
    assert kit.store.job_purge_expired(now=kit.t(1000 + RETENTION_S)) == []


def test_purge_takes_at_most_limit_jobs(kit: Kit) -> None:
    kit.store.job_insert_many([kit.new() for _ in range(3)])
    for job in kit.claim():
        assert kit.complete(job, Outcome.SUCCEEDED, at=1)
    assert len(kit.store.job_purge_expired(now=kit.t(RETENTION_S + 1), limit=2)) == 2
    assert len(kit.store.job_purge_expired(now=kit.t(RETENTION_S + 1), limit=2)) == 1


# -- per-record errors and artifacts -------------------------------------------


def test_errors_insert_and_page_in_creation_order(kit: Kit) -> None:
    kit.store.tenant_create("other")
    job = kit.claim_one(kit.add())
    records = [JobErrorRecord(new_id(), "default", job.id, 1, f"row {i} bad", code="422",
                              source="rows.csv", record={"i": i}, retry_data=[i],
                              created_at=kit.t(i)) for i in range(5)]
    kit.store.job_errors_insert_many(records[:3])
    kit.store.job_errors_insert_many(records[3:])
    kit.store.job_errors_insert_many([])
    first = kit.store.job_errors_list("default", job.id, limit=2)
    assert [e.message for e in first] == ["row 0 bad", "row 1 bad"]
    rest = kit.store.job_errors_list("default", job.id, after_id=first[-1].id)
    assert [e.message for e in rest] == ["row 2 bad", "row 3 bad", "row 4 bad"]
    e = rest[0]
    assert (e.code, e.source, e.record, e.retry_data, e.attempt) == ("422", "rows.csv",
                                                                      {"i": 2}, [2], 1)
    assert (e.resolved, e.retried, e.created_at) == (False, False, kit.t(2))
    assert kit.store.job_errors_list("other", job.id) == []


def test_artifacts_are_upserted_by_name(kit: Kit) -> None:
    kit.store.tenant_create("other")
    job = kit.add()

    def put(name: str, size: int) -> None:
        kit.store.artifact_put(Artifact("default", job.id, name, f"default/{job.id}/{name}",
                                        size, "a" * 64, "text/plain", kit.t()))

    put("b.txt", 1)
    put("a.txt", 2)
    put("b.txt", 3)
    listed = kit.store.artifact_list("default", job.id)
    assert [(a.name, a.size) for a in listed] == [("a.txt", 2), ("b.txt", 3)]
    assert (listed[0].blob_key, listed[0].content_type) == (f"default/{job.id}/a.txt",
                                                            "text/plain")
    assert kit.store.artifact_list("other", job.id) == []


# -- coordination --------------------------------------------------------------


def test_maintenance_lock_has_one_holder_at_a_time(store: Store, database_url: str) -> None:
    rival = open_store(database_url)
    try:
        with store.maintenance_lock() as held:
            assert held
            with rival.maintenance_lock() as rival_held:
                assert not rival_held
        with rival.maintenance_lock() as rival_held:
            assert rival_held
            with store.maintenance_lock() as held_again:
                assert not held_again
    finally:
        rival.close()


def test_queue_waiter_times_out_then_wakes_after_an_insert(kit: Kit,
                                                           database_url: str) -> None:
    waiter = kit.store.queue_waiter()
    other = open_store(database_url)
    try:
        assert waiter.wait(0.05) is False
        Kit(other, kit.t0).add()
        assert waiter.wait(10) is True
    finally:
        waiter.close()
        other.close()
