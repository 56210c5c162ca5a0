"""Issue #6's flow benchmark: a CSV through a `flow` (export step → import step) into a table.

    .venv/bin/python -m bench.flow_bench [--rows N] [--backends sqlite,postgresql]
                                         [--page-size P] [--routes jobdock,pandas,raw]
                                         [--sources csv,jsonl,gzip]
                                         [--profile] [--ref HEAD|worktree]

The file is bench.ingest_bench's 10-column `people.csv` (deterministic, ~103 bytes a
row). For each backend (SQLite in a temporary directory; PostgreSQL in fresh schemas
of the `bench` database on 127.0.0.1, never `test`), in one run and one after the
other:

- jobdock: an App on that store, the file uploaded with `files.create_upload` (as
  `POST /v1/uploads` does), and a `flow` job submitted the way an integrator user
  declares one: `export.source = {"upload": <id>}`, `page_size` (default 10,000, the
  most a flow allows), an import into `people` with the ten declared columns, primary
  key `id`, `required: ["id", "email"]`. A worker process (bench.ingest_bench's
  `worker` route: `App.worker()`, what `jobdock worker` runs; stopped by SIGTERM
  when both steps are terminal) is started after the submit. Timed from the
  submit until both the `flow_export` and the `flow_import` step are terminal (worker
  start-up and both steps included; for a plain CSV upload the two steps run at the
  same time); the steps' own started→finished times are shown too. Peak RSS is the
  worker process's VmHWM. Counters are checked exactly (exported = success = rows,
  no errors, no ignored) and so is the table's count.
- pandas and raw limit: bench.ingest_bench's routes on the same file (pandas
  `read_csv` + `to_sql` in .bench-venv; PostgreSQL `COPY`, SQLite `executemany` of
  pre-parsed rows): see that module's text. Their PostgreSQL tables live in a schema
  of this benchmark's own (`bench_flow_peer`), so that an ingest benchmark running at
  the same time cannot drop them.

jobdock is measured as committed: `--ref` (default HEAD) is exported with `git archive`
(bench.run's `snapshot`) and put first on the path of every process, so that unsaved
edits in the shared work tree stay out; `--ref worktree` measures the work tree.

`--sources` adds flows of the same records from other uploads (jobdock's route only;
pandas and the raw limit read the CSV): `jsonl` (people.jsonl, a JSON object per
record with typed values: numbers, booleans, dates as text) and `gzip` (people.csv.gz).

With --profile, only jobdock's route runs, with py-spy recording the worker
(bench/out/flow-profile-<backend>.txt, raw collapsed stacks).

Results go to bench/out/flow.json and a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ingest_bench
from bench.ingest_bench import (
    COLUMNS,
    OUT,
    ROOT,
    TENANT,
    TIMEOUT_S,
    app_with_upload,
    bench_python,
    generate,
    log,
    pg_connect,
    pg_drop,
    pg_reset,
    run_worker,
    table,
)
from bench.run import snapshot

SCHEMA = "bench_flow"  # the job store (its data area is bench_flow_data_bench)
# pandas' and the raw limit's tables: a schema of this benchmark's own, so that a run of
# bench.ingest_bench at the same time (which drops its own) cannot drop them.
PEER_SCHEMA = "bench_flow_peer"
TARGET = "people"


def flow_input(upload_id: str, page_size: int) -> dict[str, Any]:
    return {
        "integration_id": "bench-integration", "flow_id": "bench-flow",
        "export": {"export_id": "bench-export", "source": {"upload": upload_id},
                   "page_size": page_size},
        "import": {"import_id": "bench-import", "table": TARGET, "primary_key": ["id"],
                   "columns": dict(COLUMNS), "required": ["id", "email"]},
    }


def jobdock_flow(backend: str, path: Path, tmp: Path, run: int, page_size: int,
                 profile: Path | None = None) -> dict[str, Any]:
    app, upload, url, blobs = app_with_upload(backend, path, tmp, run, SCHEMA)
    started = time.perf_counter()
    flow = app.submit("flow", flow_input(upload.id, page_size), tenant=TENANT)
    finished: list[float] = []

    def steps() -> dict[str, Any]:
        return {c.kind: c for c in app.children(flow.id, tenant=TENANT)}

    def done() -> bool:
        found = steps()
        export, imported = found.get("flow_export"), found.get("flow_import")
        # Both steps: a plain CSV's export counts while its import runs.
        if export is not None and export.terminal and (
                export.status.value != "succeeded" or (imported is not None and imported.terminal)):
            finished.append(time.perf_counter())
            return True
        return False

    child = run_worker(url, blobs, tmp, profile, done)
    found = steps()
    export, imported = found.get("flow_export"), found.get("flow_import")
    if export is None or imported is None or imported.status.value != "succeeded":
        raise RuntimeError(f"the flow did not succeed: {export} {imported}")
    counters = {"exported": export.stats.get("exported", 0),
                **{k: imported.stats.get(k, 0) for k in ("success", "errors", "ignored")}}
    wanted = {"exported": 0, "success": 0, "errors": 0, "ignored": 0}
    wanted.update(exported=counters["exported"], success=counters["exported"])
    if counters != wanted:
        raise RuntimeError(f"unexpected counters {counters}")

    def seconds(job: Any) -> float:
        return float((job.finished_at - job.started_at).total_seconds())

    if backend == "postgresql":
        with pg_connect() as conn:
            count = conn.execute(
                f'SELECT count(*) FROM "{SCHEMA}_data_{TENANT}"."{TARGET}"').fetchone()[0]
    else:
        with sqlite3.connect(tmp / f"run{run}" / "tenants" / f"{TENANT}.db") as conn:
            count = conn.execute(f"SELECT count(*) FROM {TARGET}").fetchone()[0]
    app.close()
    return {"seconds": finished[0] - started, "export_s": seconds(export),
            "import_s": seconds(imported), "count": count, "rss_mb": child["rss_mb"],
            "counters": counters, "page_size": page_size}


def source_file(csv_path: Path, source: str) -> Path:
    """The upload of a `--sources` entry, made from people.csv (once)."""
    if source == "csv":
        return csv_path
    if source == "gzip":
        path = csv_path.with_suffix(".csv.gz")
        if not path.exists():
            with open(csv_path, "rb") as f, gzip.open(path, "wb", compresslevel=6) as out:
                shutil.copyfileobj(f, out, 1 << 20)
        return path
    if source != "jsonl":
        raise SystemExit(f"unknown source {source!r}: csv, jsonl or gzip")
    path = csv_path.with_suffix(".jsonl")
    if not path.exists():
        convert = {"int": int, "float": float, "bool": lambda v: v == "true",
                   "str": str, "date": str}
        kinds = [(name, convert[kind]) for name, kind in COLUMNS.items()]
        encode = json.JSONEncoder(separators=(",", ":")).encode
        with open(csv_path, newline="") as f, open(path, "w") as out:
            reader = csv.reader(f)
            next(reader)
            for row in reader:
                out.write(encode({n: c(v) for (n, c), v in zip(kinds, row, strict=True)}))
                out.write("\n")
    return path


def run_peer(python: str, args: list[str], tmp: Path) -> dict[str, Any]:
    """bench.ingest_bench's pandas or raw route in a child process, on PEER_SCHEMA."""
    out = tmp / f"peer-{time.monotonic_ns()}.json"
    subprocess.run([python, "-m", "bench.flow_bench", "_route", args[0], str(out), *args[1:]],
                   cwd=ROOT, check=True, timeout=TIMEOUT_S)
    return dict(json.loads(out.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--routes", default="jobdock,pandas,raw")
    parser.add_argument("--sources", default="csv",
                        help="uploads of the jobdock route: csv, jsonl, gzip")
    parser.add_argument("--page-size", type=int, default=10_000,
                        help="the flow's export.page_size (1 to 10,000)")
    parser.add_argument("--profile", action="store_true",
                        help="only the jobdock route, py-spy recording the worker 15 s")
    parser.add_argument("--ref", default="HEAD",
                        help="the commit of jobdock to measure, or worktree")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.ref != "worktree":
        commit, src = snapshot(args.ref)
        os.environ["BENCH_JOBDOCK_SRC"] = str(src)  # the worker processes' path
        sys.path.insert(0, str(src))
        log(f"measuring jobdock {commit} (exported to {src})")
    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    routes = ["jobdock"] if args.profile else args.routes.split(",")
    results: list[dict[str, Any]] = []
    try:
        log(f"generating {args.rows:,} rows in {tmp}")
        csv_path, _ = generate(args.rows, tmp, parquet=False)
        log(f"file: {csv_path.stat().st_size / 1e6:.0f} MB")
        py_peer = bench_python() if "pandas" in routes else ""
        sqlite_peer = tmp / "peers.db"
        run = 0
        for backend in args.backends.split(","):
            if backend == "postgresql" and set(routes) - {"jobdock"}:
                pg_reset(PEER_SCHEMA)
            runs = [(route, "csv") for route in routes if route != "jobdock"]
            if "jobdock" in routes:
                runs[:0] = [("jobdock", source) for source in args.sources.split(",")]
            for route, source in runs:
                run += 1
                log(f"{backend} {route} {source}: load average {os.getloadavg()}")
                if route == "jobdock":
                    prof = (OUT / f"flow-profile-{backend}.txt" if args.profile
                            and source == "csv" else None)
                    r = jobdock_flow(backend, source_file(csv_path, source), tmp, run,
                                     args.page_size, prof)
                else:
                    r = run_peer(py_peer if route == "pandas" else sys.executable,
                                 [route, backend, str(csv_path), str(sqlite_peer)], tmp)
                r.update(backend=backend, format=source, route=route, rows=args.rows,
                         load=os.getloadavg(), rows_per_s=args.rows / r["seconds"])
                if r["count"] != args.rows:
                    raise RuntimeError(f"{backend} {route}: {r['count']} rows, not {args.rows}")
                log(f"  {r['rows_per_s']:,.0f} records/s, {r['seconds']:.1f} s,"
                    f" RSS {r['rss_mb']:.0f} MB"
                    + (f" (export {r['export_s']:.1f} s, import {r['import_s']:.1f} s)"
                       if route == "jobdock" else ""))
                results.append(r)
                name = "flow-profile" if args.profile else "flow"
                (OUT / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
            if backend == "postgresql":
                pg_drop(SCHEMA, f"{SCHEMA}_data_{TENANT}")
                if set(routes) - {"jobdock"}:
                    pg_drop(PEER_SCHEMA)
        print(table(results))
        for r in results:
            if r["route"] == "jobdock":
                print(f"{r['backend']} {r['format']}: export step {r['export_s']:.1f} s,"
                      f" import step {r['import_s']:.1f} s, page_size {r['page_size']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_route":
        ingest_bench.PEER_SCHEMA = PEER_SCHEMA  # read by its routes when they run
        ingest_bench.child_main(sys.argv[2:])
    else:
        main()
