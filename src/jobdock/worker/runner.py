"""The worker: claims jobs in batches, runs them on threads, reports in batches.

Threads of one worker process:

- the claimer (the caller of `run()`): claims due jobs when there is room and
  waits on the store's queue waiter (NOTIFY, or SQLite's data_version) when idle;
- `concurrency` executor threads running job functions;
- the heartbeat thread: renews the leases of every held job, delivers cancel
  requests, enforces timeouts. It has its own connection and never runs job
  code, so a busy job cannot starve it;
- the flusher: writes counters, progress, per-record errors and completions
  together every `flush_interval_s`;
- the maintenance thread: `engine.maintain()` every `maintenance_interval_s`
  (the store's lock lets one process at a time do it).
"""

from __future__ import annotations

import inspect
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jobdock.errors as errors
from jobdock.engine import Engine
from jobdock.ids import new_id
from jobdock.model import EMPTY, Completion, Job, JobErrorRecord, Outcome, ProgressUpdate
from jobdock.worker.context import JobContext

log = logging.getLogger("jobdock.worker")

JobFunction = Callable[[JobContext, Any], Any]
ClaimObserver = Callable[[float], None]
_STOP = object()


@dataclass(slots=True)
class Held:
    """A job this worker holds a lease on, waiting or running."""

    job: Job
    ctx: JobContext
    started: float | None = None  # monotonic time the function started (jobs with a timeout)
    reported: bool = False  # a completion was already buffered (e.g. on timeout)


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    canceled: int = 0
    refused: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)


class Worker:
    def __init__(self, engine: Engine, functions: dict[str, JobFunction], concurrency: int = 8,
                 burst: bool = False, worker_id: str | None = None,
                 shutdown_grace_s: float = 30.0,
                 observe_claim: ClaimObserver | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.engine = engine
        self.settings = engine.settings
        self.functions = functions
        self.kinds = sorted(functions)
        self.concurrency = concurrency
        self.burst = burst
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"
        self.shutdown_grace_s = shutdown_grace_s
        # Told how long each claim takes, when this process serves metrics.
        self.observe_claim = observe_claim
        self.stats = WorkerStats()
        self._held: dict[str, Held] = {}
        self._timed: dict[str, Held] = {}  # the held jobs that have a timeout
        self._held_lock = threading.Lock()
        self._cancel_cond = threading.Condition()  # JobContext.wait() and cancel requests
        self._ready: queue.SimpleQueue[Held | object] = queue.SimpleQueue()
        self._room = threading.Event()  # set when held jobs fall to _low_water
        self._low_water = 0
        self._completions: list[Completion] = []
        self._finished_jobs: dict[str, Job] = {}  # the buffered completions' jobs, for events
        self._errors: list[JobErrorRecord] = []
        self._buffer_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._flush_now = threading.Event()  # out of jobs, or many results: write them now
        # Buffered completions that make the flusher start at once: each keeps its job
        # (for the finish listeners) until written, and a drain of fast jobs would pile
        # up thousands between two timed flushes.
        self._flush_at = 2 * self.settings.claim_batch
        # Results buffered or being written. The claim loop takes no more jobs while
        # there are _unflushed_max of them: when the flushes were slower than the jobs
        # (PostgreSQL, fast jobs), thousands piled up, each with its job and result (a
        # drain's peak RSS grew with the queue: 46-52 MB for 40,000 jobs). Not fewer:
        # each flush waits for a WAL flush, so a drain by one worker went as fast as
        # its flushes were large (a bound of 1,024: 15% slower).
        self._unflushed = 0
        self._unflushed_max = 4 * self._flush_at
        # When the last write of results ended: the first result after a quiet spell
        # (such as a worker's first) is written at once, not at the next timed flush.
        self._last_written = 0.0
        self._drained = False  # the last claim found fewer jobs than it asked for
        self._flushed = threading.Event()
        self._rate = _Rate(min_jobs=2 * concurrency)
        self._threads: list[threading.Thread] = []

    # -- public ------------------------------------------------------------
    def run(self) -> WorkerStats:
        """Run until `stop()` (or, with burst, until nothing is left); return counts."""
        self._start_threads()
        waiter = self.engine.store.queue_waiter()
        try:
            self._claim_loop(waiter)
        finally:
            waiter.close()
            self._shut_down()
        return self.stats

    def stop(self) -> None:
        """Stop claiming; running jobs finish (within the grace period), waiting ones are
        given back."""
        self._stopping.set()

    # -- claiming ----------------------------------------------------------
    def _claim_loop(self, waiter: Any) -> None:
        poll = self.settings.poll_interval_s
        while not self._stopping.is_set():
            self._room.clear()
            room = self._room_for_more()
            if room <= 0:
                self._room.wait(0.1)
                continue
            # Counted before the claim: a job finishing during the claim may have
            # spawned children the claim did not see yet, so burst must look again.
            held_before = self._held_count()
            try:
                jobs = self._claim(room)
            except errors.StoreError as exc:
                log.warning("claim failed, retrying: %s", exc)
                self._stopping.wait(min(poll, 1.0))
                continue
            self._accept(jobs)
            self._drained = len(jobs) < room
            if len(jobs) < room:
                if self.burst and not jobs and held_before == 0:
                    return
                if not jobs:
                    waiter.wait(poll)

    def _claim(self, limit: int) -> list[Job]:
        if self.observe_claim is None:
            return self.engine.claim(self.worker_id, self.kinds, limit)
        start = time.perf_counter()
        try:
            return self.engine.claim(self.worker_id, self.kinds, limit)
        finally:
            self.observe_claim(time.perf_counter() - start)

    def _room_for_more(self) -> int:
        """How many jobs to claim now: enough to keep the threads busy for ~0.2 s, once
        half of that is left (0 before).

        Fast jobs get large batches (few round trips); slow jobs are not hoarded,
        so other workers can take them. Waiting for half the target to be done
        makes claims fewer and larger (each is a write that other workers wait
        for, on SQLite) while the threads still have jobs queued."""
        if self._unflushed >= self._unflushed_max:
            return 0  # the flusher wakes the loop when it has written them
        held = self._held_count()
        rate = self._rate.per_second(self.stats.claimed - held)
        target = max(self.concurrency * 2, int(rate * 0.2))
        target = min(target, self.settings.claim_batch + self.concurrency)
        self._low_water = target // 2
        if held > self._low_water:
            return 0
        return min(target - held, self.settings.claim_batch)

    def _held_count(self) -> int:
        with self._held_lock:
            return len(self._held)

    def _accept(self, jobs: list[Job]) -> None:
        self.stats.claimed += len(jobs)
        with self._held_lock:
            for job in jobs:
                held = Held(job, JobContext(job, self))
                self._held[job.id] = held
                if job.timeout_s:
                    self._timed[job.id] = held
                self._ready.put(held)

    # -- running -----------------------------------------------------------
    def _execute_loop(self) -> None:
        while True:
            item = self._ready.get()
            if item is _STOP:
                return
            assert isinstance(item, Held)
            if self._stopping.is_set():
                self._finish(item, Completion(item.job.id, item.job.attempt, Outcome.RELEASED))
                continue
            self._run_one(item)

    def _run_one(self, held: Held) -> None:
        job, ctx = held.job, held.ctx
        function = self.functions[job.kind]
        if job.timeout_s:
            held.started = time.monotonic()
        try:
            result = function(ctx, self._input_of(job))
            if inspect.isawaitable(result):
                import asyncio  # only for async job functions: most workers never load it

                result = asyncio.run(_await(result))
        except BaseException as exc:
            if not isinstance(exc, Exception | errors.JobCanceled):
                raise
            if not isinstance(exc, errors.JobCanceled):
                log.info("job %s (%s) attempt %d failed: %r", job.id, job.kind, job.attempt, exc)
            stats, progress = ctx._snapshot()
            completion = self.engine.failure(job, exc, ctx.cancelled and not ctx.timed_out,
                                             stats, progress)
        else:
            stats, progress = ctx._snapshot()
            completion = Completion(job.id, job.attempt, Outcome.SUCCEEDED, result=result,
                                    stats=stats, progress=progress)
        self._finish(held, completion)

    def _input_of(self, job: Job) -> Any:
        """The input as the function declared it: a pydantic model when the kind has one."""
        spec = self.engine.kinds.get(job.kind)
        model = None if spec is None else spec.model()
        if model is None:
            return job.input
        return model.model_validate(job.input)

    def _finish(self, held: Held, completion: Completion) -> None:
        job_id = held.job.id
        with self._held_lock:
            self._held.pop(job_id, None)
            self._timed.pop(job_id, None)
            # Only then is the claim loop wanted: waking it at every job costs CPU.
            wake = len(self._held) <= self._low_water
            out_of_jobs = self._drained and not self._held
            reported, held.reported = held.reported, True
        buffered, first = 0, False
        if not reported:
            with self._buffer_lock:
                self._completions.append(completion)
                self._finished_jobs[job_id] = _ended(held.job)
                buffered = len(self._completions)
                self._unflushed += 1
                first = self._unflushed == 1
        if wake:
            self._room.set()
        if out_of_jobs or buffered >= self._flush_at or (
                first and time.monotonic() - self._last_written >= self.settings.flush_interval_s):
            self._flush_now.set()

    def _buffer_error(self, record: JobErrorRecord) -> None:
        with self._buffer_lock:
            self._errors.append(record)

    # -- heartbeat, timeouts, cancel ---------------------------------------
    def _heartbeat_loop(self) -> None:
        interval = min(self.settings.heartbeat_interval_s, self.settings.lease_s / 3)
        while not self._stopped.wait(interval):
            self._check_timeouts()
            with self._held_lock:
                claims = [(h.job.id, h.job.attempt) for h in self._held.values()]
            if not claims:
                continue
            try:
                result = self.engine.heartbeat(claims)
            except errors.StoreError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            with self._held_lock:
                for job_id in result.lost:
                    held = self._held.get(job_id)
                    if held is not None:
                        self.stats.lost += 1
                        held.ctx.lost = True
                        held.ctx._request_cancel()
                for job_id in result.canceling:
                    held = self._held.get(job_id)
                    if held is not None:
                        held.ctx._request_cancel()

    def _check_timeouts(self) -> None:
        expired = []
        with self._held_lock:
            if not self._timed:
                return
            now = time.monotonic()
            for held in self._timed.values():
                limit = held.job.timeout_s
                if limit and held.started is not None and now - held.started > limit:
                    expired.append(held)
        for held in expired:
            # The function cannot be killed from here: it is asked to stop, and the
            # attempt is reported now; whatever it returns later is dropped.
            held.ctx.timed_out = True
            held.ctx._request_cancel()
            exc = TimeoutError(f"job exceeded its timeout of {held.job.timeout_s} s")
            self._finish(held, self.engine.failure(held.job, exc, cancelled=False))

    # -- flushing ----------------------------------------------------------
    def _flush_loop(self) -> None:
        # Every flush_interval_s, or at once when the worker has run out of jobs (the
        # queue had no more and the last held job ended: nothing is gained by
        # waiting then, and the last results would be late) or has many buffered.
        while True:
            self._flush_now.wait(self.settings.flush_interval_s)
            self._flush_now.clear()
            if self._stopped.is_set():
                break
            self._flush_once()
        self._flush_until_empty()
        self._flushed.set()

    def _flush_once(self) -> bool:
        """Write buffered errors, progress and completions; False when the store failed."""
        with self._buffer_lock:
            records, self._errors = self._errors, []
            completions, self._completions = self._completions, []
            jobs, self._finished_jobs = self._finished_jobs, {}
        with self._held_lock:
            updates = []
            for held in self._held.values():
                changed = held.ctx._take_progress()
                if changed is not None:
                    updates.append(ProgressUpdate(held.job.id, held.job.attempt, *changed))
        try:
            self.engine.record_errors(records)
            self.engine.record_progress(updates)
            accepted = self.engine.complete(completions, jobs)
        except errors.StoreError as exc:
            log.warning("flush failed, keeping %d results for the next try: %s",
                        len(completions), exc)
            with self._buffer_lock:
                self._errors[:0] = records
                self._completions[:0] = completions
                self._finished_jobs.update(jobs)
            return False
        with self._buffer_lock:
            self._unflushed -= len(completions)
        if completions:
            self._last_written = time.monotonic()
            self._room.set()  # the claim loop may be waiting for these to be written
        self._count(completions, accepted)
        return True

    def _flush_until_empty(self) -> None:
        deadline = time.monotonic() + self.shutdown_grace_s
        while True:
            with self._buffer_lock:
                if not self._completions and not self._errors:
                    return
            if self._flush_once():
                continue
            if time.monotonic() > deadline:
                # Not lost: the leases run out and the rescuer re-queues these jobs.
                log.error("could not write results at shutdown; their jobs will be rescued")
                return
            time.sleep(0.5)

    def _count(self, completions: list[Completion], accepted: set[str]) -> None:
        s = self.stats
        for c in completions:
            if c.job_id not in accepted:
                s.refused += 1
                log.warning("result of job %s attempt %d refused: its lease was lost",
                            c.job_id, c.attempt)
            elif c.outcome is Outcome.SUCCEEDED:
                s.succeeded += 1
            elif c.outcome is Outcome.FAILED:
                s.failed += 1
            elif c.outcome is Outcome.RETRY:
                s.retried += 1
            elif c.outcome is Outcome.CANCELED:
                s.canceled += 1

    # -- maintenance -------------------------------------------------------
    def _maintenance_loop(self) -> None:
        while not self._stopped.wait(self.settings.maintenance_interval_s):
            try:
                self.engine.maintain()
            except errors.StoreError as exc:
                log.warning("maintenance failed: %s", exc)

    # -- start and stop ----------------------------------------------------
    def _start_threads(self) -> None:
        def start(target: Callable[[], None], name: str) -> None:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

        for i in range(self.concurrency):
            start(self._execute_loop, f"jobdock-exec-{i}")
        start(self._heartbeat_loop, "jobdock-heartbeat")
        start(self._flush_loop, "jobdock-flush")
        start(self._maintenance_loop, "jobdock-maintenance")

    def _shut_down(self) -> None:
        self._stopping.set()
        for _ in range(self.concurrency):
            self._ready.put(_STOP)
        deadline = time.monotonic() + self.shutdown_grace_s
        for thread in self._threads[: self.concurrency]:
            thread.join(max(deadline - time.monotonic(), 0))
        self._stopped.set()
        self._flush_now.set()
        self._flushed.wait(self.shutdown_grace_s)
        # The heartbeat and maintenance threads may be in a round that uses the store:
        # let it end, so that closing the store after run() returns never pulls a
        # connection from under them (SQLite crashes the process when it happens).
        for thread in self._threads[self.concurrency:]:
            thread.join(self.shutdown_grace_s)


def _ended(job: Job) -> Job:
    """What the finish listeners get of a job whose result waits to be written: who
    it is, not its input or times (it is not terminal: a listener that cares reads
    its end back). Kept instead of the claimed job, up to thousands of them in a
    drain, until the results are written."""
    return Job(id=job.id, tenant_id=job.tenant_id, kind=job.kind, status=job.status,
               input=None, app_id=job.app_id, attempt=job.attempt,
               stats=EMPTY, progress=EMPTY, labels=EMPTY, worker_id=job.worker_id)


class _Rate:
    """Jobs finished per second, measured over the last stretch of `min_jobs` jobs or
    `window_s` seconds, whichever comes first.

    The claim loop feeds it its running count of finished jobs each time it asks,
    rather than the executor threads reading the clock once per job."""

    def __init__(self, min_jobs: int, window_s: float = 1.0) -> None:
        self._min_jobs = min_jobs
        self._window_s = window_s
        self._since: tuple[float, int] | None = None  # (monotonic time, finished count)
        self._last = 0.0

    def per_second(self, finished: int) -> float:
        now = time.monotonic()
        if self._since is None:
            self._since = (now, finished)
            return self._last
        start, count = self._since
        span = now - start
        if finished - count >= self._min_jobs or span >= self._window_s:
            self._last = (finished - count) / span if span > 0 else self._last
            self._since = (now, finished)
        return self._last


async def _await(awaitable: Any) -> Any:
    return await awaitable
