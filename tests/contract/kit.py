"""`Kit`: a store with a fixed clock and short ways to make, claim and finish jobs,
for the contract suite."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobdock.ids import new_id
from jobdock.model import Completion, Job, JobQuery, JobStatus, NewJob, Outcome
from jobdock.store import Store

LEASE_S = 30.0
RETENTION_S = 3600
S = JobStatus


@dataclass
class Kit:
    """A store plus a fixed clock: `kit.t(5)` is five seconds after t0."""

    store: Store
    t0: datetime

    def t(self, seconds: float = 0.0) -> datetime:
        return self.t0 + timedelta(seconds=seconds)

    def new(self, tenant: str = "default", kind: str = "k", *, created: float = 0.0,
            run_at: float | None = None, status: JobStatus = S.QUEUED, max_attempts: int = 1,
            input: Any = None, retention_s: int = RETENTION_S, **fields: Any) -> NewJob:
        created_at = self.t(created)
        return NewJob(
            id=new_id(created_at.timestamp()), tenant_id=tenant, kind=kind,
            input={"n": 1} if input is None else input, status=status,
            run_at=created_at if run_at is None else self.t(run_at), created_at=created_at,
            max_attempts=max_attempts, retention_s=retention_s, **fields)

    def add(self, *args: Any, **kwargs: Any) -> Job:
        return self.store.job_insert_many([self.new(*args, **kwargs)])[0].job

    def claim(self, limit: int = 10, kinds: tuple[str, ...] = ("k",), at: float = 0.0,
              worker: str = "w1") -> list[Job]:
        return self.store.job_claim_many(worker, list(kinds), limit, LEASE_S, now=self.t(at))

    def claim_one(self, job: Job, at: float = 0.0, worker: str = "w1") -> Job:
        claimed = self.claim(100, (job.kind,), at, worker)
        assert [j.id for j in claimed] == [job.id], "the test meant to claim this job alone"
        return claimed[0]

    def get(self, job: Job, at: float = 0.0) -> Job:
        found = self.store.job_get(job.tenant_id, job.id, now=self.t(at))
        assert found is not None, f"job {job.id} is missing"
        return found

    def complete(self, job: Job, outcome: Outcome, at: float = 0.0, attempt: int | None = None,
                 **fields: Any) -> bool:
        completion = Completion(job.id, job.attempt if attempt is None else attempt, outcome,
                                **fields)
        return job.id in self.store.job_complete_many([completion], now=self.t(at))

    def rescue(self, at: float, base_s: float = 0.0, max_s: float = 0.0) -> tuple[int, int, int]:
        r = self.store.job_rescue_expired(base_s, max_s, now=self.t(at))
        return r.requeued, r.failed, r.canceled

    def history(self, job: Job) -> list[tuple[int, str]]:
        return [(a.attempt, a.status) for a in self.store.job_attempts(job.tenant_id, job.id)]

    def ids(self, **query: Any) -> list[str]:
        at = query.pop("at", 0.0)
        query.setdefault("tenant_id", "default")
        return [j.id for j in self.store.job_list(JobQuery(**query), now=self.t(at))]
