"""The five workloads, the same for every queue; each queue adapts to `Queue`.

(a) bulk enqueue with the queue's own batch API; (b) one-by-one enqueue, a
transaction each; (c) drain of pre-enqueued no-op jobs by 1 and by 2 worker
processes, timed from starting the workers until the database shows every job
done; (d) idle pick-up latency with one waiting worker; (e) peak RSS of one
worker process over (c) and (d).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common as c
from bench.common import Result, log


class Queue:
    """What the harness needs from one queue; the workloads are the same for all."""

    name: str
    backend: str = "PostgreSQL"
    env: dict[str, str] = {}  # extra environment of the worker processes

    async def reset(self) -> None:
        """A freshly installed, empty schema."""
        raise NotImplementedError

    async def enqueue_bulk(self, n: int) -> None:
        raise NotImplementedError

    async def enqueue_one(self, i: int) -> None:
        raise NotImplementedError

    async def enqueue_stamp(self, i: int, path: str) -> None:
        raise NotImplementedError

    def done_count(self) -> int:
        """Jobs finished successfully, as the database sees it (polled: keep it cheap)."""
        raise NotImplementedError

    def worker_cmd(self, burst: bool) -> list[str]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


async def measure(queue: Queue) -> Result:
    r = Result(system=queue.name, backend=queue.backend)
    label = f"{queue.name}.{queue.backend}"
    rss: list[float] = []

    # (a) bulk enqueue, the queue's own batch API, one call.
    await queue.reset()
    t0 = time.perf_counter()
    await queue.enqueue_bulk(c.N_BULK)
    r.bulk_enqueue_per_s = c.N_BULK / (time.perf_counter() - t0)
    log(f"{label}: bulk enqueue {r.bulk_enqueue_per_s:,.0f}/s")

    # (b) one by one, each its own transaction.
    await queue.reset()
    t0 = time.perf_counter()
    for i in range(c.N_ONE):
        await queue.enqueue_one(i)
    r.one_enqueue_per_s = c.N_ONE / (time.perf_counter() - t0)
    log(f"{label}: one-by-one enqueue {r.one_enqueue_per_s:,.0f}/s")

    # Start-up cost apart: one worker on an empty queue, started and gone.
    await queue.reset()
    t0 = time.perf_counter()
    workers = c.Workers([queue.worker_cmd(burst=True)], queue.env, f"{label}.empty")
    exited = workers.wait(60)
    wall = time.perf_counter() - t0
    workers.stop()
    r.details["empty_run"] = {"wall_s": wall, "cpu_s": workers.sampler.cpu_s, "exited": exited}
    log(f"{label}: empty burst run {wall:.2f}s wall, {workers.sampler.cpu_s:.2f}s CPU")

    # (c) drain with 1 and 2 worker processes.
    for nproc in (1, 2):
        await queue.reset()
        await queue.enqueue_bulk(c.N_DRAIN)
        pg_cpu = c.PostgresCpu()
        pg_cpu.start()
        t0 = time.perf_counter()
        workers = c.Workers(
            [queue.worker_cmd(burst=True)] * nproc, queue.env, f"{label}.drain{nproc}"
        )
        try:
            t_end, t_first = c.wait_until(
                queue.done_count, c.N_DRAIN, c.DRAIN_TIMEOUT_S, workers.alive
            )
            pg_cpu_s = pg_cpu.stop()
        finally:
            workers.stop()
        rate = c.N_DRAIN / (t_end - t0)
        rss.append(workers.rss_peak_mb)
        # Where the time went: CPU seconds of the workers and of PostgreSQL's
        # processes (any client's) against the wall time of the drain.
        r.details[f"drain_{nproc}"] = {
            "wall_s": t_end - t0,
            "startup_s": (t_first or t_end) - t0,
            "worker_cpu_s": workers.sampler.cpu_s,
            "postgres_cpu_s": pg_cpu_s if queue.backend == "PostgreSQL" else None,
        }
        if nproc == 1:
            r.drain_1_per_s = rate
        else:
            r.drain_2_per_s = rate
            if t_first is not None and t_end > t_first:
                r.drain_2_steady_per_s = c.N_DRAIN / (t_end - t_first)
        log(f"{label}: drain x{nproc} {rate:,.0f}/s (rss {workers.rss_peak_mb:.0f} MB)")

    # (d) idle pick-up latency, one waiting worker.
    await queue.reset()
    r.details["latency"] = await latency(queue, rss)
    r.latency_p50_ms = r.details["latency"]["p50"]
    r.latency_p99_ms = r.details["latency"]["p99"]
    r.latency_max_ms = r.details["latency"]["max"]
    log(f"{label}: pick-up p50 {r.latency_p50_ms:.2f} ms p99 {r.latency_p99_ms:.2f} ms")

    # (e) peak RSS of one worker process over all the runs above.
    r.rss_peak_mb = max(rss)
    await queue.close()
    return r


async def latency(queue: Queue, rss: list[float]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-stamps-") as tmp:
        path = Path(tmp) / "stamps"
        workers = c.Workers(
            [queue.worker_cmd(burst=False)], queue.env, f"{queue.name}.{queue.backend}.latency"
        )
        try:
            # Warm-up probe: the worker is up and idle once it has run it.
            await queue.enqueue_stamp(-1, str(path))
            if -1 not in c.wait_stamps(path, 1, 60):
                raise RuntimeError(f"{queue.name}: worker never ran the warm-up job")
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
            rss.append(workers.rss_peak_mb)
        started.pop(-1, None)
        return c.latency_stats(enqueued, committed, started)
