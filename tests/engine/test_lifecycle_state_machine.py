"""The job lifecycle as a hypothesis state machine: the Engine on a SQLite file.

Rules submit, claim, heartbeat, finish, fail, release, cancel, retry, move the
clock (promoting and rescuing), purge, and send late completions from attempts
that lost their claim. A model says what each job's status must be; after
every step the invariants compare it with the store and check the promises of
DESIGN.md §3: only allowed transitions, terminal jobs stay put, one holder per
attempt, stale completions refused.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import jobdock.errors as errors
from jobdock.blobs.local import LocalBlobStore
from jobdock.config import Settings
from jobdock.engine import Engine, KindSpec, SubmitRequest
from jobdock.model import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Attempt,
    Completion,
    Job,
    JobQuery,
    JobStatus,
    Outcome,
)
from jobdock.store import Store, open_store

S = JobStatus
LEASE_S = 30.0
RETENTION_S = 86_400
MAX_ATTEMPTS = 3
TENANTS = ("default", "t2")


class ClockedStore:
    """Hands every store call that takes `now` the machine's clock when the caller
    leaves it out.

    The engine's worker-side calls (claim, heartbeat, complete, cancel, retry)
    do not take `now`; this lets the machine's clock drive them all the same,
    with the real SQLite store underneath.
    """

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        try:
            signature = inspect.signature(attr)
        except (TypeError, ValueError):
            return attr
        if "now" not in signature.parameters:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            if bound.arguments.get("now") is None:
                bound.arguments["now"] = self._clock()
            return attr(*bound.args, **bound.kwargs)

        return timed


@dataclass
class Expected:
    tenant: str
    status: JobStatus
    attempt: int = 0
    max_attempts: int = MAX_ATTEMPTS
    run_at: datetime | None = None  # for scheduled jobs
    lease_until: datetime | None = None
    result: Any = None


@dataclass(frozen=True)
class Claim:
    name: str  # worker/job id: one claim call hands a job to a worker once
    job: Job = field(compare=False, hash=False)  # as the claim returned it

    @property
    def key(self) -> tuple[str, int]:
        return (self.job.id, self.job.attempt)


def without(rows: list[Attempt], removed: list[Attempt]) -> list[Attempt]:
    """`rows` less each of `removed`, which must all be there (history is never rewritten)."""
    left = list(rows)
    for row in removed:
        assert row in left, f"history lost {row}"
        left.remove(row)
    return left


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="jobdock-sm-"))
        # Ahead of the real clock, so that times the engine takes from it (a
        # retry's run_at) are never in the machine's future.
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        self.store = open_store(f"sqlite:///{self.dir / 'jobdock.db'}")
        self.store.migrate()
        clocked: Any = ClockedStore(self.store, lambda: self.now)
        self.engine = Engine(clocked, LocalBlobStore(self.dir / "blobs"), Settings(
            retention_s=RETENTION_S, lease_s=LEASE_S, retry_backoff_base_s=0.0,
            retry_backoff_max_s=0.0))
        self.engine.register_kind(KindSpec("k", max_attempts=MAX_ATTEMPTS))
        self.engine.create_tenant("t2")
        self.jobs: dict[str, Expected] = {}
        self.claims: list[Claim] = []
        self.released: set[Claim] = set()
        # What the invariants saw after the previous step.
        self.seen: dict[str, Job] = {}
        self.terminal_rows: dict[str, Job] = {}
        self.may_lower_attempt: set[str] = set()
        self.retried: set[str] = set()
        self.workers = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------
    def live(self, claim: Claim) -> bool:
        expected = self.jobs.get(claim.job.id)
        return (expected is not None and expected.status in ACTIVE
                and expected.attempt == claim.job.attempt)

    def held_claims(self) -> list[Claim]:
        """Claims whose worker still thinks it holds the job (it did not give it back).

        A released attempt is not held any more; its number is never handed out
        again, so anything sent for it later is stale and refused."""
        return [c for c in self.claims if c not in self.released]

    def live_claims(self) -> list[Claim]:
        return [c for c in self.claims if self.live(c)]

    def stale_claims(self) -> list[Claim]:
        return [c for c in self.claims if not self.live(c)]

    def overtaken_claims(self) -> list[Claim]:
        """Stale claims of jobs that run again under a newer attempt: the dangerous ones."""
        return [c for c in self.stale_claims()
                if c.job.id in self.jobs and self.jobs[c.job.id].status in ACTIVE]

    def row(self, job_id: str) -> Job | None:
        tenant = self.jobs[job_id].tenant if job_id in self.jobs else "default"
        return self.store.job_get(tenant, job_id, now=self.now)

    def end_attempt(self, claim: Claim, completion: Completion) -> None:
        """Send a live attempt's completion and update the model as the contract says."""
        expected = self.jobs[claim.job.id]
        canceling = expected.status is S.CANCELING
        assert self.engine.complete([completion]) == {claim.job.id}
        expected.lease_until = None
        outcome = completion.outcome
        if outcome is Outcome.SUCCEEDED:
            expected.status, expected.result = S.SUCCEEDED, completion.result
        elif outcome is Outcome.FAILED:
            expected.status = S.FAILED
        elif outcome is Outcome.CANCELED or canceling:
            expected.status = S.CANCELED  # a retry or release of a job asked to cancel
        else:
            expected.status = S.QUEUED
        if outcome is Outcome.RELEASED:
            expected.max_attempts += 1  # the try is given back; the number is not
            self.released.add(claim)

    # -- rules ---------------------------------------------------------------
    @rule(tenant=st.sampled_from(TENANTS), n=st.integers(1, 3), delayed=st.booleans(),
          attempts=st.sampled_from([None, 1, 2]))
    def submit(self, tenant: str, n: int, delayed: bool, attempts: int | None) -> None:
        run_at = self.now + timedelta(seconds=45) if delayed else None
        requests = [SubmitRequest("k", {"i": i}, run_at=run_at, max_attempts=attempts)
                    for i in range(n)]
        for job in self.engine.submit_many(requests, tenant, now=self.now):
            assert job.status is (S.SCHEDULED if delayed else S.QUEUED)
            assert job.max_attempts == (attempts or MAX_ATTEMPTS)
            self.jobs[job.id] = Expected(tenant, job.status, max_attempts=job.max_attempts,
                                         run_at=run_at)

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        self.workers += 1
        worker = f"w{self.workers}"
        queued = {i for i, e in self.jobs.items() if e.status is S.QUEUED}
        claimed = self.engine.claim(worker, ["k"], limit)
        ids = [job.id for job in claimed]
        assert len(ids) == len(set(ids)) == min(limit, len(queued))
        assert set(ids) <= queued, "only queued, due jobs are claimed"
        waiting_tenants = {self.jobs[i].tenant for i in queued}
        if limit >= len(waiting_tenants):
            assert {self.jobs[i].tenant for i in ids} == waiting_tenants, "round robin"
        for job in claimed:
            expected = self.jobs[job.id]
            assert (job.status, job.attempt, job.worker_id) == (
                S.RUNNING, expected.attempt + 1, worker)
            expected.status, expected.attempt = S.RUNNING, job.attempt
            expected.lease_until = self.now + timedelta(seconds=LEASE_S)
            self.claims.append(Claim(f"{worker}/{job.id}", job))

    @precondition(lambda self: self.held_claims())
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.held_claims()))
        result = self.engine.heartbeat([claim.key])
        if self.live(claim):
            expected = self.jobs[claim.job.id]
            assert result.lost == set()
            assert result.canceling == ({claim.job.id} if expected.status is S.CANCELING
                                        else set())
            expected.lease_until = self.now + timedelta(seconds=LEASE_S)
        else:
            assert (result.lost, result.canceling) == ({claim.job.id}, set())

    @precondition(lambda self: self.live_claims())
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.live_claims()))
        result = {"job": claim.job.id, "attempt": claim.job.attempt}
        self.end_attempt(claim, Completion(claim.job.id, claim.job.attempt, Outcome.SUCCEEDED,
                                           result=result))

    @precondition(lambda self: self.live_claims())
    @rule(data=st.data(), cancelled=st.booleans())
    def fail(self, data: st.DataObject, cancelled: bool) -> None:
        claim = data.draw(st.sampled_from(self.live_claims()))
        completion = self.engine.failure(claim.job, RuntimeError("boom"), cancelled)
        if cancelled:
            assert completion.outcome is Outcome.CANCELED
        elif claim.job.attempt < self.jobs[claim.job.id].max_attempts:
            assert completion.outcome is Outcome.RETRY
            assert completion.retry_at is not None and completion.retry_at <= self.now
        else:
            assert completion.outcome is Outcome.FAILED
        self.end_attempt(claim, completion)

    @precondition(lambda self: self.live_claims())
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.live_claims()))
        self.end_attempt(claim, Completion(claim.job.id, claim.job.attempt, Outcome.RELEASED))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), hard=st.booleans())
    def cancel(self, data: st.DataObject, hard: bool) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        expected = self.jobs[job_id]
        before = expected.status
        if before in TERMINAL and before is not S.CANCELED:
            try:
                self.engine.cancel(expected.tenant, job_id, hard=hard)
            except errors.IllegalTransition:
                return
            raise AssertionError(f"canceling a {before} job must be refused")
        job = self.engine.cancel(expected.tenant, job_id, hard=hard)
        if before in ACTIVE and not hard:
            expected.status = S.CANCELING
        else:
            expected.status = S.CANCELED
            expected.lease_until = None
        assert job.status is expected.status

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        expected = self.jobs[job_id]
        if expected.status not in (S.FAILED, S.CANCELED):
            try:
                self.engine.retry(expected.tenant, job_id)
            except errors.IllegalTransition:
                return
            raise AssertionError(f"retrying a {expected.status} job must be refused")
        history = self.store.job_attempts(expected.tenant, job_id)
        job = self.engine.retry(expected.tenant, job_id)
        assert (job.status, job.attempt, job.result) == (S.QUEUED, expected.attempt, None)
        assert job.max_attempts == expected.attempt + MAX_ATTEMPTS
        after = self.store.job_attempts(expected.tenant, job_id)
        assert len(without(after, history)) <= 1, "a retry keeps the history"
        ended = [a.attempt for a in after if a.status != "refused"]
        assert len(ended) == len(set(ended)), "each attempt's end is recorded once"
        expected.status, expected.max_attempts, expected.result = S.QUEUED, job.max_attempts, None
        self.retried.add(job_id)

    @rule(seconds=st.sampled_from([1, 20, LEASE_S + 1, 2 * LEASE_S + 1]))
    def advance_clock_and_rescue(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        due = [e for e in self.jobs.values()
               if e.status is S.SCHEDULED and e.run_at is not None and e.run_at <= self.now]
        assert self.store.job_promote_scheduled(now=self.now) == len(due)
        for expected in due:
            expected.status = S.QUEUED
        counts = {S.QUEUED: 0, S.FAILED: 0, S.CANCELED: 0}
        for expected in self.jobs.values():
            if expected.status not in ACTIVE or expected.lease_until is None:
                continue
            if expected.lease_until >= self.now:
                continue
            if expected.status is S.CANCELING:
                expected.status = S.CANCELED
            elif expected.attempt >= expected.max_attempts:
                expected.status = S.FAILED
            else:
                expected.status = S.QUEUED
            expected.lease_until = None
            counts[expected.status] += 1
        rescued = self.store.job_rescue_expired(0.0, 0.0, now=self.now)
        assert (rescued.requeued, rescued.failed, rescued.canceled) == (
            counts[S.QUEUED], counts[S.FAILED], counts[S.CANCELED])

    @rule()
    def expire_and_purge(self) -> None:
        far = self.now + timedelta(seconds=RETENTION_S + 1)
        finished = {i for i, e in self.jobs.items() if e.status in TERMINAL}
        for job_id, expected in self.jobs.items():
            visible = self.store.job_get(expected.tenant, job_id, now=far) is not None
            assert visible == (job_id not in finished), "expired jobs are gone at once"
        purged = self.store.job_purge_expired(now=far, limit=10_000)
        assert {job_id for _, job_id in purged} == finished
        for job_id in finished:
            del self.jobs[job_id]
            self.seen.pop(job_id, None)
            self.terminal_rows.pop(job_id, None)

    @precondition(lambda self: self.stale_claims())
    @rule(data=st.data(), outcome=st.sampled_from(list(Outcome)))
    def late_completion(self, data: st.DataObject, outcome: Outcome) -> None:
        self.refuse(data.draw(st.sampled_from(self.stale_claims())), outcome)

    @precondition(lambda self: self.overtaken_claims())
    @rule(data=st.data(), outcome=st.sampled_from(list(Outcome)))
    def late_completion_while_rerun(self, data: st.DataObject, outcome: Outcome) -> None:
        self.refuse(data.draw(st.sampled_from(self.overtaken_claims())), outcome)

    @precondition(lambda self: self.overtaken_claims())
    @rule(data=st.data())
    def late_heartbeat_while_rerun(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.overtaken_claims()))
        result = self.engine.heartbeat([claim.key])
        assert (result.lost, result.canceling) == ({claim.job.id}, set())

    def refuse(self, claim: Claim, outcome: Outcome) -> None:
        """Send a stale attempt's completion: refused, recorded, nothing else changes."""
        job_id, attempt = claim.key
        before = self.row(job_id)
        tenant = before.tenant_id if before is not None else "default"
        history = self.store.job_attempts(tenant, job_id)
        late = Completion(job_id, attempt, outcome, result="late", retry_at=self.now,
                          error={"code": "late", "message": "late"})
        assert self.engine.complete([late]) == set(), "a stale attempt's result is refused"
        assert self.row(job_id) == before, "a refused completion changes nothing"
        if before is not None:
            added = without(self.store.job_attempts(tenant, job_id), history)
            assert [(a.attempt, a.status) for a in added] == [(attempt, "refused")]

    # -- invariants ------------------------------------------------------------
    @invariant()
    def store_matches_the_model(self) -> None:
        rows: dict[str, Job] = {}
        for tenant in TENANTS:
            for job in self.store.job_list(JobQuery(tenant_id=tenant, page_size=10_000),
                                           now=self.now):
                rows[job.id] = job
        assert set(rows) == set(self.jobs)
        for job_id, job in rows.items():
            expected = self.jobs[job_id]
            assert (job.status, job.attempt, job.max_attempts) == (
                expected.status, expected.attempt, expected.max_attempts), job_id
            if job.status is S.SUCCEEDED:
                assert job.result == expected.result, "a succeeded job keeps its result"
            if job.status in ACTIVE:
                assert job.lease_expires_at == expected.lease_until
            self.check_change(self.seen.get(job_id), job)
        for status in JobStatus:
            counted = sum(len(self.store.job_list(
                JobQuery(tenant_id=t, statuses=[status], page_size=10_000), now=self.now))
                for t in TENANTS)
            assert counted == sum(1 for e in self.jobs.values() if e.status is status), status
        self.seen = rows
        self.may_lower_attempt.clear()
        self.retried.clear()

    def check_change(self, before: Job | None, after: Job) -> None:
        if before is None:
            assert after.status in (S.QUEUED, S.SCHEDULED) and after.attempt == 0
            return
        if after.status is not before.status:
            assert after.status in TRANSITIONS[before.status], (
                f"{after.id}: {before.status} -> {after.status} is not in the table")
        if after.attempt < before.attempt:
            assert after.id in self.may_lower_attempt, "only a release gives an attempt back"
            assert after.attempt == before.attempt - 1
        if before.status in TERMINAL and after.id not in self.retried:
            assert after == self.terminal_rows[after.id], "a finished job never changes"
        if after.status in TERMINAL:
            self.terminal_rows.setdefault(after.id, after)
        else:
            self.terminal_rows.pop(after.id, None)

    @invariant()
    def one_holder_per_attempt(self) -> None:
        held = [c.key for c in self.claims if c not in self.released]
        assert len(held) == len(set(held)), "an (id, attempt) was handed out twice"
        for job_id in self.jobs:
            assert len([c for c in self.claims if c.job.id == job_id and self.live(c)]) <= 1


Lifecycle.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestLifecycle = Lifecycle.TestCase
