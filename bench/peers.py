"""The five workloads for the peers: Procrastinate and PgQueuer on PostgreSQL.

Run with the bench venv (bench/setup.sh makes it):

    .bench-venv/bin/python -m bench.peers [procrastinate] [pgqueuer]

Each peer lives in its own schema of the `bench` database, dropped and
reinstalled before every workload. Results go to bench/out/peers.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common as c
from bench.common import Result, log

PROC_SCHEMA = "bench_procrastinate"
PGQ_SCHEMA = "bench_pgqueuer"
PGQ_BATCH = int(os.environ.get("BENCH_PGQ_BATCH", "10"))  # PgQueuer's default batch size


class Peer:
    """What the harness needs from one queue; the workloads are the same for all."""

    name: str

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
        """Jobs finished successfully, as the database sees it."""
        raise NotImplementedError

    def worker_cmd(self, burst: bool) -> list[str]:
        raise NotImplementedError

    env: dict[str, str] = {}

    async def close(self) -> None:
        return None


class Procrastinate(Peer):
    name = "Procrastinate"

    def __init__(self) -> None:
        self.url = c.schema_url(PROC_SCHEMA)
        self.env = {"BENCH_PROCRASTINATE_URL": self.url}
        os.environ.update(self.env)
        from bench import procrastinate_app as m

        self.m = m
        self.opened = False

    async def reset(self) -> None:
        if self.opened:
            await self.m.app.close_async()
        c.reset_schema(PROC_SCHEMA)
        await self.m.app.open_async()
        self.opened = True
        await self.m.app.schema_manager.apply_schema_async()

    async def enqueue_bulk(self, n: int) -> None:
        await self.m.noop.batch_defer_async(*({"i": i} for i in range(n)))

    async def enqueue_one(self, i: int) -> None:
        await self.m.noop.defer_async(i=i)

    async def enqueue_stamp(self, i: int, path: str) -> None:
        await self.m.stamp.defer_async(i=i, path=path)

    def done_count(self) -> int:
        return int(
            c.pg_scalar(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'", self.url
            )
        )

    def worker_cmd(self, burst: bool) -> list[str]:
        cmd = [
            str(c.VENV_BIN / "procrastinate"),
            "--app=bench.procrastinate_app.app",
            "worker",
            f"--concurrency={c.CONCURRENCY}",
        ]
        return [*cmd, "--one-shot"] if burst else cmd

    async def close(self) -> None:
        if self.opened:
            await self.m.app.close_async()


class PgQueuer(Peer):
    name = "PgQueuer"

    def __init__(self) -> None:
        self.url = c.schema_url(PGQ_SCHEMA)
        self.env = {"BENCH_PGQUEUER_DSN": c.PG_URL, "BENCH_PGQUEUER_SCHEMA": PGQ_SCHEMA}
        os.environ.update(self.env)
        self.conn: Any = None
        self.queries: Any = None

    async def reset(self) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        from bench import pgqueuer_app

        if self.conn is not None:
            await self.conn.close()
        c.reset_schema(PGQ_SCHEMA)
        self.conn = await pgqueuer_app.connect()
        self.queries = Queries(AsyncpgDriver(self.conn))
        await self.queries.install()

    async def enqueue_bulk(self, n: int) -> None:
        payloads = [json.dumps({"i": i}).encode() for i in range(n)]
        await self.queries.enqueue(["noop"] * n, payloads, [0] * n)

    async def enqueue_one(self, i: int) -> None:
        await self.queries.enqueue("noop", json.dumps({"i": i}).encode())

    async def enqueue_stamp(self, i: int, path: str) -> None:
        await self.queries.enqueue("stamp", json.dumps({"i": i, "path": path}).encode())

    def done_count(self) -> int:
        # PgQueuer deletes a finished job from its queue table and logs it.
        return int(
            c.pg_scalar("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'", self.url)
        )

    def worker_cmd(self, burst: bool) -> list[str]:
        cmd = [sys.executable, "-m", "bench.pgqueuer_worker", f"--batch-size={PGQ_BATCH}"]
        return [*cmd, "--drain"] if burst else cmd

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


async def measure(peer: Peer) -> Result:
    r = Result(system=peer.name, backend="PostgreSQL")
    rss: list[float] = []

    # (a) bulk enqueue, the peer's own batch API, one call.
    await peer.reset()
    t0 = time.perf_counter()
    await peer.enqueue_bulk(c.N_BULK)
    r.bulk_enqueue_per_s = c.N_BULK / (time.perf_counter() - t0)
    log(f"{peer.name}: bulk enqueue {r.bulk_enqueue_per_s:,.0f}/s")

    # (b) one by one, each its own transaction.
    await peer.reset()
    t0 = time.perf_counter()
    for i in range(c.N_ONE):
        await peer.enqueue_one(i)
    r.one_enqueue_per_s = c.N_ONE / (time.perf_counter() - t0)
    log(f"{peer.name}: one-by-one enqueue {r.one_enqueue_per_s:,.0f}/s")

    # (c) drain with 1 and 2 worker processes.
    for nproc in (1, 2):
        await peer.reset()
        await peer.enqueue_bulk(c.N_DRAIN)
        t0 = time.perf_counter()
        workers = c.Workers(
            [peer.worker_cmd(burst=True)] * nproc, peer.env, f"{peer.name}.drain{nproc}"
        )
        try:
            t_end, t_first = c.wait_until(
                peer.done_count, c.N_DRAIN, c.DRAIN_TIMEOUT_S, workers.alive
            )
        finally:
            workers.stop()
        rate = c.N_DRAIN / (t_end - t0)
        rss.append(workers.rss_peak_mb)
        r.details[f"drain_{nproc}_startup_s"] = (t_first or t_end) - t0
        if nproc == 1:
            r.drain_1_per_s = rate
        else:
            r.drain_2_per_s = rate
            if t_first is not None and t_end > t_first:
                r.drain_2_steady_per_s = c.N_DRAIN / (t_end - t_first)
        log(f"{peer.name}: drain x{nproc} {rate:,.0f}/s (rss {workers.rss_peak_mb:.0f} MB)")

    # (d) idle pick-up latency, one waiting worker.
    await peer.reset()
    r.details["latency"] = await latency(peer, rss)
    r.latency_p50_ms = r.details["latency"]["p50"]
    r.latency_p99_ms = r.details["latency"]["p99"]
    r.latency_max_ms = r.details["latency"]["max"]
    log(f"{peer.name}: pick-up p50 {r.latency_p50_ms:.2f} ms p99 {r.latency_p99_ms:.2f} ms")

    # (e) peak RSS of one worker process over all the runs above.
    r.rss_peak_mb = max(rss)
    await peer.close()
    return r


async def latency(peer: Peer, rss: list[float]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-stamps-") as tmp:
        path = Path(tmp) / "stamps"
        workers = c.Workers([peer.worker_cmd(burst=False)], peer.env, f"{peer.name}.latency")
        try:
            # Warm-up probe: the worker is up and idle once it has run it.
            await peer.enqueue_stamp(-1, str(path))
            if -1 not in c.wait_stamps(path, 1, 60):
                raise RuntimeError(f"{peer.name}: worker never ran the warm-up job")
            await asyncio.sleep(0.5)
            enqueued: dict[int, float] = {}
            committed: dict[int, float] = {}
            for i, gap in enumerate(c.latency_gaps(c.N_LATENCY)):
                await asyncio.sleep(gap)
                enqueued[i] = time.time()
                await peer.enqueue_stamp(i, str(path))
                committed[i] = time.time()
            started = c.wait_stamps(path, c.N_LATENCY + 1, 30)
        finally:
            workers.stop()
            rss.append(workers.rss_peak_mb)
        started.pop(-1, None)
        return c.latency_stats(enqueued, committed, started)


async def main(names: list[str]) -> None:
    c.ensure_bench_db()
    peers = {"procrastinate": Procrastinate, "pgqueuer": PgQueuer}
    results = []
    for name in names or list(peers):
        results.append(await measure(peers[name]()))
    path = c.save(results, "peers")
    log(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main([a.lower() for a in sys.argv[1:]]))
