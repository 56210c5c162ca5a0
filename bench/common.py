"""Shared pieces of the benchmark harness: databases, worker processes, timing, RSS.

Every system (jobdock and its peers) is measured by the same functions here, so
that a difference in the table comes from the queue and not from the harness.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent

# The jobdock source under test: a snapshot of a commit made by bench/run.py, so
# that colleagues' unsaved edits in the work tree never leak into a run. Unset,
# the editable install (the work tree) is used.
JOBDOCK_SRC = os.environ.get("BENCH_JOBDOCK_SRC", "")
if JOBDOCK_SRC and JOBDOCK_SRC not in sys.path:
    sys.path.insert(0, JOBDOCK_SRC)
OUT = ROOT / "bench" / "out"
LOGS = OUT / "logs"
VENV_BIN = ROOT / ".bench-venv" / "bin"

# Admin URL of the benchmark database; never the tests' database.
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/bench")

# Workload sizes (overridable for a quick smoke run).
N_BULK = int(os.environ.get("BENCH_N_BULK", "20000"))
N_ONE = int(os.environ.get("BENCH_N_ONE", "2000"))
N_DRAIN = int(os.environ.get("BENCH_N_DRAIN", "20000"))
N_LATENCY = int(os.environ.get("BENCH_N_LATENCY", "200"))
LATENCY_GAP_S = (0.02, 0.08)  # random idle gap between two latency probes
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))  # per worker process
DRAIN_TIMEOUT_S = float(os.environ.get("BENCH_DRAIN_TIMEOUT_S", "180"))


# -- results -----------------------------------------------------------------


@dataclass
class Result:
    """The figures of one system on one backend; None where not measured."""

    system: str
    backend: str
    bulk_enqueue_per_s: float | None = None
    one_enqueue_per_s: float | None = None
    drain_1_per_s: float | None = None
    drain_2_per_s: float | None = None
    drain_2_steady_per_s: float | None = None  # excluding worker start-up
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    rss_peak_mb: float | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def save(results: Sequence[Result], name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- PostgreSQL --------------------------------------------------------------


def pg_connect(url: str = PG_URL, autocommit: bool = True) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=autocommit)


def ensure_bench_db() -> None:
    """Create the `bench` database when it is missing (never touches `test`)."""
    import psycopg

    base, _, dbname = PG_URL.rpartition("/")
    dbname = dbname.split("?")[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{dbname}"')


def reset_schema(schema: str) -> None:
    """Drop and recreate a schema of the bench database: a fresh state per workload."""
    with pg_connect() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')


def schema_url(schema: str) -> str:
    """The bench URL with `search_path` set to `schema` (libpq's `options`)."""
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


def pg_scalar(sql: str, url: str = PG_URL) -> Any:
    with pg_connect(url) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


class PgQuery:
    """One scalar query on a kept connection: polling must not fork a backend each time."""

    def __init__(self, url: str = PG_URL) -> None:
        self.url = url
        self.conn: Any = None

    def __call__(self, sql: str) -> int:
        import psycopg

        for attempt in (1, 2):
            if self.conn is None or self.conn.closed:
                self.conn = pg_connect(self.url)
            try:
                return int(self.conn.execute(sql).fetchone()[0])
            except psycopg.OperationalError:
                self.conn = None  # a server restart by someone else: connect again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def pg_version() -> str:
    return str(pg_scalar("SHOW server_version"))


# -- worker processes --------------------------------------------------------


class Workers:
    """Worker processes started by the harness, each in its own process group."""

    def __init__(self, cmds: Sequence[Sequence[str]], env: dict[str, str], label: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        path = os.pathsep.join(p for p in (JOBDOCK_SRC, str(ROOT)) if p)
        full_env = {**os.environ, **env, "PYTHONPATH": path}
        for n, cmd in enumerate(cmds):
            logf = open(LOGS / f"{label}.{n}.log", "wb")  # noqa: SIM115 (closed with the process)
            proc = subprocess.Popen(
                list(cmd),
                cwd=ROOT,
                env=full_env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            logf.close()
            self.procs.append(proc)
        self.sampler = RssSampler([p.pid for p in self.procs])
        self.sampler.start()

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def wait(self, timeout: float) -> bool:
        """Wait for every worker to exit by itself; False on timeout."""
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM our own process groups, then SIGKILL what is left after the grace time."""
        for p in self.procs:
            if p.poll() is None:
                with _suppress_lookup():
                    os.killpg(p.pid, signal.SIGTERM)
        if not self.wait(grace_s):
            for p in self.procs:
                if p.poll() is None:
                    with _suppress_lookup():
                        os.killpg(p.pid, signal.SIGKILL)
            self.wait(5.0)
        self.sampler.stop()

    @property
    def rss_peak_mb(self) -> float:
        return self.sampler.peak_mb

    def returncodes(self) -> list[int | None]:
        return [p.poll() for p in self.procs]


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ProcessLookupError


class RssSampler(threading.Thread):
    """Peak resident memory of the busiest single worker process (and its children).

    Reads VmHWM (the kernel's own high-water mark) of every process in each
    worker's tree every 20 ms, so a short spike between two samples still counts;
    only the last few ms before a process exits can be missed.
    """

    def __init__(self, pids: Sequence[int], interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.roots = list(pids)
        self.interval_s = interval_s
        self.peaks: dict[int, int] = {}  # pid -> kB
        self.cpu: dict[int, float] = {}  # pid -> user + system seconds, last seen
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            for root in self.roots:
                try:
                    tree = [root, *(c.pid for c in psutil.Process(root).children(recursive=True))]
                except psutil.Error:
                    continue
                for pid in tree:
                    kb = _vm_hwm_kb(pid)
                    if kb:
                        self.peaks[pid] = max(self.peaks.get(pid, 0), kb)
                    cpu = _cpu_s(pid)
                    if cpu is not None:
                        self.cpu[pid] = cpu
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(2.0)

    @property
    def peak_mb(self) -> float:
        return max(self.peaks.values(), default=0) / 1024

    @property
    def cpu_s(self) -> float:
        """CPU seconds of all the workers' processes (to the last sample)."""
        return sum(self.cpu.values())


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_facts() -> dict[str, str]:
    """The machine a benchmark ran on, for its results: date, cores, CPU, RAM, versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal:")), 0)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
    }


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / _CLK_TCK


def _cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


class PostgresCpu(threading.Thread):
    """CPU seconds used by the local PostgreSQL server for the bench database.

    Samples the server's background processes (WAL writer, checkpointer, …) and
    the backends connected to the bench database, leaving out the backends of
    other databases (the test suites running beside us), every 50 ms, so that
    backends that exit in between still count up to their last sample.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.dbname = PG_URL.rpartition("/")[2].split("?")[0]
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._ours: dict[int, bool] = {}
        self._halt = threading.Event()
        self._sample(self.base)

    def _counts(self, pid: int) -> bool:
        if pid not in self._ours:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                return False
            # "postgres: 15/main: postgres bench 127.0.0.1(5432) idle" for a backend,
            # "postgres: 15/main: walwriter" for a background process.
            words = title.replace("\0", " ").split(": ")[-1].split()
            backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
            self._ours[pid] = not backend or words[1] == self.dbname
        return self._ours[pid]

    def _sample(self, into: dict[int, float]) -> None:
        import psutil

        for p in psutil.process_iter(["name"]):
            if p.info["name"] == "postgres" and self._counts(p.pid):
                cpu = _cpu_s(p.pid)
                if cpu is not None:
                    into[p.pid] = cpu

    def run(self) -> None:
        while not self._halt.is_set():
            self._sample(self.last)
            self._halt.wait(self.interval_s)

    def stop(self) -> float:
        self._halt.set()
        self.join(2.0)
        self._sample(self.last)
        return sum(cpu - self.base.get(pid, 0.0) for pid, cpu in self.last.items())


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- timing ------------------------------------------------------------------


def wait_drained(
    pending: Callable[[], bool],
    any_done: Callable[[], bool],
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    interval_s: float = 0.02,
) -> tuple[float, float | None]:
    """Poll until no job is left unfinished (or the workers are all gone).

    Both probes are cheap EXISTS queries, so that polling every 20 ms does not
    load the database it measures. Returns (time the queue was found drained,
    time a first job was found done) as time.perf_counter() values.
    """
    deadline = time.perf_counter() + timeout_s
    first: float | None = None
    while True:
        if first is None and any_done():
            first = time.perf_counter()
        if not pending():
            return time.perf_counter(), first
        if time.perf_counter() > deadline:
            raise TimeoutError(f"jobs still pending after {timeout_s:.0f}s")
        if not alive() and pending():
            raise RuntimeError("workers exited with jobs pending (see bench/out/logs)")
        time.sleep(interval_s)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_gaps(n: int, seed: int = 7) -> list[float]:
    """The same sequence of random idle gaps for every system."""
    rng = random.Random(seed)
    return [rng.uniform(*LATENCY_GAP_S) for _ in range(n)]


def read_stamps(path: Path) -> dict[int, float]:
    """`i start_time` lines written by the stamp jobs."""
    stamps: dict[int, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            i, t = line.split()
            stamps[int(i)] = float(t)
    return stamps


def wait_stamps(path: Path, n: int, timeout_s: float) -> dict[int, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        stamps = read_stamps(path)
        if len(stamps) >= n or time.monotonic() > deadline:
            return stamps
        time.sleep(0.05)


def latency_stats(
    enqueued: dict[int, float], committed: dict[int, float], started: dict[int, float]
) -> dict[str, Any]:
    """Pick-up latency: job start minus the moment the enqueue call began.

    That includes the enqueue's own commit, since a job cannot start before it;
    the same figures measured from the moment the call returned, and the
    enqueue round trips alone, are kept beside them to tell the two apart.
    """

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "p50": percentile(values, 50),
            "p99": percentile(values, 99),
            "max": max(values, default=float("nan")),
        }

    done = [i for i in enqueued if i in started]
    out: dict[str, Any] = stats([(started[i] - enqueued[i]) * 1000 for i in done])
    out["n"] = len(done)
    out["missing"] = len(enqueued) - len(done)
    out["from_commit"] = stats([(started[i] - committed[i]) * 1000 for i in done])
    out["enqueue_call"] = stats([(committed[i] - enqueued[i]) * 1000 for i in enqueued])
    return out


def write_stamp(path: str, i: int) -> None:
    """Called first thing by every peer's `stamp` job: append `i start_time`."""
    t = time.time()
    # O_APPEND writes of one short line are atomic between processes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i} {t:.6f}\n".encode())
    finally:
        os.close(fd)
