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
from typing import Any

from bench import common as c
from bench.common import log
from bench.workloads import Queue, measure_all

PROC_SCHEMA = "bench_procrastinate"
PGQ_SCHEMA = "bench_pgqueuer"
PGQ_BATCH = int(os.environ.get("BENCH_PGQ_BATCH", "10"))  # PgQueuer's default batch size


class Procrastinate(Queue):
    name = "Procrastinate"

    def __init__(self) -> None:
        self.url = c.schema_url(PROC_SCHEMA)
        self.env = {"BENCH_PROCRASTINATE_URL": self.url}
        os.environ.update(self.env)
        from bench import procrastinate_app as m

        self.m = m
        self.opened = False
        self.query = c.PgQuery(self.url)

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

    def pending(self) -> bool:
        return bool(
            self.query(
                "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs"
                " WHERE status IN ('todo', 'doing'))::int"
            )
        )

    def any_done(self) -> bool:
        return bool(
            self.query(
                "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status = 'succeeded')::int"
            )
        )

    def done_count(self) -> int:
        return self.query("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")

    def worker_cmd(self, burst: bool) -> list[str]:
        cmd = [
            str(c.VENV_BIN / "procrastinate"),
            "--app=bench.procrastinate_app.app",
            "worker",
            f"--concurrency={c.CONCURRENCY}",
        ]
        return [*cmd, "--one-shot"] if burst else cmd

    async def close(self) -> None:
        self.query.close()
        if self.opened:
            await self.m.app.close_async()


class PgQueuer(Queue):
    name = "PgQueuer"

    def __init__(self) -> None:
        self.url = c.schema_url(PGQ_SCHEMA)
        self.env = {"BENCH_PGQUEUER_DSN": c.PG_URL, "BENCH_PGQUEUER_SCHEMA": PGQ_SCHEMA}
        os.environ.update(self.env)
        self.conn: Any = None
        self.queries: Any = None
        self.query = c.PgQuery(self.url)

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

    # PgQueuer deletes a finished job from its queue table, logging it in the
    # same statement.
    def pending(self) -> bool:
        return bool(self.query("SELECT EXISTS (SELECT 1 FROM pgqueuer)::int"))

    def any_done(self) -> bool:
        return bool(
            self.query(
                "SELECT EXISTS (SELECT 1 FROM pgqueuer_log WHERE status = 'successful')::int"
            )
        )

    def done_count(self) -> int:
        return self.query("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")

    def worker_cmd(self, burst: bool) -> list[str]:
        cmd = [sys.executable, "-m", "bench.pgqueuer_worker", f"--batch-size={PGQ_BATCH}"]
        return [*cmd, "--drain"] if burst else cmd

    async def close(self) -> None:
        self.query.close()
        if self.conn is not None:
            await self.conn.close()


PEERS = {"procrastinate": Procrastinate, "pgqueuer": PgQueuer}


async def main(names: list[str]) -> None:
    c.ensure_bench_db()
    results = await measure_all([PEERS[name]() for name in names or list(PEERS)])
    path = c.save(results, "peers")
    log(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main([a.lower() for a in sys.argv[1:]]))
