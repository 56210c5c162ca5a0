"""Read API under load: one `jobdock serve` process over 1,000,000 stored jobs.

    .venv/bin/python -m bench.api_bench [sqlite] [postgresql] [--jobs N] [--duration S]

For each backend (SQLite in a temporary file; PostgreSQL in a fresh schema
`bench_api` of database `bench` on 127.0.0.1:5432, created when missing):

1. load: `App.submit_many` in batches of 20,000 jobs of 4 kinds (k0..k3) with
   labels and a small input; 2% are submitted with `run_at` a day ahead
   (status scheduled). After each batch, the oldest queued jobs are claimed with
   `store.job_claim_many` and completed with `store.job_complete_many` in chunks
   of 500 (85% succeeded, 10% failed, 5% canceled), the path a worker takes, so
   that in the end the oldest 95% of the queued jobs are finished, the last
   1,000 claimed stay running and the newest 5% stay queued. On PostgreSQL the
   tables are then VACUUM ANALYZEd (autovacuum's job, done at once so plans are
   stable).
2. one server process: `python -m jobdock serve --app bench.api_app:app
   --workers 0` with JOBDOCK_RATE_LIMIT so high that it never refuses;
3. load generator on the same machine: wrk (Debian's package) with
   bench/api_wrk.lua, or bench/api_loadgen.py (async httpx, its own process)
   where wrk is missing. Each case runs `--duration` seconds per connection
   count after a short warm-up:
   - get: GET /v1/jobs/{id}, a random id of 20,000 sampled from all jobs;
   - list first: GET /v1/jobs?kind=k2&status=succeeded&page_size=100;
   - list deep: the same with the page_token of a page 90% through that
     filter's matches (at most page 5,000), found by following
     next_page_token once (with page_size=1000, which the token does not bind);
   - list multi: GET /v1/jobs?kind_in=k1,k2&status_in=succeeded,failed&page_size=100;
4. where the time goes: py-spy on the server (10 s, while the slowest list
   case and the get case run), EXPLAIN (ANALYZE, BUFFERS) of the list queries
   on PostgreSQL and EXPLAIN QUERY PLAN on SQLite, and each step of a request
   timed in-process (auth, SQL, rows to jobs or to JSON records, the answer).

By default the jobdock of commit HEAD is measured (exported with git archive),
so that colleagues' unsaved edits of src/ never get into the figures;
`--ref worktree` measures the work tree as it is. Results: bench/out/api_bench.json
and bench/out/api_bench.md (the tables as printed). The PostgreSQL schema is
dropped at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common as c
from bench.common import log

SCHEMA = "bench_api"
FILTER = "kind=k2&status=succeeded"
# Several kinds and finished statuses: one walk of the list index per pair since 0003's.
FILTER_MULTI = "kind_in=k1,k2&status_in=succeeded,failed"
TENANT = "default"
TEAMS = [f"team-{i}" for i in range(8)]
ENVS = ["prod", "staging", "dev"]
OUTCOMES = (("succeeded", 0.85), ("failed", 0.10), ("canceled", 0.05))
LIST_P99_TARGET_MS = 25.0
GET_RPS_TARGET = 1000.0
PROFILE_RATE = 250
RATE_LIMIT = "1000000000/second"  # never reached: limits must not interfere
# The index the list filters would need (what-if step; not one of jobdock's migrations).
WHAT_IF_NAME = "jobs_bench_kind_status"
WHAT_IF_COLUMNS = "(tenant_id, kind, status, id)"
LUA = c.ROOT / "bench" / "api_wrk.lua"
RESULTS = c.OUT / "api_bench.json"
REPORT = c.OUT / "api_bench.md"


# -- the jobdock under test ---------------------------------------------------


def snapshot(ref: str) -> tuple[str, Path]:
    """Export `ref`'s src/ to bench/out/src-<commit>/ (once); (commit, its src dir)."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=c.ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    dest = c.OUT / f"src-{commit}"
    if not (dest / "src" / "jobdock").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "src"], cwd=c.ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit, dest / "src"


# -- machine and load ---------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def busy_share(seconds: float = 1.0) -> float:
    """Share of the machine's CPU that was busy over `seconds`."""
    b0, t0 = c.machine_busy_s(), time.perf_counter()
    time.sleep(seconds)
    return (c.machine_busy_s() - b0) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def postgres_cpu() -> dict[int, float]:
    """CPU s of each PostgreSQL process that serves the bench database (its backends) or
    the whole server (background processes); backends of other databases are left out."""
    dbname = c.PG_URL.rpartition("/")[2].split("?")[0]
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            title = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        words = title.replace("\0", " ").split(": ")[-1].split()
        backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
        if not backend or words[1] == dbname:
            out[int(entry)] = proc_cpu_s(int(entry))
    return out


class CpuMeter:
    """CPU seconds over a span: the server, PostgreSQL (bench db), the load generator
    (reaped children) and the whole machine; the rest is other people's work."""

    def __init__(self, server_pid: int, backend: str) -> None:
        self.server_pid = server_pid
        self.pg = backend == "postgresql"

    def __enter__(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.machine0 = c.machine_busy_s()
        self.server0 = proc_cpu_s(self.server_pid)
        self.pg0 = postgres_cpu() if self.pg else {}
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children0 = ru.ru_utime + ru.ru_stime
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.machine = c.machine_busy_s() - self.machine0
        self.server = proc_cpu_s(self.server_pid) - self.server0
        pg1 = postgres_cpu() if self.pg else {}
        self.postgres = sum(v - self.pg0.get(pid, 0.0) for pid, v in pg1.items())
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.loadgen = ru.ru_utime + ru.ru_stime - self.children0

    def summary(self) -> dict[str, float]:
        others = self.machine - self.server - self.postgres - self.loadgen
        return {"wall_s": round(self.wall, 2), "server_s": round(self.server, 2),
                "postgres_s": round(self.postgres, 2), "loadgen_s": round(self.loadgen, 2),
                "others_s": round(max(0.0, others), 2), "machine_s": round(self.machine, 2),
                "capacity_s": round(self.wall * (os.cpu_count() or 1), 2)}


# -- the store ----------------------------------------------------------------


def store_url(backend: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'jobs.db'}"
    c.ensure_bench_db()
    return c.schema_url(SCHEMA)


def reset_store(backend: str, workdir: Path) -> None:
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            (workdir / f"jobs.db{suffix}").unlink(missing_ok=True)
    else:
        c.reset_schema(SCHEMA)


def drop_store(backend: str) -> None:
    if backend == "postgresql":
        with c.pg_connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')


def load(app: Any, n: int, batch: int, scheduled: float, rng: random.Random,
         sample_size: int, after_batch: Callable[[int], None]) -> dict[str, Any]:
    """Submit `n` jobs with App.submit_many; time only the submit calls. After each
    call, `after_batch(queued jobs submitted so far)`."""
    from bench.api_app import KINDS
    from jobdock import SubmitRequest

    later = datetime.now(UTC) + timedelta(days=1)
    sample: list[str] = []
    seen = queued = 0
    submit_s = 0.0
    t_all = time.perf_counter()
    for start in range(0, n, batch):
        size = min(batch, n - start)
        requests = []
        for _ in range(size):
            rows = rng.randrange(1, 5000)
            requests.append(SubmitRequest(
                kind=KINDS[rng.randrange(len(KINDS))],
                input={"customer": f"c{rng.randrange(10_000):05d}", "rows": rows,
                       "source": f"s3://bench/in/{rng.randrange(1 << 30):08x}.csv"},
                labels={"team": TEAMS[rng.randrange(len(TEAMS))],
                        "env": ENVS[rng.randrange(len(ENVS))]},
                run_at=later if rng.random() < scheduled else None))
        queued += sum(r.run_at is None for r in requests)
        t0 = time.perf_counter()
        jobs = app.submit_many(requests)
        submit_s += time.perf_counter() - t0
        after_batch(queued)
        for job in jobs:  # reservoir sample of ids, uniform over all jobs
            seen += 1
            if len(sample) < sample_size:
                sample.append(job.id)
            else:
                k = rng.randrange(seen)
                if k < sample_size:
                    sample[k] = job.id
        if (start // batch) % 10 == 9:
            log(f"  submitted {start + size:,} of {n:,}")
    return {"jobs": n, "batch": batch, "submit_s": round(submit_s, 2),
            "submit_per_s": round(n / submit_s), "wall_s": round(time.perf_counter() - t_all, 2),
            "sample": sample}


class Finisher:
    """Claims the oldest queued jobs and completes them as a worker does, through the store
    (`job_claim_many`, then `job_complete_many` in chunks of 500), as the jobs are
    submitted: the queue never holds more than the backlog and one batch, as when
    workers keep up. The last `running` jobs claimed stay running."""

    def __init__(self, app: Any, to_claim: int, running: int, rng: random.Random,
                 claim_batch: int = 5000) -> None:
        self.store = app.engine.store
        self.to_claim = to_claim
        self.to_complete = max(0, to_claim - running)
        self.rng = rng
        self.claim_batch = claim_batch
        self.claimed = self.completed = 0
        self.outcomes: Counter[str] = Counter()
        self.seconds = 0.0
        self.next_log = 100_000

    def catch_up(self, target: int) -> None:
        """Claim (and complete) until `target` jobs have been claimed in all."""
        from bench.api_app import KINDS
        from jobdock.model import Completion, Outcome

        target = min(target, self.to_claim)
        t0 = time.perf_counter()
        while self.claimed < target:
            jobs = self.store.job_claim_many("api-bench-loader", list(KINDS),
                                             min(self.claim_batch, target - self.claimed),
                                             lease_s=7 * 86400)
            if not jobs:
                break
            self.claimed += len(jobs)
            completions = []
            for job in jobs[: max(0, self.to_complete - self.completed)]:
                rows = int(job.input.get("rows", 1))
                draw = self.rng.random()
                if draw < OUTCOMES[0][1]:
                    outcome, result = Outcome.SUCCEEDED, {"rows": rows, "output": f"out/{job.id}"}
                    error, stats = None, {"read": rows, "success": rows}
                elif draw < OUTCOMES[0][1] + OUTCOMES[1][1]:
                    outcome, result = Outcome.FAILED, None
                    error = {"code": "bench_failure", "message": "simulated failure of the bench"}
                    stats = {"read": rows, "success": rows // 2, "errors": rows - rows // 2}
                else:
                    outcome, result, error, stats = Outcome.CANCELED, None, None, None
                completions.append(Completion(job.id, job.attempt, outcome, result=result,
                                              error=error, stats=stats))
                self.outcomes[str(outcome)] += 1
            # Chunks of 500, about what a busy worker flushes at once: on PostgreSQL
            # job_complete_many grows faster than linearly with the batch (its `refused`
            # CTE anti-joins the reports to `held` with a nested loop).
            for start in range(0, len(completions), 500):
                self.store.job_complete_many(completions[start:start + 500])
            self.completed += len(completions)
        self.seconds += time.perf_counter() - t0
        if self.claimed >= self.next_log:
            self.next_log += 100_000
            log(f"  claimed {self.claimed:,}, completed {self.completed:,}")

    def summary(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "completed": self.completed,
                "outcomes": dict(self.outcomes), "wall_s": round(self.seconds, 2)}


def vacuum_analyze(url: str) -> float:
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) jobs")
        conn.execute("VACUUM (ANALYZE) job_attempts")
    return time.perf_counter() - t0


def table_size(backend: str, url: str, workdir: Path) -> str:
    if backend == "sqlite":
        size = sum(p.stat().st_size for p in workdir.glob("jobs.db*"))
        return f"{size / 2**20:,.0f} MiB (database file and WAL)"
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_total_relation_size('jobs'),"
                           " pg_total_relation_size('job_attempts')").fetchone()
    assert row is not None
    return (f"jobs {row[0] / 2**20:,.0f} MiB with its indexes,"
            f" job_attempts {row[1] / 2**20:,.0f} MiB")


# -- the server ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`jobdock serve --workers 0` in its own process group."""

    def __init__(self, url: str, workdir: Path, backend: str, suffix: str = "") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBDOCK_")}
        env.update({
            "PYTHONPATH": os.pathsep.join(p for p in (c.JOBDOCK_SRC, str(c.ROOT)) if p),
            "JOBDOCK_DATABASE_URL": url,
            "JOBDOCK_RATE_LIMIT": RATE_LIMIT,
            "JOBDOCK_DATA_DIR": str(workdir / "data"),
            "JOBDOCK_BLOB_URL": f"file://{workdir / 'blobs'}",
        })
        self.cmd = [sys.executable, "-m", "jobdock", "serve", "--app", "bench.api_app:app",
                    "--workers", "0", "--port", str(self.port)]
        c.LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = c.LOGS / f"api-server-{backend}{suffix}.log"
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(self.cmd, cwd=c.ROOT, env=env, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):"
                                   f" see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer /healthz: see {self.log_path}")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


def api_get(base: str, key: str, path: str) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def deep_token(base: str, key: str, pages: int) -> tuple[str, float]:
    """The page_token of page `pages + 1` of 100 (following next_page_token with pages of
    1,000, which a token does not bind); and the seconds the walk took."""
    assert pages % 10 == 0
    token = None
    t0 = time.perf_counter()
    for _ in range(pages // 10):
        path = f"/v1/jobs?{FILTER}&page_size=1000" + (f"&page_token={token}" if token else "")
        body = api_get(base, key, path)
        token = body["next_page_token"]
        if token is None:
            raise RuntimeError(f"the filter has fewer than {pages * 100:,} matches")
    assert token is not None
    return token, time.perf_counter() - t0


# -- load generation -------------------------------------------------------------


def loadgen_kind(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or --loadgen python)")
    return choice


def drive(kind: str, base: str, path: str, key: str, connections: int, duration: float,
          ids_file: Path | None) -> dict[str, Any]:
    """One closed-loop run of `connections` connections for `duration` seconds."""
    env = {**os.environ, "BENCH_API_KEY": key, "BENCH_IDS_FILE": str(ids_file or "")}
    if kind == "wrk":
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(LUA), base + path]
    else:
        cmd = [sys.executable, "-m", "bench.api_loadgen", "--base", base, "--path", path,
               "--key", key, "--concurrency", str(connections), "--duration", str(duration)]
        if ids_file:
            cmd += ["--ids-file", str(ids_file)]
    out = subprocess.run(cmd, cwd=c.ROOT, env=env, capture_output=True, text=True,
                         timeout=duration + 120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"{cmd[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds,
        "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000, "max_ms": lat["max"] / 1000,
        "errors": raw["errors"], "bytes_per_response": raw["bytes"] / max(1, raw["requests"]),
    }


# -- profile ------------------------------------------------------------------


def py_spy() -> str | None:
    for candidate in (Path(sys.executable).parent / "py-spy", c.VENV_BIN / "py-spy"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("py-spy")


# Each GIL sample goes to the first of these layers (in this order) that its stack
# shows: (label, function name (last dotted part; "" for any), piece of the file path,
# where: "any" frame of the stack, or only the "leaf" (the frame running)).
LAYERS = [
    ("auth: Access.authenticate (key row by prefix, SHA-256)", "authenticate",
     "jobdock/access.py", "any"),
    ("rate limit: KeyRateLimiter.hit (limits, moving window)", "hit",
     "jobdock/api/ratelimit.py", "any"),
    ("store: rows → Job (_job, JSON and time columns)", "_job", "jobdock/store/", "any"),
    ("store: SQL and driver (execute, fetch; psycopg row factory)", "", "jobdock/store/",
     "any"),
    ("response: Time fields' rfc3339 serializer", "rfc3339", "jobdock/api/schemas.py", "any"),
    ("response: JobOut.of (a pydantic model per job)", "of", "jobdock/api/schemas.py", "any"),
    ("response: FastAPI serialize_response (validate and dump the response model)",
     "serialize_response", "fastapi/routing.py", "any"),
    ("response: JSONResponse.render", "render", "starlette/responses.py", "any"),
    ("list parameters and page tokens (pagination.py)", "", "jobdock/api/pagination.py", "any"),
    ("FastAPI solve_dependencies (deps, query parameters)", "solve_dependencies",
     "fastapi/dependencies/", "any"),
    ("uvicorn access log and logging", "", "logging/__init__.py", "any"),
    ("request metrics (prometheus_client)", "", "prometheus_client/", "any"),
    ("other jobdock code (routes, engine, middleware)", "", "jobdock/", "leaf"),
    ("uvicorn HTTP protocol (httptools), event loop", "", "uvicorn/", "leaf"),
    ("uvicorn HTTP protocol (httptools), event loop", "", "asyncio/runners.py", "leaf"),
    ("thread pool hand-offs (anyio to_thread, futures, thread wake-ups)", "", "anyio/",
     "leaf"),
    ("thread pool hand-offs (anyio to_thread, futures, thread wake-ups)", "", "threading.py",
     "leaf"),
    ("thread pool hand-offs (anyio to_thread, futures, thread wake-ups)", "", "concurrent/",
     "leaf"),
    ("thread pool hand-offs (anyio to_thread, futures, thread wake-ups)", "", "asyncio/",
     "leaf"),
    ("Starlette and FastAPI routing, middleware plumbing", "", "starlette/", "leaf"),
    ("Starlette and FastAPI routing, middleware plumbing", "", "fastapi/", "leaf"),
]
OTHER = "other (pydantic, stdlib, interpreter)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/", "lib/python3.12/", "bench/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m['func']} ({file}:{m['line']})"


def layer_of(frames: list[str]) -> str:
    parsed = [(m["func"].rpartition(".")[2], m["file"]) for m in map(_FRAME.match, frames) if m]
    if not parsed:
        return OTHER
    for label, func, file, where in LAYERS:
        candidates = parsed if where == "any" else parsed[-1:]
        if any((not func or name == func) and file in path for name, path in candidates):
            return label
    return OTHER


def summarise_profile(raw: Path, seconds: float, top: int = 10) -> dict[str, Any]:
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    total = sum(n for _, n in stacks) or 1
    layers: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, n in stacks:
        pool = any("_bootstrap (" in f and "threading.py" in f for f in frames)
        threads["worker threads (sync routes and deps, auth)" if pool
                else "event loop thread (uvicorn, middleware, async routes)"] += n
        layers[layer_of(frames)] += n
        leaf[_short(frames[-1])] += n

    def pct(v: int) -> float:
        return round(100 * v / total, 1)

    return {
        "samples": total,
        "gil_held": round(total / (PROFILE_RATE * seconds), 2),
        "threads": [(k, pct(v)) for k, v in threads.most_common()],
        "layers": [(k, pct(v)) for k, v in layers.most_common()],
        "self": [(k, pct(v)) for k, v in leaf.most_common(top)],
    }


def profile_case(tool: str, kind: str, server: Server, path: str, key: str, connections: int,
                 seconds: float, ids_file: Path | None, raw: Path) -> dict[str, Any]:
    """py-spy on the server for `seconds` while the case runs at `connections`: samples
    of the thread that holds the GIL (`--gil`), the Python work that one process can
    do at a time; `--nonblocking`, so the server is not paused at every sample."""
    import threading

    result: dict[str, Any] = {}

    def run_load() -> None:
        result["load"] = drive(kind, server.base, path, key, connections, seconds + 3, ids_file)

    loader = threading.Thread(target=run_load)
    loader.start()
    time.sleep(1.0)
    subprocess.run([tool, "record", "--pid", str(server.pid), "--duration", str(round(seconds)),
                    "--rate", str(PROFILE_RATE), "--gil", "--nonblocking", "--format", "raw",
                    "--output", str(raw)],
                   check=True, capture_output=True, timeout=seconds + 60)
    loader.join()
    summary = summarise_profile(raw, seconds)
    summary.update(raw=str(raw.relative_to(c.ROOT)), connections=connections,
                   rps_under_profiler=round(result["load"]["rps"]))
    return summary


# -- in-process breakdown -------------------------------------------------------


def timed(fn: Callable[[], Any], n: int) -> float:
    """Median ms of `n` calls."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


@contextlib.contextmanager
def captured_sql(backend: str, store: Any) -> Iterator[list[Any]]:
    """The SQL (and parameters) the store sends while the block runs."""
    seen: list[Any] = []
    if backend == "postgresql":
        import psycopg

        original = psycopg.Cursor.execute  # every statement goes through it

        def spy(cur: Any, query: Any, params: Any = None, **options: Any) -> Any:
            text = query if isinstance(query, str) else query.as_string(cur.connection)
            seen.append((text, params))
            return original(cur, query, params, **options)

        psycopg.Cursor.execute = spy  # type: ignore[method-assign]
        try:
            yield seen
        finally:
            psycopg.Cursor.execute = original  # type: ignore[method-assign]
    else:
        conn = store._conn()  # this thread's connection: the one job_list uses here
        conn.set_trace_callback(lambda text: seen.append((text, None)))
        try:
            yield seen
        finally:
            conn.set_trace_callback(None)


def explain(backend: str, url: str, store: Any, sql: str, params: Any) -> dict[str, Any]:
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
            plan = [r[0] for r in rows]
            cur = conn.cursor()  # the statement alone, tuples, no row → Job
            ms = timed(lambda: cur.execute(sql, params).fetchall(), 20)
        executed = next((float(line.split(":")[1].split()[0]) for line in plan
                         if line.startswith("Execution Time:")), None)
        return {"plan": plan, "sql_ms": ms, "execution_ms": executed}
    conn = store._conn()
    plan = [f"{r[0]}|{r[1]}|{r[3]}" for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    ms = timed(lambda: conn.execute(sql).fetchall(), 20)
    return {"plan": plan, "sql_ms": ms}


def breakdown(backend: str, url: str, app: Any, key: str, sample: list[str],
              deep: str | None, rng: random.Random) -> dict[str, Any]:
    """The steps of each request, timed in the bench process (median ms), without HTTP."""
    from jobdock.access import Access
    from jobdock.api import schemas
    from jobdock.api.schemas import JobOut

    engine = app.engine
    store = engine.store
    access = Access(store)
    out: dict[str, Any] = {"auth_ms": timed(lambda: access.authenticate(key), 300)}
    try:  # the key read from the store each time (commits with a key cache)
        uncached = Access(store, key_cache_s=0)
        out["auth_uncached_ms"] = timed(lambda: uncached.authenticate(key), 300)
    except TypeError:
        pass  # an older commit: auth_ms is the uncached figure already
    ids = iter(rng.choices(sample, k=2000))
    job = store.job_get(TENANT, sample[0])
    out["get"] = {
        "store_job_get_ms": timed(lambda: store.job_get(TENANT, next(ids)), 500),
        "job_out_json_ms": timed(lambda: JobOut.of(job).model_dump_json(), 300),
    }
    job_response = getattr(schemas, "job_response", None)  # not in older commits
    if job_response is not None:
        out["get"]["answer_ms"] = timed(lambda: job_response(job).body, 300)
    out["lists"] = list_steps(backend, url, engine, deep)
    return out


def list_steps(backend: str, url: str, engine: Any, deep: str | None,
               equality: bool = False) -> dict[str, Any]:
    """The list cases' SQL (plan, time alone), store call and response, in-process.

    `equality` (PostgreSQL): the SQL with `= (array)[1]` in place of `= ANY(array)` for
    the one-value kind and status filters, i.e. the statement a store that sent plain
    equality for a single value would run; only the SQL steps are timed then."""
    from jobdock.api import schemas
    from jobdock.api.pagination import job_query
    from jobdock.api.schemas import JobOut, JobPage
    from jobdock.engine import _decode_token, _query_fingerprint  # the engine's keyset token

    job_page_response = getattr(schemas, "job_page_response", None)  # not in older commits

    store = engine.store
    records_of_store = getattr(store, "job_list_records", None)  # not in older commits
    cases: dict[str, Any] = {}
    for case, token, filters in (("list first", None, FILTER), ("list deep", deep, FILTER),
                                 ("list multi", None, FILTER_MULTI)):
        if case == "list deep" and token is None:
            continue
        params = [tuple(p.split("=")) for p in filters.split("&")] + [("page_size", "100")]
        query, _ = job_query(TENANT, params, engine.settings.max_page_size)
        if token:  # the engine token inside the signed one: its keyset id
            query.after_id = _decode_token(token.rpartition(".")[0], _query_fingerprint(query))
        query.page_size = 101  # as Engine.list_jobs asks the store: one more than the page
        with captured_sql(backend, store) as seen:
            jobs = store.job_list(query)
        sql, sql_params = next((s, p) for s, p in seen if "ORDER BY" in s)
        if equality:
            sql = sql.replace("= ANY(%s::text[])", "= (%s::text[])[1]")
            info = explain(backend, url, store, sql, sql_params)
            info["sql"] = sql
            cases[case] = info
            continue
        info = explain(backend, url, store, sql, sql_params)
        info["store_job_list_ms"] = timed(lambda q=query: store.job_list(q), 30)
        page = jobs[:100]
        info["job_out_and_json_ms"] = timed(
            lambda p=page: JobPage(items=[JobOut.of(j) for j in p],
                                   next_page_token="x").model_dump_json(), 30)
        if records_of_store is not None:  # the page as records, as the routes read it
            info["store_records_ms"] = timed(lambda q=query: records_of_store(q), 30)
            records = records_of_store(query)[:100]
            assert job_page_response is not None
            info["answer_ms"] = timed(lambda r=records: job_page_response(r, "x").body, 30)
        elif job_page_response is not None:  # the answer from Jobs (job_json, to_json)
            info["answer_ms"] = timed(lambda p=page: job_page_response(p, "x").body, 30)
        info["rows"] = len(jobs)
        info["sql"] = sql if backend == "postgresql" else sql[:2000]
        cases[case] = info
    return cases


def measure(backend: str, args: argparse.Namespace, kind: str, server: Server, key: str,
            cases: list[tuple[str, str, Path | None]], label: str = "") -> list[dict[str, Any]]:
    """Each case at each connection count, after a warm-up per case."""
    runs: list[dict[str, Any]] = []
    for case, path, ids in cases:
        if args.warmup > 0:
            drive(kind, server.base, path, key, max(args.connections), args.warmup, ids)
        for conns in args.connections:
            with CpuMeter(server.pid, backend) as meter:
                run = drive(kind, server.base, path, key, conns, args.duration, ids)
            run.update(case=case + label, cpu=meter.summary())
            runs.append(run)
            log(f"{backend} {case + label:10} c={conns:<3} {run['rps']:7.0f} req/s"
                f"  p50 {run['p50_ms']:6.1f} ms  p99 {run['p99_ms']:6.1f} ms"
                f"  errors {sum(run['errors'].values())}  cpu {meter.summary()}")
    return runs


def what_if_index(backend: str, url: str, app: Any, args: argparse.Namespace, kind: str,
                  workdir: Path, key: str, cases: list[tuple[str, str, Path | None]],
                  deep: str | None) -> dict[str, Any]:
    """The list cases again with the index the report suggests, made on the same data
    by the bench (jobdock's migrations do not have it), then dropped."""
    import psycopg

    t0 = time.perf_counter()
    if backend == "postgresql":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE INDEX {WHAT_IF_NAME} ON jobs {WHAT_IF_COLUMNS}")
            conn.execute("ANALYZE jobs")
    else:
        conn3 = app.engine.store._conn()
        conn3.execute(f"CREATE INDEX {WHAT_IF_NAME} ON jobs {WHAT_IF_COLUMNS}")
    out: dict[str, Any] = {"index": f"CREATE INDEX {WHAT_IF_NAME} ON jobs {WHAT_IF_COLUMNS}",
                           "create_s": round(time.perf_counter() - t0, 1)}
    try:
        out["lists"] = list_steps(backend, url, app.engine, deep)
        if backend == "postgresql":
            out["equality"] = list_steps(backend, url, app.engine, deep, equality=True)
        lists = [case for case in cases if case[0].startswith("list")]
        server = Server(url, workdir, backend, suffix="-index")
        try:
            out["runs"] = measure(backend, args, kind, server, key, lists, label=" + index")
        finally:
            server.stop()
    finally:
        if backend == "postgresql":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP INDEX IF EXISTS {WHAT_IF_NAME}")
        else:
            app.engine.store._conn().execute(f"DROP INDEX IF EXISTS {WHAT_IF_NAME}")
    return out


# -- one backend ----------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace, kind: str,
                workdir: Path) -> dict[str, Any]:
    from bench.api_app import make_app
    from jobdock.access import Access

    rng = random.Random(20261125)
    url = store_url(backend, workdir)
    result: dict[str, Any] = {"backend": backend, "loadavg_before": loadavg(),
                              "busy_before": round(busy_share(), 2)}
    log(f"== {backend}: load average {result['loadavg_before']},"
        f" {result['busy_before']:.0%} of the CPU busy")
    reset_store(backend, workdir)
    app = make_app(database_url=url, blob_url=f"file://{workdir / 'blobs'}",
                   data_dir=str(workdir / "data"), rate_limit=RATE_LIMIT)
    app.engine  # noqa: B018 - migrations
    log(f"{backend}: submitting {args.jobs:,} jobs in batches of {args.batch:,}")
    expected_queued = round(args.jobs * (1 - args.scheduled))
    keep = round(expected_queued * args.backlog)  # the newest, left queued
    finisher = Finisher(app, expected_queued - keep, args.running, rng)
    loaded = load(app, args.jobs, args.batch, args.scheduled, rng, args.sample,
                  after_batch=lambda queued: finisher.catch_up(queued - keep))
    finisher.catch_up(expected_queued - keep)
    sample = loaded.pop("sample")
    result["load"] = loaded
    result["finish"] = finisher.summary()
    log(f"{backend}: submitted in {loaded['submit_s']} s ({loaded['submit_per_s']:,}/s);"
        f" {finisher.completed:,} completed in {finisher.seconds:.1f} s")
    if backend == "postgresql":
        result["vacuum_analyze_s"] = round(vacuum_analyze(url), 1)
    counts = app.engine.store.job_counts(TENANT)
    by_status: Counter[str] = Counter()
    for (_, status), n in counts.items():
        by_status[str(status)] += n
    result["statuses"] = dict(by_status.most_common())
    matches = counts.get(("k2", __import__("jobdock").JobStatus.SUCCEEDED), 0)
    result["filter_matches"] = matches
    result["size"] = table_size(backend, url, workdir)
    key, _ = Access(app.engine.store).create_key(TENANT, scopes=("jobs:read",), name="api-bench")

    ids_file = workdir / "ids.txt"
    ids_file.write_text("\n".join(sample) + "\n")
    server = Server(url, workdir, backend)
    result["server_cmd"] = " ".join(server.cmd[1:]).replace(str(server.port), "PORT")
    try:
        one = api_get(server.base, key, f"/v1/jobs/{sample[0]}")
        assert one["id"] == sample[0]
        first = api_get(server.base, key, f"/v1/jobs?{FILTER}&page_size=100")
        assert len(first["items"]) == 100, "the filter matches fewer than 100 jobs"
        pages = matches // 100
        deep_pages = min(args.max_deep_page - 1, int(pages * 0.9)) // 10 * 10
        cases: list[tuple[str, str, Path | None]] = [
            ("get", "/v1/jobs/ID", ids_file),
            ("list first", f"/v1/jobs?{FILTER}&page_size=100", None),
            ("list multi", f"/v1/jobs?{FILTER_MULTI}&page_size=100", None),
        ]
        deep: str | None = None
        if deep_pages >= 10:
            deep, walk_s = deep_token(server.base, key, deep_pages)
            page = api_get(server.base, key, f"/v1/jobs?{FILTER}&page_size=100&page_token={deep}")
            assert len(page["items"]) == 100
            result["deep"] = {"page": deep_pages + 1, "of_pages": -(-matches // 100),
                              "walk_s": round(walk_s, 1), "walk_requests": deep_pages // 10}
            cases.append(("list deep", f"/v1/jobs?{FILTER}&page_size=100&page_token={deep}",
                          None))
        runs = measure(backend, args, kind, server, key, cases)
        result["runs"] = runs
        result["loadavg_after"] = loadavg()

        tool = py_spy()
        if args.profile_s > 0 and tool:
            lists = [r for r in runs if r["case"].startswith("list")
                     and r["connections"] == min(args.connections)]
            slowest = max(lists, key=lambda r: r["p50_ms"])["case"]
            profiles = {}
            for case in dict.fromkeys([slowest, "get"]):
                path, ids = next((p, i) for n, p, i in cases if n == case)
                raw = c.OUT / f"api-profile-{backend}-{case.replace(' ', '-')}.txt"
                log(f"{backend}: py-spy on the server for {args.profile_s:.0f} s ({case})")
                profiles[case] = profile_case(tool, kind, server, path, key,
                                              max(args.connections), args.profile_s, ids, raw)
            result["profiles"] = profiles
        elif args.profile_s > 0:
            result["profiles"] = {"missing": "py-spy not found: bash bench/setup.sh, or"
                                             " .venv/bin/pip install py-spy"}
    finally:
        server.stop()
    log(f"{backend}: timing each step in-process")
    result["breakdown"] = breakdown(backend, url, app, key, sample, deep, rng)
    if args.what_if:
        log(f"{backend}: the list cases again with {WHAT_IF_COLUMNS}")
        result["what_if"] = what_if_index(backend, url, app, args, kind, workdir, key, cases,
                                          deep)
    app.close()
    return result


# -- report ---------------------------------------------------------------------


def fmt(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        f"- date: {m['date']}; jobdock {data['measured']}",
        f"- command: `{data['command']}`",
        f"- machine: {m['nproc']} vCPU ({m['cpu']}), {m['ram']} RAM, kernel {m['kernel']},"
        f" Python {m['python']}, SQLite {m['sqlite']}, {data.get('postgresql', '')}",
        f"- load generator: {data['loadgen']}; {data['duration']:.0f} s per run after a"
        f" {data['warmup']:.0f} s warm-up per case; closed loop with"
        f" {', '.join(map(str, data['connections']))} connections",
        f"- load average before the run: {data['loadavg_start']}",
        "",
    ]
    for r in data["backends"]:
        b = r["backend"]
        ld, fin = r["load"], r["finish"]
        outcomes = ", ".join(f"{k} {v:,}" for k, v in fin["outcomes"].items())
        lines += [
            f"#### {'SQLite' if b == 'sqlite' else 'PostgreSQL'}",
            "",
            f"- load average {r['loadavg_before']} before, {r.get('loadavg_after', '?')} after"
            f" the HTTP runs; {r['busy_before']:.0%} of the CPU busy just before",
            f"- submit: {ld['jobs']:,} jobs with `App.submit_many` in batches of"
            f" {ld['batch']:,}: {fmt(ld['submit_s'])} s in the calls,"
            f" {ld['submit_per_s']:,} jobs/s",
            f"- meanwhile, after each submit call, the oldest queued jobs claimed with"
            f" `job_claim_many` ({fin['claimed']:,} in all) and {fin['completed']:,} completed"
            f" with `job_complete_many` ({outcomes}): {fmt(fin['wall_s'])} s in those calls"
            + (f"; VACUUM ANALYZE {r['vacuum_analyze_s']} s" if "vacuum_analyze_s" in r else ""),
            f"- statuses: {', '.join(f'{k} {v:,}' for k, v in r['statuses'].items())};"
            f" `{FILTER}` matches {r['filter_matches']:,}; size {r['size']}",
        ]
        if "deep" in r:
            d = r["deep"]
            lines.append(f"- deep page: page {d['page']:,} of {d['of_pages']:,} (reached by"
                         f" {d['walk_requests']} requests of 1,000 in {d['walk_s']} s)")
        lines += ["", "| case | conns | req/s | p50 ms | p99 ms | max ms | errors |"
                  " CPU ms per request: server / PostgreSQL |"
                  " CPU s: server / PostgreSQL / load gen / others, of capacity | target |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for run in r.get("runs", []) + r.get("what_if", {}).get("runs", []):
            cpu = run["cpu"]
            target = ""
            if run["case"].startswith("list"):
                ok = run["p99_ms"] <= LIST_P99_TARGET_MS
                target = f"p99 ≤ {LIST_P99_TARGET_MS:.0f} ms: {'met' if ok else 'missed'}"
            elif run["connections"] == max(data["connections"]):
                ok = run["rps"] >= GET_RPS_TARGET
                target = f"≥ {GET_RPS_TARGET:,.0f} req/s: {'met' if ok else 'missed'}"
            lines.append(
                f"| {run['case']} | {run['connections']} | {fmt(run['rps'], 0)} |"
                f" {fmt(run['p50_ms'])} | {fmt(run['p99_ms'])} | {fmt(run['max_ms'])} |"
                f" {sum(run['errors'].values())} |"
                f" {1000 * cpu['server_s'] / max(1, run['requests']):.2f} /"
                f" {1000 * cpu['postgres_s'] / max(1, run['requests']):.2f} |"
                f" {cpu['server_s']} / {cpu['postgres_s']} /"
                f" {cpu['loadgen_s']} / {cpu['others_s']}, of {cpu['capacity_s']} | {target} |")
        bd = r["breakdown"]
        lines += ["", "Each step alone, in the bench process without HTTP (median ms):", "",
                  "| step | get | " + " | ".join(bd["lists"]) + " |",
                  "|---|---|" + "---|" * len(bd["lists"])]
        lists = list(bd["lists"].values())
        uncached = bd.get("auth_uncached_ms")
        rows = [
            ("auth: Access.authenticate" + (", key cached" if uncached else ""), bd["auth_ms"],
             [bd["auth_ms"]] * len(lists)),
            ("auth: Access.authenticate, key read from the store", uncached,
             [uncached] * len(lists)),
            ("database execution (EXPLAIN ANALYZE)", None,
             [i.get("execution_ms") for i in lists]),
            ("statement and fetch alone (driver tuples, no Job)", None,
             [i["sql_ms"] for i in lists]),
            ("store call: SQL and rows → Job", bd["get"]["store_job_get_ms"],
             [i["store_job_list_ms"] for i in lists]),
            ("JobOut.of and model_dump_json", bd["get"]["job_out_json_ms"],
             [i["job_out_and_json_ms"] for i in lists]),
            ("store call: the page as JSON records (job_list_records)", None,
             [i.get("store_records_ms") for i in lists]),
            ("the answer as the routes build it (one to_json)",
             bd["get"].get("answer_ms"), [i.get("answer_ms") for i in lists]),
        ]
        for label, get_ms, list_ms in rows:
            if all(v is None for v in list_ms):
                continue
            cells = ["-" if get_ms is None else f"{get_ms:.3f}",
                     *("-" if v is None else f"{v:.3f}" for v in list_ms)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        how = "EXPLAIN (ANALYZE, BUFFERS)" if b == "postgresql" else "EXPLAIN QUERY PLAN"
        for case, info in bd["lists"].items():
            lines += ["", f"Plan of `{case}` ({how}):", "", "```", *info["plan"], "```"]
        wi = r.get("what_if")
        if wi:
            lines += ["", f"What if: `{wi['index']}` (made by the bench on the same data in"
                      f" {wi['create_s']} s, dropped afterwards; the `+ index` rows above)."
                      " The same steps, in-process (median ms):", "",
                      "| step | " + " | ".join(wi["lists"]) + " |",
                      "|---|" + "---|" * len(wi["lists"]),
                      "| statement and fetch alone | " + " | ".join(
                          f"{i['sql_ms']:.3f}" for i in wi["lists"].values()) + " |",
                      "| store call: SQL and rows → Job | "
                      + " | ".join(f"{i['store_job_list_ms']:.3f}"
                                   for i in wi["lists"].values()) + " |"]
            if "equality" in wi:
                lines.append("| statement and fetch alone, `= (%s::text[])[1]` instead of"
                             " `= ANY(%s::text[])` | " + " | ".join(
                                 f"{i['sql_ms']:.3f}" for i in wi["equality"].values()) + " |")
                lines.append("| database execution, the same (EXPLAIN ANALYZE) | " + " | ".join(
                    f"{i['execution_ms']:.3f}" for i in wi["equality"].values()) + " |")
            for case, info in wi["lists"].items():
                lines += ["", f"Plan of `{case}` with the index ({how}):", "", "```",
                          *info["plan"], "```"]
            for case, info in wi.get("equality", {}).items():
                lines += ["", f"Plan of `{case}` with the index and plain equality ({how}):",
                          "", "```", *info["plan"], "```"]
        for case, prof in (r.get("profiles") or {}).items():
            if isinstance(prof, str):
                lines += ["", f"Profile: {prof}"]
                continue
            lines += ["", f"py-spy, `{case}` at {prof['connections']} connections"
                      f" ({prof['rps_under_profiler']:,} req/s under the profiler):"
                      f" {prof['samples']:,} samples with the GIL held"
                      f" ({prof['gil_held']:.0%} of the time); raw stacks in {prof['raw']}", "",
                      "| where the GIL samples fall (each sample in one layer) | % |",
                      "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in prof["layers"]]
            lines += ["", "Threads: " + "; ".join(f"{k} {v}%" for k, v in prof["threads"])]
            lines += ["", "Top leaf frames (self): "
                      + "; ".join(f"{k} {v}%" for k, v in prof["self"][:8])]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backends", nargs="*", metavar="sqlite|postgresql",
                        help="both when none is named")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the store")
    parser.add_argument("--batch", type=int, default=20_000, help="jobs per submit_many call")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per case")
    parser.add_argument("--connections", default="1,16",
                        help="comma-separated connection counts, one run each")
    parser.add_argument("--backlog", type=float, default=0.05,
                        help="share of the queued jobs left queued (the newest)")
    parser.add_argument("--scheduled", type=float, default=0.02,
                        help="share of jobs submitted to run a day later")
    parser.add_argument("--running", type=int, default=1000, help="jobs left running")
    parser.add_argument("--sample", type=int, default=20_000, help="ids the get case draws from")
    parser.add_argument("--max-deep-page", type=int, default=5000)
    parser.add_argument("--profile-s", type=float, default=10.0, help="0: no py-spy")
    # Off by default since jobs_kind_status became a migration (0003).
    parser.add_argument("--what-if", dest="what_if", action="store_true",
                        help="re-run the list cases with a candidate index made by the bench")
    parser.add_argument("--no-what-if", dest="what_if", action="store_false",
                        help="(the default)")
    parser.set_defaults(what_if=False)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--ref", default="HEAD",
                        help="jobdock commit to measure; 'worktree' for the work tree as it is")
    parser.add_argument("--keep", action="store_true",
                        help="keep the PostgreSQL schema and the SQLite file afterwards")
    parser.add_argument("--report", metavar="JSON",
                        help="only print the tables of a saved bench/out/api_bench.json")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return
    args.connections = [int(x) for x in str(args.connections).split(",")]
    backends = [b.lower() for b in args.backends] or ["sqlite", "postgresql"]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}: sqlite or postgresql")

    measured = "the work tree as it was (uncommitted edits included)"
    if args.ref != "worktree":
        commit, src = snapshot(args.ref)
        os.environ["BENCH_JOBDOCK_SRC"] = c.JOBDOCK_SRC = str(src)
        sys.path.insert(0, str(src))
        measured = f"commit {commit} (exported with git archive)"
    import jobdock

    log(f"measuring jobdock from {Path(jobdock.__file__).parent}")
    kind = loadgen_kind(args.loadgen)
    if kind == "wrk":
        banner = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        words = (banner.stdout + banner.stderr).split()
        loadgen = f"wrk {words[1] if len(words) > 1 else ''}, 1 thread, bench/api_wrk.lua"
    else:
        why = "wrk was not installed" if args.loadgen == "auto" else "--loadgen python"
        loadgen = f"bench/api_loadgen.py (async httpx, its own process; {why})"
    data: dict[str, Any] = {
        "machine": c.machine_facts(), "measured": measured, "loadgen": loadgen,
        "command": " ".join([Path(sys.executable).relative_to(c.ROOT).as_posix()
                             if Path(sys.executable).is_relative_to(c.ROOT) else sys.executable,
                             "-m", "bench.api_bench", *sys.argv[1:]]),
        "duration": args.duration, "warmup": args.warmup, "connections": args.connections,
        "loadavg_start": loadavg(), "backends": [],
    }
    if "postgresql" in backends:
        c.ensure_bench_db()
        data["postgresql"] = f"PostgreSQL {c.pg_version()} (database bench, schema {SCHEMA})"
    c.OUT.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C: the server is stopped and the store dropped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="jobdock-api-bench-"))
    try:
        for backend in backends:
            data["backends"].append(run_backend(backend, args, kind, workdir))
            RESULTS.write_text(json.dumps(data, indent=2, default=str))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            for backend in backends:
                drop_store(backend)
        else:
            log(f"kept: {workdir} and schema {SCHEMA}")
    data["total_s"] = round(time.perf_counter() - t0)
    RESULTS.write_text(json.dumps(data, indent=2, default=str))
    text = report(data)
    REPORT.write_text(text + "\n")
    print(text)
    log(f"done in {data['total_s']} s; {RESULTS.relative_to(c.ROOT)},"
        f" {REPORT.relative_to(c.ROOT)}")


if __name__ == "__main__":
    main()
