"""The five workloads for jobdock, on SQLite and on PostgreSQL.

Run with the bench venv (bench/setup.sh makes it):

    .bench-venv/bin/python -m bench.jobdock_bench [sqlite] [postgresql]

SQLite gets a new temporary file per workload; PostgreSQL a freshly created
schema `bench_jobdock` in the `bench` database, reached through the URL option
`?options=-csearch_path%3Dbench_jobdock`. Workers are
`jobdock worker --app bench.jobdock_app:app`, one OS process each, started by
the harness exactly as it starts the peers' workers. Results go to
bench/out/jobdock.json.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import common as c
from bench.common import log
from bench.workloads import Queue, measure_all

SCHEMA = "bench_jobdock"


class Jobdock(Queue):
    name = "jobdock"

    def __init__(self, backend: str) -> None:
        self.backend = "SQLite" if backend == "sqlite" else "PostgreSQL"
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-jobdock-"))
        self.app: Any = None
        self.url = ""
        self.count_conn: Any = None
        self.run = 0

    async def reset(self) -> None:
        from bench import jobdock_app
        from jobdock import App

        self._close()
        self.run += 1
        if self.backend == "SQLite":
            self.url = f"sqlite:///{self.tmp}/run{self.run}.db"
        else:
            c.reset_schema(SCHEMA)
            self.url = c.schema_url(SCHEMA)
        blobs = f"file://{self.tmp}/blobs"
        self.env = {"JOBDOCK_DATABASE_URL": self.url, "JOBDOCK_BLOB_URL": blobs}
        self.app = App(database_url=self.url, blob_url=blobs)
        for kind, function in (("noop", jobdock_app.noop), ("stamp", jobdock_app.stamp)):
            spec = jobdock_app.app.specs[kind]
            self.app.job(kind, max_attempts=spec.max_attempts)(function)
        self.app.migrate()

    async def enqueue_bulk(self, n: int) -> None:
        self.app.submit_many([("noop", {"i": i}) for i in range(n)])

    async def enqueue_one(self, i: int) -> None:
        self.app.submit("noop", {"i": i})

    async def enqueue_stamp(self, i: int, path: str) -> None:
        self.app.submit("stamp", {"i": i, "path": path})

    def _scalar(self, sql: str) -> int:
        # Straight from the database, on a connection kept for the polling.
        if self.count_conn is None:
            if self.backend == "SQLite":
                path = self.url.removeprefix("sqlite:///")
                self.count_conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            else:
                self.count_conn = c.pg_connect(self.url)
        return int(self.count_conn.execute(sql).fetchone()[0])

    def pending(self) -> bool:
        # Both halves walk a partial index (jobs_queue, jobs_lease).
        return bool(
            self._scalar(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued')"
                " OR EXISTS (SELECT 1 FROM jobs WHERE status IN ('running', 'canceling'))"
            )
        )

    def any_done(self) -> bool:
        return bool(self._scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'succeeded')"))

    def done_count(self) -> int:
        return self._scalar("SELECT count(*) FROM jobs WHERE status = 'succeeded'")

    def worker_cmd(self, burst: bool) -> list[str]:
        cmd = [
            str(c.VENV_BIN / "jobdock"),
            "worker",
            "--app=bench.jobdock_app:app",
            f"--concurrency={c.CONCURRENCY}",
            "--log-level=WARNING",
        ]
        return [*cmd, "--burst"] if burst else cmd

    def _close(self) -> None:
        if self.count_conn is not None:
            self.count_conn.close()
            self.count_conn = None
        if self.app is not None:
            self.app.close()
            self.app = None

    async def close(self) -> None:
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def main(backends: list[str]) -> None:
    c.ensure_bench_db()
    results = await measure_all([Jobdock(b) for b in backends or ["sqlite", "postgresql"]])
    path = c.save(results, "jobdock")
    log(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main([a.lower() for a in sys.argv[1:]]))
