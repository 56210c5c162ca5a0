"""What the machine itself allows: pgbench on the same PostgreSQL, and SQLite commits.

    .bench-venv/bin/python -m bench.limits

pgbench runs in schema `bench_pgbench` of the `bench` database (PGOPTIONS sets
the search_path), scale 10, 2 clients on 2 threads, 10 s each:

- `-N` (the built-in "simple-update": 3 statements + 1 insert per transaction);
- a one-statement script `UPDATE pgbench_accounts ... WHERE aid = :aid`: one
  commit per statement, the cost of a queue that writes a row per transaction;
- `-S` (select-only): a round trip with no commit, the cost of a read;
- a one-row INSERT per transaction from 8 clients: what concurrent one-by-one
  submits could reach when nothing serialises them (group commit).

SQLite: one-row UPDATE transactions in a WAL database with synchronous=NORMAL
(jobdock's default) for 3 s, from one connection. Results go to bench/out/limits.json.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common as c
from bench.common import log

SCHEMA = "bench_pgbench"
SECONDS = int(os.environ.get("BENCH_PGBENCH_S", "10"))
INSERT_SCRIPT = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now());\n"
)
UPDATE_SCRIPT = (
    "\\set aid random(1, 100000 * :scale)\n"
    "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n"
)


def pgbench(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PGOPTIONS": f"-csearch_path={SCHEMA}"}
    out = subprocess.run(
        ["pgbench", *args, c.PG_URL.split("?")[0]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tps = re.search(r"tps = ([\d.]+)", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    return {
        "tps": float(tps.group(1)) if tps else None,
        "latency_ms": float(lat.group(1)) if lat else None,
    }


def run_pgbench() -> dict[str, Any]:
    c.reset_schema(SCHEMA)
    env = {**os.environ, "PGOPTIONS": f"-csearch_path={SCHEMA}"}
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "10", c.PG_URL.split("?")[0]],
        env=env,
        capture_output=True,
        check=True,
    )
    common = ["-n", "-c", "2", "-j", "2", "-T", str(SECONDS)]
    results: dict[str, Any] = {}
    log("pgbench -N ...")
    results["simple_update_N"] = pgbench([*common, "-N"])
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(UPDATE_SCRIPT)
    try:
        log("pgbench one-statement update ...")
        results["one_update"] = pgbench([*common, "-f", f.name])
    finally:
        os.unlink(f.name)
    log("pgbench -S ...")
    results["select_only_S"] = pgbench([*common, "-S"])
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(INSERT_SCRIPT)
    try:
        log("pgbench one-row insert, 8 clients ...")
        results["insert_c8"] = pgbench(
            ["-n", "-c", "8", "-j", "2", "-T", str(SECONDS), "-f", f.name]
        )
    finally:
        os.unlink(f.name)
    with c.pg_connect() as conn:  # leave no 150 MB behind
        conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
    return results


def run_sqlite(seconds: float = 3.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "t.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        conn.executemany("INSERT INTO t VALUES (?, 0)", ((i,) for i in range(10_000)))
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE t SET n = n + 1 WHERE id = ?", (n % 10_000,))
            conn.execute("COMMIT")
            n += 1
        tps = n / (time.perf_counter() - t0)
        conn.close()
    return {"one_update_tps": tps}


def main() -> None:
    c.ensure_bench_db()
    results = {"pgbench": run_pgbench(), "sqlite": run_sqlite()}
    c.OUT.mkdir(parents=True, exist_ok=True)
    (c.OUT / "limits.json").write_text(json.dumps(results, indent=2))
    log(f"limits: {json.dumps(results)}")


if __name__ == "__main__":
    main()
