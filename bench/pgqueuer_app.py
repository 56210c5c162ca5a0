"""PgQueuer factory for the benchmark: a no-op entrypoint and a stamp entrypoint.

The database comes from BENCH_PGQUEUER_DSN and the schema (search_path) from
BENCH_PGQUEUER_SCHEMA, both set by bench/peers.py; workers run it with
`pgq run bench.pgqueuer_app:main`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from bench.common import write_stamp


async def connect() -> asyncpg.Connection:
    return await asyncpg.connect(
        os.environ["BENCH_PGQUEUER_DSN"],
        server_settings={"search_path": os.environ["BENCH_PGQUEUER_SCHEMA"]},
    )


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The factory: PgQueuer 1.6 wants an async context manager that yields the app."""
    conn = await connect()
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        payload = json.loads(job.payload or b"{}")
        write_stamp(payload["path"], payload["i"])

    try:
        yield pgq
    finally:
        await conn.close()
