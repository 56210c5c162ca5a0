"""The five workloads, the same for every queue; each queue adapts to `Queue`.

(a) bulk enqueue with the queue's own batch API; (b) one-by-one enqueue, a
transaction each; (c) drain of pre-enqueued no-op jobs by 1 and by 2 worker
processes, timed from starting the workers until the database shows every job
done; (d) idle pick-up latency with one waiting worker; (e) peak RSS of one
worker process over (c) and (d). Also: one worker started and stopped on an
empty queue, to tell start-up cost from per-job cost.

The machine is shared and noisy, so `measure_all` interleaves the systems:
every system runs workload (a), then every system runs (b), and so on, so that
a slow minute hurts all of them alike rather than one. Each drain also records
how much CPU other processes of the machine took meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bench import common as c
from bench.common import Result, log


class Queue:
    """What the harness needs from one queue; the workloads are the same for all."""

    name: str
    backend: str = "PostgreSQL"
    env: dict[str, str] = {}  # extra environment of the worker processes

    @property
    def label(self) -> str:
        return f"{self.name}.{self.backend}"

    async def reset(self) -> None:
        """A freshly installed, empty schema."""
        raise NotImplementedError

    async def enqueue_bulk(self, n: int) -> None:
        raise NotImplementedError

    async def enqueue_one(self, i: int) -> None:
        raise NotImplementedError

    async def enqueue_stamp(self, i: int, path: str) -> None:
        raise NotImplementedError

    def pending(self) -> bool:
        """Whether any job is still waiting or running (polled every 20 ms: keep it cheap)."""
        raise NotImplementedError

    def any_done(self) -> bool:
        """Whether some job has finished (polled until true)."""
        raise NotImplementedError

    def done_count(self) -> int:
        """Jobs finished successfully, counted (once, at the end)."""
        raise NotImplementedError

    def worker_cmd(self, burst: bool) -> list[str]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


Workload = Callable[[Queue, Result], Awaitable[None]]


async def bulk(queue: Queue, r: Result) -> None:
    """(a) bulk enqueue with the queue's own batch API, one call."""
    await queue.reset()
    t0 = time.perf_counter()
    await queue.enqueue_bulk(c.N_BULK)
    r.bulk_enqueue_per_s = c.N_BULK / (time.perf_counter() - t0)
    log(f"{queue.label}: bulk enqueue {r.bulk_enqueue_per_s:,.0f}/s")


async def one_by_one(queue: Queue, r: Result) -> None:
    """(b) one by one, each its own transaction."""
    await queue.reset()
    t0 = time.perf_counter()
    for i in range(c.N_ONE):
        await queue.enqueue_one(i)
    r.one_enqueue_per_s = c.N_ONE / (time.perf_counter() - t0)
    log(f"{queue.label}: one-by-one enqueue {r.one_enqueue_per_s:,.0f}/s")


async def empty_run(queue: Queue, r: Result) -> None:
    """Start-up cost apart: one burst worker on an empty queue, started and gone."""
    await queue.reset()
    t0 = time.perf_counter()
    workers = c.Workers([queue.worker_cmd(burst=True)], queue.env, f"{queue.label}.empty")
    exited = workers.wait(60)
    wall = time.perf_counter() - t0
    workers.stop()
    r.details["empty_run"] = {"wall_s": wall, "cpu_s": workers.sampler.cpu_s, "exited": exited}
    log(f"{queue.label}: empty burst run {wall:.2f}s wall, {workers.sampler.cpu_s:.2f}s CPU")


async def drain(queue: Queue, r: Result, nproc: int) -> None:
    """(c) drain pre-enqueued no-op jobs with `nproc` worker processes."""
    await queue.reset()
    await queue.enqueue_bulk(c.N_DRAIN)
    pg_cpu = c.PostgresCpu()
    pg_cpu.start()
    machine0, own0 = c.machine_busy_s(), _own_cpu_s()
    t0 = time.perf_counter()
    workers = c.Workers(
        [queue.worker_cmd(burst=True)] * nproc, queue.env, f"{queue.label}.drain{nproc}"
    )
    try:
        t_end, t_first = c.wait_drained(
            queue.pending, queue.any_done, c.DRAIN_TIMEOUT_S, workers.alive
        )
        machine_s, own_s = c.machine_busy_s() - machine0, _own_cpu_s() - own0
        pg_cpu_s = pg_cpu.stop()
    finally:
        workers.stop()
    done = queue.done_count()
    if done != c.N_DRAIN:
        raise RuntimeError(f"drained, but {done} of {c.N_DRAIN} jobs succeeded")
    rate = c.N_DRAIN / (t_end - t0)
    r.details.setdefault("rss", []).append(workers.rss_peak_mb)
    worker_s = workers.sampler.cpu_s
    # Where the time went: CPU seconds of the workers and of PostgreSQL (for this
    # database) against the wall time; `others_cpu_s` is what the rest of the
    # machine (other people's tests) took meanwhile, out of 2 x wall on 2 cores.
    r.details[f"drain_{nproc}"] = {
        "wall_s": t_end - t0,
        "startup_s": (t_first or t_end) - t0,
        "worker_cpu_s": worker_s,
        "postgres_cpu_s": pg_cpu_s if queue.backend == "PostgreSQL" else None,
        "harness_cpu_s": own_s,
        "others_cpu_s": max(0.0, machine_s - worker_s - own_s - pg_cpu_s),
        "machine_cpu_s": machine_s,
    }
    if nproc == 1:
        r.drain_1_per_s = rate
    else:
        r.drain_2_per_s = rate
        if t_first is not None and t_end > t_first:
            r.drain_2_steady_per_s = c.N_DRAIN / (t_end - t_first)
    log(f"{queue.label}: drain x{nproc} {rate:,.0f}/s (rss {workers.rss_peak_mb:.0f} MB)")


async def drain_1(queue: Queue, r: Result) -> None:
    await drain(queue, r, 1)


async def drain_2(queue: Queue, r: Result) -> None:
    await drain(queue, r, 2)


async def latency(queue: Queue, r: Result) -> None:
    """(d) idle pick-up latency: one waiting worker, one job at a time."""
    await queue.reset()
    with tempfile.TemporaryDirectory(prefix="bench-stamps-") as tmp:
        path = Path(tmp) / "stamps"
        workers = c.Workers([queue.worker_cmd(burst=False)], queue.env, f"{queue.label}.latency")
        try:
            # Warm-up probe: the worker is up and idle once it has run it.
            await queue.enqueue_stamp(-1, str(path))
            if -1 not in c.wait_stamps(path, 1, 60):
                raise RuntimeError(f"{queue.label}: worker never ran the warm-up job")
            await asyncio.sleep(0.5)
            enqueued: dict[int, float] = {}
            committed: dict[int, float] = {}
            for i, gap in enumerate(c.latency_gaps(c.N_LATENCY)):
                await asyncio.sleep(gap)
                enqueued[i] = time.time()
                await queue.enqueue_stamp(i, str(path))
                committed[i] = time.time()
            started = c.wait_stamps(path, c.N_LATENCY + 1, 30)
        finally:
            workers.stop()
            r.details.setdefault("rss", []).append(workers.rss_peak_mb)
    started.pop(-1, None)
    stats = c.latency_stats(enqueued, committed, started)
    r.details["latency"] = stats
    r.latency_p50_ms, r.latency_p99_ms, r.latency_max_ms = stats["p50"], stats["p99"], stats["max"]
    log(f"{queue.label}: pick-up p50 {r.latency_p50_ms:.2f} ms p99 {r.latency_p99_ms:.2f} ms")


WORKLOADS: list[Workload] = [bulk, one_by_one, empty_run, drain_1, drain_2, latency]


async def measure_all(queues: Sequence[Queue]) -> list[Result]:
    """Every workload on every queue, interleaved; a queue that fails keeps its other figures."""
    results = [Result(system=q.name, backend=q.backend) for q in queues]
    try:
        for workload in WORKLOADS:
            for queue, r in zip(queues, results, strict=True):
                try:
                    await workload(queue, r)
                except Exception as exc:  # one failure must not cost the whole run
                    r.notes.append(f"{workload.__name__} failed: {exc!r}")
                    log(f"{queue.label}: {workload.__name__} FAILED: {exc!r}")
    finally:
        for queue in queues:
            await queue.close()
    for r in results:
        # (e) peak RSS of one worker process over every run above.
        r.rss_peak_mb = max(r.details.get("rss", []), default=None)
    return results


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def measure(queue: Queue) -> Result:
    return (await measure_all([queue]))[0]
