"""Issue #7's ingest benchmark: a 10-column file into a table with a primary key.

    .venv/bin/python -m bench.ingest_bench [--rows N] [--backends sqlite,postgresql]
                                           [--profile] [--big-gb G]

For each backend (SQLite in a temporary directory; PostgreSQL in fresh schemas of
the `bench` database on 127.0.0.1, never `test`) and each format (CSV, and the
same rows as Parquet), in one run and one after the other:

- jobdock: an App on that store, the file uploaded with `files.create_upload`, an
  `ingest` job submitted with the table's declaration, and a worker process
  (`App.worker()`, what `jobdock worker` runs; stopped by SIGTERM once the table
  job is done, because a burst worker can exit before the child job is claimed)
  started after the submit. Timed from the submit until the `ingest_table` child is terminal
  (worker start-up included); the child's own started→finished time is shown
  too, and in the JSON the time outside it: `parent_start_s` (submit to the
  parent's start: worker start-up and first claim), `parent_s` (the parent
  `ingest` job), `child_wait_s` (parent's end to the child's start) and
  `rest_s` (the remainder: the submit, the child's end seen here). Peak RSS
  is the worker process's VmHWM, read by the process at its exit.
- pandas: `pd.read_csv(path, parse_dates=[the two date columns])` (without them
  PostgreSQL refuses the text SQLAlchemy sends for a date column), or
  `pd.read_parquet(path)`, then
  `df.to_sql(table, engine, if_exists="append", index=False)` with pandas'
  defaults (no chunksize, method=None: SQLAlchemy's executemany) into a table
  created first with the same primary key (to_sql cannot declare one). Runs in
  .bench-venv (bench/setup_ingest.sh adds pandas and SQLAlchemy there).
- raw limit: PostgreSQL `COPY plain FROM STDIN (FORMAT csv, HEADER)` fed the
  file's bytes through psycopg's `copy`; SQLite `executemany` of rows parsed and
  converted before the clock starts, in one transaction, into a plain table.

- tables (only with `--routes ...,tables`): jobdock's data area alone,
  `Tables.load` fed rows parsed and typed beforehand, stage() and finish() timed
  apart: what the store layer costs without the reader and the checks.

Each route runs in its own process so that its VmHWM is its own. Row counts are
checked. Results go to bench/out/ingest.json and a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# As in bench/common.py: a `git archive` of the commit to measure, put first on the path
# (the child processes inherit it), so that unsaved edits in the shared work tree stay out.
# Unset, the editable install (the work tree) is measured.
JOBDOCK_SRC = os.environ.get("BENCH_JOBDOCK_SRC", "")
if JOBDOCK_SRC and JOBDOCK_SRC not in sys.path:
    sys.path.insert(0, JOBDOCK_SRC)
OUT = ROOT / "bench" / "out"
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/bench")
SCHEMA = "bench_ingest"  # the job store (its data area is bench_ingest_data_bench)
PEER_SCHEMA = "bench_ingest_peer"  # pandas' and the raw limit's tables
TENANT = "bench"
TABLE = "people"
TIMEOUT_S = float(os.environ.get("BENCH_INGEST_TIMEOUT_S", "1800"))

COLUMNS = {"id": "int", "name": "str", "email": "str", "city": "str", "score": "float",
           "balance": "float", "born": "date", "joined": "date", "visits": "int",
           "active": "bool"}
PG_TYPES = {"int": "bigint", "float": "double precision", "str": "text", "bool": "boolean",
            "date": "date"}
SQLITE_TYPES = {"int": "INTEGER", "float": "REAL", "str": "TEXT", "bool": "BOOLEAN",
                "date": "DATE"}
CITIES = ["Lisbon", "Porto", "Berlin", "Paris", "Madrid", "Rome", "Oslo", "Vienna", "Prague",
          "Dublin", "Warsaw", "Athens", "Helsinki", "Zurich", "Brussels", "Amsterdam"]
NAMES = ["Ana", "Bruno", "Carla", "David", "Eva", "Filipe", "Greta", "Hugo", "Ines", "Joao",
         "Klara", "Luis", "Marta", "Nuno", "Olga", "Pedro", "Rita", "Sara", "Tiago", "Vera"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- data ------------------------------------------------------------------------
def generate(rows: int, directory: Path, parquet: bool = True) -> tuple[Path, Path | None]:
    """people.csv (and people.parquet with the same rows); deterministic."""
    rng = random.Random(7)
    csv_path = directory / "people.csv"
    pq_path = directory / "people.parquet" if parquet else None
    writer_pq = None
    if pq_path is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("email", pa.string()),
                            ("city", pa.string()), ("score", pa.float64()),
                            ("balance", pa.float64()), ("born", pa.date32()),
                            ("joined", pa.date32()), ("visits", pa.int64()),
                            ("active", pa.bool_())])
        writer_pq = pq.ParquetWriter(pq_path, schema)
    base = date(1950, 1, 1)
    chunk = 100_000
    with open(csv_path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for start in range(1, rows + 1, chunk):
            cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
            for i in range(start, min(start + chunk, rows + 1)):
                first = rng.choice(NAMES)
                last = rng.choice(NAMES)
                cols["id"].append(i)
                cols["name"].append(f"{first} {last}son")
                cols["email"].append(f"{first.lower()}.{last.lower()}{i}@example.com")
                cols["city"].append(rng.choice(CITIES))
                cols["score"].append(round(rng.random() * 100, 3))
                cols["balance"].append(round(rng.uniform(-5000, 50000), 2))
                cols["born"].append(base + timedelta(days=rng.randrange(25_000)))
                cols["joined"].append(date(2015, 1, 1) + timedelta(days=rng.randrange(4_000)))
                cols["visits"].append(rng.randrange(10_000))
                cols["active"].append(rng.random() < 0.7)
            out.writerows(zip(*(
                [("true" if v else "false") for v in cols[c]] if c == "active"
                else [v.isoformat() for v in cols[c]] if COLUMNS[c] == "date"
                else cols[c] for c in COLUMNS), strict=True))
            if writer_pq is not None:
                import pyarrow as pa

                writer_pq.write_table(pa.table(cols, schema=writer_pq.schema))
    if writer_pq is not None:
        writer_pq.close()
    return csv_path, pq_path


# -- PostgreSQL helpers -----------------------------------------------------------
def pg_connect(url: str = PG_URL) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def pg_reset(*schemas: str) -> None:
    with pg_connect() as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')


def pg_drop(*schemas: str) -> None:
    with pg_connect() as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def schema_url(schema: str) -> str:
    from urllib.parse import quote

    return f"{PG_URL}?options={quote(f'-csearch_path={schema}', safe='')}"


def ddl(table: str, types: dict[str, str], key: bool) -> str:
    cols = ", ".join(f'"{c}" {types[k]}' for c, k in COLUMNS.items())
    return f'CREATE TABLE {table} ({cols}{", PRIMARY KEY (id)" if key else ""})'


# -- routes (each runs in a child process: `python -m bench.ingest_bench _route ...`) --
def route_worker(url: str, blobs: str) -> dict[str, Any]:
    import signal

    from jobdock import App

    app = App(database_url=url, blob_url=blobs)
    # Not burst: a burst worker can exit while the ingest's child is queued (see
    # RESULTS.md); the parent stops this one with SIGTERM once the table job is done.
    worker = app.worker(concurrency=8)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    stats = worker.run()
    app.close()
    return {"worker": str(stats)}


def route_pandas(backend: str, path: str, target: str) -> dict[str, Any]:
    import pandas as pd
    import sqlalchemy as sa

    if backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{target}")
    else:
        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://")
                                  + f"?options=-csearch_path%3D{PEER_SCHEMA}")
    types = SQLITE_TYPES if backend == "sqlite" else PG_TYPES
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS pandas_people")
        conn.exec_driver_sql(ddl("pandas_people", types, key=True))
    started = time.perf_counter()
    df = (pd.read_parquet(path) if path.endswith(".parquet")
          else pd.read_csv(path, parse_dates=["born", "joined"]))
    read_s = time.perf_counter() - started
    df.to_sql("pandas_people", engine, if_exists="append", index=False)
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM pandas_people").scalar()
    engine.dispose()
    return {"seconds": elapsed, "read_s": read_s, "count": count,
            "versions": {"pandas": pd.__version__, "sqlalchemy": sa.__version__}}


def route_raw(backend: str, path: str, target: str) -> dict[str, Any]:
    if backend == "postgresql":
        with pg_connect(schema_url(PEER_SCHEMA)) as conn:
            conn.execute("DROP TABLE IF EXISTS raw_people")
            conn.execute(ddl("raw_people", PG_TYPES, key=False))
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    "COPY raw_people FROM STDIN (FORMAT csv, HEADER)") as copy, \
                    open(path, "rb") as f:
                while data := f.read(1 << 20):
                    copy.write(data)
            elapsed = time.perf_counter() - started
            count = conn.execute("SELECT count(*) FROM raw_people").fetchone()[0]
        return {"seconds": elapsed, "count": count}
    # SQLite: parse and convert first (not timed), then one executemany in one transaction.
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [(int(r[0]), r[1], r[2], r[3], float(r[4]), float(r[5]), r[6], r[7], int(r[8]),
                 1 if r[9] == "true" else 0) for r in reader]
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("DROP TABLE IF EXISTS raw_people")
    conn.execute(ddl("raw_people", SQLITE_TYPES, key=False))
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO raw_people VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    count = conn.execute("SELECT count(*) FROM raw_people").fetchone()[0]
    conn.close()
    return {"seconds": elapsed, "count": count}


def route_tables(backend: str, path: str, target: str) -> dict[str, Any]:
    """jobdock's data area alone: `Tables.load` fed rows parsed and typed beforehand (no
    reader, no checks), with stage() and finish() timed apart."""
    from jobdock.store.tables import open_tables

    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [(int(r[0]), r[1], r[2], r[3], float(r[4]), float(r[5]),
                 date.fromisoformat(r[6]), date.fromisoformat(r[7]), int(r[8]), r[9] == "true")
                for r in reader]
    if backend == "sqlite":
        url = f"sqlite:///{Path(target).parent}/tables-only/jobs.db"
    else:
        pg_drop(f"{PEER_SCHEMA}_data_{TENANT}")
        url = schema_url(PEER_SCHEMA)
    tables = open_tables(url)
    try:
        started = time.perf_counter()
        with tables.load(TENANT, "tables_only", COLUMNS, ["id"]) as load:
            load.stage(iter(rows))
            staged = time.perf_counter()
            inserted, _ = load.finish()
        elapsed = time.perf_counter() - started
    finally:
        tables.close()
    return {"seconds": elapsed, "stage_s": staged - started, "finish_s": elapsed - (
        staged - started), "count": inserted}


def child_main(argv: list[str]) -> None:
    kind, out = argv[0], argv[1]
    result: dict[str, Any] = {}
    try:
        if kind == "worker":
            result = route_worker(argv[2], argv[3])
        elif kind == "pandas":
            result = route_pandas(argv[2], argv[3], argv[4])
        elif kind == "tables":
            result = route_tables(argv[2], argv[3], argv[4])
        else:
            result = route_raw(argv[2], argv[3], argv[4])
    finally:
        result["rss_mb"] = vm_hwm_mb()
        Path(out).write_text(json.dumps(result))


def run_child(python: str, args: list[str], tmp: Path, env: dict[str, str] | None = None,
              profile: Path | None = None, done: Any = None) -> dict[str, Any]:
    """Run a route in a child process; with `done`, poll it and SIGTERM the child once true."""
    out = tmp / f"child-{time.monotonic_ns()}.json"
    cmd = [python, "-m", "bench.ingest_bench", "_route", args[0], str(out), *args[1:]]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})})
    spy = None
    if profile is not None:
        time.sleep(2.0)  # past the imports and the parent ingest job
        spy = subprocess.Popen([str(ROOT / ".bench-venv" / "bin" / "py-spy"), "record",
                                "--pid", str(proc.pid), "--duration", "15", "--format", "raw",
                                "--rate", "200", "--nonblocking", "--output", str(profile)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if done is not None:
            deadline = time.monotonic() + TIMEOUT_S
            while not done() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        # A worker is stopped whatever happens here: left running, it would claim the jobs
        # of the next run that uses the same PostgreSQL schema. Other routes end by themselves.
        if done is not None and proc.poll() is None:
            proc.send_signal(15)
    code = proc.wait(TIMEOUT_S)
    if spy is not None:
        spy.wait(60)
    if code != 0:
        raise RuntimeError(f"{cmd} exited with {code}")
    return dict(json.loads(out.read_text()))


# -- jobdock end to end ---------------------------------------------------------------
def app_with_upload(backend: str, path: Path, tmp: Path, run: int,
                    schema: str) -> tuple[Any, Any, str, str]:
    """A fresh jobdock App on `backend` (SQLite under tmp/run<n>, or PostgreSQL schema
    `schema` and its tenant's data area, both emptied) holding `path` as an upload:
    (app, upload, database URL, blob URL), the URLs for the worker process."""
    from jobdock import App
    from jobdock.files import create_upload

    blobs = f"file://{tmp}/blobs{run}"
    if backend == "sqlite":
        (tmp / f"run{run}").mkdir()
        url = f"sqlite:///{tmp}/run{run}/jobs.db"  # tenants' files: run<n>/tenants/
    else:
        pg_reset(schema)
        pg_drop(f"{schema}_data_{TENANT}")
        url = schema_url(schema)
    app = App(database_url=url, blob_url=blobs)
    app.migrate()
    app.create_tenant(TENANT)

    def chunks() -> Any:
        with open(path, "rb") as f:
            while data := f.read(1 << 20):
                yield data

    return app, create_upload(app.engine, TENANT, path.name, chunks()), url, blobs


def run_worker(url: str, blobs: str, tmp: Path, profile: Path | None,
               done: Any) -> dict[str, Any]:
    """A jobdock worker process on that store (see run_child), stopped once done()."""
    return run_child(sys.executable, ["worker", url, blobs], tmp,
                     env={"JOBDOCK_DATABASE_URL": url, "JOBDOCK_BLOB_URL": blobs},
                     profile=profile, done=done)


def jobdock_ingest(backend: str, path: Path, tmp: Path, run: int,
                   profile: Path | None = None) -> dict[str, Any]:
    app, upload, url, blobs = app_with_upload(backend, path, tmp, run, SCHEMA)
    started = time.perf_counter()
    parent = app.submit("ingest", {"tables": [{"table_name": TABLE, "primary_key": ["id"],
                                               "columns": COLUMNS, "files": [upload.id]}]},
                        tenant=TENANT)
    finished: list[float] = []

    def done() -> bool:
        kids = app.children(parent.id, tenant=TENANT)
        if kids and kids[0].terminal:
            finished.append(time.perf_counter())
            return True
        return False

    child = run_worker(url, blobs, tmp, profile, done)
    parent = app.get(parent.id, tenant=TENANT)
    kids = app.children(parent.id, tenant=TENANT)
    if parent.status.value != "succeeded" or len(kids) != 1 or not kids[0].terminal:
        raise RuntimeError(f"ingest did not finish: {parent} {kids}")
    table_job = kids[0]
    elapsed = finished[0] - started
    if table_job.status.value != "succeeded":
        raise RuntimeError(f"ingest_table failed: {table_job}")
    job_s = (table_job.finished_at - table_job.started_at).total_seconds()
    # Where the time outside the table job goes: the worker's start and first claim (up
    # to the parent's start), and the wait from the parent's end to the child's start.
    assert parent.created_at and parent.started_at and parent.finished_at
    assert table_job.started_at
    outside = {"parent_start_s": (parent.started_at - parent.created_at).total_seconds(),
               "parent_s": (parent.finished_at - parent.started_at).total_seconds(),
               "child_wait_s": (table_job.started_at - parent.finished_at).total_seconds()}
    # The rest: the submit itself, the table job's end being written and seen here.
    outside["rest_s"] = elapsed - job_s - sum(outside.values())
    if backend == "postgresql":
        with pg_connect() as conn:
            count = conn.execute(
                f'SELECT count(*) FROM "{SCHEMA}_data_{TENANT}"."{TABLE}"').fetchone()[0]
    else:
        db = tmp / f"run{run}" / "tenants" / f"{TENANT}.db"
        with sqlite3.connect(db) as conn:
            count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    app.close()
    return {"seconds": elapsed, "job_s": job_s, "count": count, "rss_mb": child["rss_mb"],
            "result": table_job.result, **outside}


# -- the run ------------------------------------------------------------------------------
def bench_python() -> str:
    try:
        import pandas  # noqa: F401
        import sqlalchemy  # noqa: F401

        return sys.executable
    except ImportError:
        candidate = ROOT / ".bench-venv" / "bin" / "python"
        if not candidate.exists():
            raise SystemExit("pandas/SQLAlchemy missing: run bash bench/setup_ingest.sh") from None
        return str(candidate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--routes", default="jobdock,pandas,raw",
                        help="also: tables (jobdock's Tables.load alone, pre-parsed rows)")
    parser.add_argument("--profile", action="store_true",
                        help="only py-spy 15 s of jobdock's CSV ingest per backend")
    parser.add_argument("--big-gb", type=float, default=0.0,
                        help="only jobdock's CSV ingest of a file of about this many GB: RSS")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    results: list[dict[str, Any]] = []
    try:
        rows = args.rows
        if args.big_gb:
            rows = int(args.big_gb * 1e9 / 103)  # ~103 bytes per generated row
        log(f"generating {rows:,} rows in {tmp}")
        csv_path, pq_path = generate(rows, tmp, parquet=not args.big_gb and not args.profile
                                     and "parquet" in args.formats)
        sizes = {"csv_mb": csv_path.stat().st_size / 1e6,
                 "parquet_mb": pq_path.stat().st_size / 1e6 if pq_path else None}
        log(f"files: {sizes}")
        py_peer = bench_python() if "pandas" in args.routes and not args.profile else ""
        run = 0
        for backend in args.backends.split(","):
            formats = (["csv"] if args.big_gb or args.profile else args.formats.split(","))
            sqlite_peer = tmp / "peers.db"
            if backend == "postgresql":
                pg_reset(PEER_SCHEMA)
            for fmt in formats:
                path = csv_path if fmt == "csv" else pq_path
                assert path is not None
                routes = (["jobdock"] if args.big_gb or args.profile
                          else args.routes.split(","))
                for route in routes:
                    if route in ("raw", "tables") and fmt != "csv":
                        continue  # the raw limit is the CSV's
                    run += 1
                    log(f"{backend} {fmt} {route}: uptime {os.getloadavg()}")
                    if route == "jobdock":
                        prof = (OUT / f"ingest-profile-{backend}.txt" if args.profile else None)
                        r = jobdock_ingest(backend, path, tmp, run, prof)
                    elif route == "pandas":
                        r = run_child(py_peer, ["pandas", backend, str(path), str(sqlite_peer)],
                                      tmp)
                    else:  # raw, tables
                        r = run_child(sys.executable, [route, backend, str(path),
                                                       str(sqlite_peer)], tmp)
                    r.update(backend=backend, format=fmt, route=route, rows=rows,
                             load=os.getloadavg(), rows_per_s=rows / r["seconds"])
                    if r["count"] != rows:
                        raise RuntimeError(f"{backend} {fmt} {route}: {r['count']} rows, not"
                                           f" {rows}")
                    log(f"  {r['rows_per_s']:,.0f} rows/s, {r['seconds']:.1f} s,"
                        f" RSS {r['rss_mb']:.0f} MB")
                    results.append(r)
                    name = "ingest-big" if args.big_gb else (
                        "ingest-profile" if args.profile else "ingest")
                    (OUT / f"{name}.json").write_text(json.dumps(
                        {"sizes": sizes, "results": results}, indent=2, default=str))
            if backend == "postgresql":
                pg_drop(PEER_SCHEMA, SCHEMA, f"{SCHEMA}_data_{TENANT}")
        print(table(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(results: list[dict[str, Any]]) -> str:
    by = {(r["backend"], r["format"], r["route"]): r for r in results}
    lines = ["| backend | format | route | rows/s | s (job s) | peak RSS MB | x pandas |"
             " of raw |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        pandas = by.get((r["backend"], r["format"], "pandas"))
        raw = by.get((r["backend"], "csv", "raw"))
        job = (f" ({r['job_s']:.1f})" if "job_s" in r else
               f" (stage {r['stage_s']:.1f} + finish {r['finish_s']:.1f})" if "stage_s" in r
               else "")
        ratio = (f"{r['rows_per_s'] / pandas['rows_per_s']:.2f}" if pandas and
                 r["route"] == "jobdock" else "")
        of_raw = (f"{r['rows_per_s'] / raw['rows_per_s']:.0%}" if raw and r["route"] != "raw"
                  else "")
        lines.append(f"| {r['backend']} | {r['format']} | {r['route']} |"
                     f" {r['rows_per_s']:,.0f} | {r['seconds']:.1f}{job} | {r['rss_mb']:.0f} |"
                     f" {ratio} | {of_raw} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_route":
        child_main(sys.argv[2:])
    else:
        main()
