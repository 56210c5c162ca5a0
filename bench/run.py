"""Run every benchmark in one go and print the comparison as a markdown table.

    bash bench/setup.sh                       # once: the bench venv
    .bench-venv/bin/python -m bench.run       # ~6-8 minutes on the 2-core machine
    .bench-venv/bin/python -m bench.run --quick            # small sizes, a smoke test
    .bench-venv/bin/python -m bench.run --skip profile     # without the py-spy step

Steps (each a process of its own, results as JSON in bench/out/): queues
(jobdock on SQLite and PostgreSQL, Procrastinate, PgQueuer: the same workloads,
interleaved), limits (pgbench, SQLite commits), profile (py-spy of one jobdock
worker draining). The table goes to stdout and to bench/out/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import common as c

STEPS = {
    "queues": ["bench.compare"],
    "limits": ["bench.limits"],
    "submit": ["bench.submit_threads"],
    "profile": ["bench.profile"],
}
QUICK = {
    "BENCH_N_BULK": "2000",
    "BENCH_N_ONE": "200",
    "BENCH_N_DRAIN": "2000",
    "BENCH_N_LATENCY": "20",
    "BENCH_PGBENCH_S": "2",
}
BUSY: dict[str, float] = {}  # share of CPU busy just before each step (others' work)
COLUMNS = [
    ("jobdock", "SQLite"),
    ("jobdock", "PostgreSQL"),
    ("Procrastinate", "PostgreSQL"),
    ("PgQueuer", "PostgreSQL"),
]


def machine() -> dict[str, str]:
    meta = load("meta") or {}
    versions = {}
    for name in ("procrastinate", "pgqueuer", "psycopg", "asyncpg"):
        try:
            versions[name] = version(name)
        except Exception:
            versions[name] = "-"
    return {
        **c.machine_facts(),
        "postgresql": c.pg_version(),
        "jobdock measured": meta.get("jobdock", "?"),
        **versions,
    }


def compile_bytecode(*folders: Path) -> None:
    """Write the .pyc files of `folders`, as installing a package does (pip compiles
    the peers' modules). Without them every worker process would compile jobdock's
    sources (and the bench apps, which every system's workers import) at start-up
    when PYTHONDONTWRITEBYTECODE is set, as it is on the project's machine."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, folders)], check=True,
                   stdout=subprocess.DEVNULL)


def snapshot(ref: str) -> tuple[str, Path]:
    """Export `ref`'s src/ to bench/out/src-<commit>/ (once) and return (commit, its src dir)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=c.ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = c.OUT / f"src-{commit}"
    if not (dest / "src" / "jobdock").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "src"], cwd=c.ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit, dest / "src"


def busy_share(seconds: float = 1.0) -> float:
    """Share of the machine's CPU busy over `seconds` (others' work shows here)."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = read()
    time.sleep(seconds)
    total1, idle1 = read()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def load(name: str) -> Any:
    path = c.OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "n/a"
    return f"{value:,.{digits}f}"


def table() -> str:
    # The interleaved run; else separate runs of bench.peers and bench.jobdock_bench.
    results = load("queues") or (load("peers") or []) + (load("jobdock") or [])
    by = {(r["system"], r["backend"]): r for r in results}
    cols = [by.get(k) for k in COLUMNS]

    def lat(r: dict[str, Any] | None, *path: str) -> Any:
        v: Any = r and r["details"].get("latency")
        for p in path:
            v = v and v.get(p)
        return v

    def drain(r: dict[str, Any] | None, n: int, key: str) -> Any:
        d = r and r["details"].get(f"drain_{n}")
        return d and d.get(key)

    def empty(r: dict[str, Any] | None, key: str) -> Any:
        d = r and r["details"].get("empty_run")
        return d and d.get(key)

    def worker_cpu(r: dict[str, Any] | None) -> float | None:
        cpu = drain(r, 2, "worker_cpu_s")
        return None if cpu is None else cpu - 2 * (empty(r, "cpu_s") or 0.0)

    def per_job(cpu_s: float | None) -> float | None:
        return None if cpu_s is None else cpu_s / c.N_DRAIN * 1e6

    rows: list[tuple[str, list[str], str]] = [
        (
            f"bulk enqueue {c.N_BULK:,} (jobs/s)",
            [fmt(r and r["bulk_enqueue_per_s"]) for r in cols],
            "≥ 50,000",
        ),
        (
            f"one-by-one enqueue {c.N_ONE:,} (jobs/s)",
            [fmt(r and r["one_enqueue_per_s"]) for r in cols],
            "",
        ),
        (
            f"drain {c.N_DRAIN:,}, 1 worker process (jobs/s)",
            [fmt(r and r["drain_1_per_s"]) for r in cols],
            "",
        ),
        (
            f"drain {c.N_DRAIN:,}, 2 worker processes (jobs/s)",
            [fmt(r and r["drain_2_per_s"]) for r in cols],
            "≥ 20,000 SQLite, ≥ 15,000 PG",
        ),
        (
            "… the same, from the first job done (jobs/s)",
            [fmt(r and r["drain_2_steady_per_s"]) for r in cols],
            "",
        ),
        (
            "drain x2: worker start-up to first job done (s)",
            [fmt(drain(r, 2, "startup_s"), 2) for r in cols],
            "",
        ),
        (
            "drain x2: CPU s of workers / of PostgreSQL / wall s",
            [
                f"{fmt(drain(r, 2, 'worker_cpu_s'), 1)} / {fmt(drain(r, 2, 'postgres_cpu_s'), 1)}"
                f" / {fmt(drain(r, 2, 'wall_s'), 1)}"
                if r
                else "-"
                for r in cols
            ],
            "",
        ),
        (
            "drain x2: CPU s taken by other processes meanwhile, of 2 x wall",
            [
                f"{fmt(drain(r, 2, 'others_cpu_s'), 1)} of "
                f"{fmt(2 * (drain(r, 2, 'wall_s') or 0), 1)}"
                if r and drain(r, 2, "wall_s")
                else "-"
                for r in cols
            ],
            "",
        ),
        (
            "one worker started and stopped on an empty queue: wall s / CPU s",
            [
                f"{fmt(empty(r, 'wall_s'), 2)} / {fmt(empty(r, 'cpu_s'), 2)}" if r else "-"
                for r in cols
            ],
            "",
        ),
        (
            "drain x2: CPU per job, workers (less start-up) / PostgreSQL (µs)",
            [
                f"{fmt(per_job(worker_cpu(r)))} / {fmt(per_job(drain(r, 2, 'postgres_cpu_s')))}"
                if r
                else "-"
                for r in cols
            ],
            "",
        ),
        (
            "idle pick-up p50 (ms, from the enqueue call)",
            [fmt(r and r["latency_p50_ms"], 1) for r in cols],
            "",
        ),
        (
            "idle pick-up p99 (ms, from the enqueue call)",
            [fmt(r and r["latency_p99_ms"], 1) for r in cols],
            "≤ 3 PG",
        ),
        (
            "idle pick-up p50 / p99 (ms, from the commit)",
            [
                f"{fmt(lat(r, 'from_commit', 'p50'), 1)} / {fmt(lat(r, 'from_commit', 'p99'), 1)}"
                for r in cols
            ],
            "",
        ),
        (
            "enqueue call alone p50 / p99 (ms)",
            [
                f"{fmt(lat(r, 'enqueue_call', 'p50'), 1)} / {fmt(lat(r, 'enqueue_call', 'p99'), 1)}"
                for r in cols
            ],
            "",
        ),
        ("peak worker RSS (MB)", [fmt(r and r["rss_peak_mb"]) for r in cols], "≤ 60"),
    ]
    head = ["workload", *(f"{s} ({b})" if s == "jobdock" else s for s, b in COLUMNS), "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, values, target in rows:
        lines.append("| " + " | ".join([label, *values, target]) + " |")
    return "\n".join(lines)


def limits_table() -> str:
    lim = load("limits")
    if not lim:
        return ""
    pg = lim["pgbench"]
    rows = [
        ("pgbench -N (simple-update), -c 2 -j 2", pg["simple_update_N"]),
        ("pgbench one-statement UPDATE per transaction, -c 2 -j 2", pg["one_update"]),
        ("pgbench -S (select only), -c 2 -j 2", pg["select_only_S"]),
        ("pgbench one-row INSERT per transaction, -c 8 -j 2", pg["insert_c8"]),
    ]
    lines = ["| limit | transactions/s | latency (ms) |", "|---|---|---|"]
    for label, r in rows:
        lines.append(f"| {label} | {fmt(r['tps'])} | {fmt(r['latency_ms'], 2)} |")
    lines.append(
        f"| SQLite one-row UPDATE per transaction (WAL, synchronous=NORMAL), 1 connection"
        f" | {fmt(lim['sqlite']['one_update_tps'])} | |"
    )
    return "\n".join(lines)


def submit_table() -> str:
    sub = load("submit")
    if not sub:
        return ""
    threads = sorted({int(k) for r in sub.values() for k in r})
    lines = [
        "| jobdock `App.submit`, one tenant | "
        + " | ".join(f"{t} thread(s)" for t in threads)
        + " |",
        "|---|" + "---|" * len(threads),
    ]
    for backend, r in sub.items():
        lines.append(
            f"| {backend} (jobs/s) | " + " | ".join(fmt(r[str(t)]) for t in threads) + " |"
        )
    return "\n".join(lines)


def profile_text() -> str:
    prof = load("profile")
    if not prof:
        return ""
    out = []
    for s in prof:
        out.append(
            f"### {s['backend']}: one worker, {s['done']:,} jobs in {s['wall_s']:.1f} s under"
            f" py-spy, {s['samples']} GIL samples at {s['rate_hz']} Hz,"
            f" {s['startup_share']}% of them start-up (left out below)"
        )
        for section, title in (
            ("threads", "by thread"),
            ("inclusive", "inclusive"),
            ("self", "self"),
        ):
            out.append(f"\n{title}:\n")
            out.extend(f"    {v:5.1f}%  {k}" for k, v in s[section][:12])
        for thread, rows in s.get("wall", {}).items():
            out.append(f"\nwall clock (--idle), {thread}:\n")
            out.extend(f"    {v:5.1f}%  {k}" for k, v in rows)
        out.append("")
    return "\n".join(out)


def report() -> str:
    m = machine()
    busy = (load("meta") or {}).get("busy", {})
    if busy:
        m["CPU busy in the second before each step"] = ", ".join(
            f"{k} {v:.0%}" for k, v in busy.items()
        )
    info = "\n".join(f"- {k}: {v}" for k, v in m.items())
    parts = [
        "# jobdock benchmark\n",
        info,
        f"\nSizes: bulk {c.N_BULK:,}, one-by-one {c.N_ONE:,}, drain {c.N_DRAIN:,},"
        f" {c.N_LATENCY} latency probes; {c.CONCURRENCY} concurrent jobs per worker process.\n",
        table(),
        "\n## Limits of this machine\n",
        limits_table(),
        "\n## One-by-one submission from several threads\n",
        submit_table(),
        "\n## Profile\n",
        profile_text(),
    ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--skip", action="append", default=[], choices=list(STEPS))
    parser.add_argument("--report-only", action="store_true", help="only print the table")
    parser.add_argument(
        "--ref",
        default="HEAD",
        help="jobdock commit to measure (exported from git); 'worktree' for the work tree as it is",
    )
    args = parser.parse_args()
    if args.quick:
        os.environ.update(QUICK)
        # The sizes in bench.common were read at import: read them again.
        for k, v in QUICK.items():
            attr = k.removeprefix("BENCH_")
            if hasattr(c, attr):
                setattr(c, attr, int(v))
    c.ensure_bench_db()
    if not args.report_only:
        measured = "the work tree as it was (uncommitted edits included)"
        if args.ref != "worktree":
            commit, src = snapshot(args.ref)
            os.environ["BENCH_JOBDOCK_SRC"] = c.JOBDOCK_SRC = str(src)
            measured = f"commit {commit} (exported with git archive)"
            c.log(f"measuring jobdock {commit} (exported to {src})")
        else:
            src = c.ROOT / "src"
        compile_bytecode(src, c.ROOT / "bench")
        for step, module in STEPS.items():
            if step in args.skip:
                continue
            (c.OUT / f"{step}.json").unlink(missing_ok=True)  # never report a stale figure
            for attempt in (1, 2):  # the machine is shared: a server restart fails a step
                BUSY[step] = busy_share()
                c.log(f"== {step} (attempt {attempt}), cpu busy {BUSY[step]:.0%} before")
                t0 = time.perf_counter()
                code = subprocess.run(
                    [sys.executable, "-m", *module], cwd=c.ROOT, stdout=sys.stderr
                ).returncode
                c.log(f"== {step}: exit {code} in {time.perf_counter() - t0:.0f}s")
                if code == 0:
                    break
            else:
                c.log(f"{step} failed; its figures are missing from the table")
        (c.OUT / "meta.json").write_text(json.dumps({"jobdock": measured, "busy": BUSY}))
    text = report()
    (c.OUT / "report.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
