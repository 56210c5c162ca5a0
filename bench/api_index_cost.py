"""What the list index costs the queue, measured at the store (no worker processes).

    .venv/bin/python -m bench.api_index_cost [sqlite|postgresql ...] [--jobs 20000] [--rounds 5]

For each backend, on one store: the same cycle, with no index on (tenant_id,
kind, status, id), with the full index, and with migration 0003's partial one
(finished jobs only; on SQLite also the `IN (...)` form of its condition), in
turns, `--rounds` times. A cycle submits `--jobs` jobs
(`App.submit_many`, batches of 2,000), claims them (`job_claim_many`, 500 at a
time) and completes them (`job_complete_many`, 500 at a time), timing each
step; the jobs are deleted before the next cycle. Medians per variant are
printed as a markdown table. PostgreSQL: schema `bench_api_index` of the bench
database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common as c
from bench.common import log

SCHEMA = "bench_api_index"
INDEX = "CREATE INDEX jobs_kind_status ON jobs (tenant_id, kind, status, id)"
# Migration 0003's condition on each backend, and on SQLite the `IN` form it replaced.
FINISHED_IN = "status IN ('succeeded', 'failed', 'canceled', 'skipped')"
FINISHED_OR = ("(status = 'succeeded' OR status = 'failed' OR status = 'canceled'"
               " OR status = 'skipped')")


def variants(backend: str) -> dict[str, str | None]:
    if backend == "postgresql":
        return {"no index": None, "full index": INDEX,
                "partial index (0003)": f"{INDEX} WHERE {FINISHED_IN}"}
    return {"no index": None, "full index": INDEX,
            "partial index, IN (...)": f"{INDEX} WHERE {FINISHED_IN}",
            "partial index, ORs (0003)": f"{INDEX} WHERE {FINISHED_OR}"}
STEPS = ("submit", "claim", "complete")


def execute(app: Any, backend: str, statement: str) -> None:
    """Run DDL or a delete on the store's own database (the bench may; jobdock's code may not)."""
    store = app.engine.store
    if backend == "sqlite":
        store._conn().execute(statement)
    else:
        with store._conn() as conn:
            conn.execute(statement)


def cycle(app: Any, n: int) -> dict[str, float]:
    from jobdock.model import Completion, Outcome

    store = app.engine.store
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    for start in range(0, n, 2000):
        app.submit_many([("k1", {"n": i}) for i in range(start, min(n, start + 2000))])
    seconds["submit"] = time.perf_counter() - t0
    claimed = []
    t0 = time.perf_counter()
    while len(claimed) < n:
        got = store.job_claim_many("bench", ["k1"], 500, 300.0)
        if not got:
            break
        claimed.extend(got)
    seconds["claim"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(claimed), 500):
        store.job_complete_many([Completion(j.id, j.attempt, Outcome.SUCCEEDED)
                                 for j in claimed[start:start + 500]])
    seconds["complete"] = time.perf_counter() - t0
    return seconds


def run_backend(backend: str, jobs: int, rounds: int, workdir: Path) -> dict[str, Any]:
    from jobdock import App

    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'jobs.db'}"
    else:
        c.ensure_bench_db()
        c.reset_schema(SCHEMA)
        url = c.schema_url(SCHEMA)
    app = App(database_url=url, blob_url=f"file://{workdir / 'blobs'}",
              data_dir=str(workdir / "data"))
    app.job("k1", max_attempts=1)(lambda ctx, input: None)
    app.engine  # noqa: B018 - migrations
    chosen = variants(backend)
    times: dict[str, dict[str, list[float]]] = {v: {s: [] for s in STEPS} for v in chosen}
    try:
        for round_no in range(rounds):
            for variant, create in chosen.items():
                execute(app, backend, "DROP INDEX IF EXISTS jobs_kind_status")
                if create:
                    execute(app, backend, create)
                execute(app, backend, "DELETE FROM job_attempts")
                execute(app, backend, "DELETE FROM jobs")
                if backend == "postgresql":  # each cycle starts without dead rows
                    execute(app, backend, "VACUUM job_attempts, jobs")
                seconds = cycle(app, jobs)
                for step, s in seconds.items():
                    times[variant][step].append(s)
                log(f"{backend} round {round_no + 1} {variant:22} " + "  ".join(
                    f"{step} {jobs / s:,.0f}/s" for step, s in seconds.items()))
    finally:
        app.close()
        if backend == "postgresql":
            with c.pg_connect() as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    return {v: {s: statistics.median(t) for s, t in steps.items()} for v, steps in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="*", default=["sqlite", "postgresql"],
                        metavar="sqlite|postgresql")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lines = ["| backend | variant | " + " | ".join(f"{s} jobs/s" for s in STEPS)
             + " | all three, s |", "|---|---|" + "---|" * (len(STEPS) + 1)]
    with tempfile.TemporaryDirectory(prefix="bench-api-index-") as tmp:
        for backend in args.backends:
            medians = run_backend(backend, args.jobs, args.rounds, Path(tmp))
            base = sum(medians["no index"].values())
            for variant, steps in medians.items():
                total = sum(steps.values())
                lines.append(f"| {backend} | {variant} | " + " | ".join(
                    f"{args.jobs / steps[s]:,.0f}" for s in STEPS)
                    + f" | {total:.2f} ({100 * (total / base - 1):+.0f}%) |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
