"""jobdock (SQLite, PostgreSQL), Procrastinate and PgQueuer through the same
workloads, interleaved workload by workload (see bench/workloads.py).

    .bench-venv/bin/python -m bench.compare

Results go to bench/out/queues.json; bench/run.py makes the table of them.
"""

from __future__ import annotations

import asyncio

from bench import common as c
from bench.common import log
from bench.jobdock_bench import Jobdock
from bench.peers import PgQueuer, Procrastinate
from bench.workloads import measure_all


async def main() -> None:
    c.ensure_bench_db()
    import jobdock

    log(f"jobdock from {jobdock.__file__}")
    queues = [Jobdock("sqlite"), Jobdock("postgresql"), Procrastinate(), PgQueuer()]
    results = await measure_all(queues)
    path = c.save(results, "queues")
    log(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
