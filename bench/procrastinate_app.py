"""Procrastinate app for the benchmark: a no-op task and a stamp task.

The database (and its search_path) comes from BENCH_PROCRASTINATE_URL, set by
bench/peers.py; workers run it with `procrastinate --app=bench.procrastinate_app.app worker`.
"""

from __future__ import annotations

import os

import procrastinate

from bench.common import write_stamp

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get("BENCH_PROCRASTINATE_URL", ""),
    )
)


@app.task(name="noop")
async def noop(i: int) -> None:
    return None


@app.task(name="stamp")
async def stamp(i: int, path: str) -> None:
    write_stamp(path, i)
