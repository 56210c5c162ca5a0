"""Where a jobdock worker's time goes while it drains no-op jobs.

    .bench-venv/bin/python -m bench.profile [sqlite] [postgresql]

For each backend: enqueue 20,000 no-op jobs, then run one
`jobdock worker --burst` under py-spy (`--gil`: only samples where a thread
holds the GIL, i.e. the Python CPU time that caps one process), and summarise
the stacks: share per worker thread, per jobdock function (inclusive) and per
leaf function (self). Raw stacks stay in bench/out/profile-<backend>.txt
(flamegraph.pl or speedscope read them); the summary goes to
bench/out/profile.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import common as c
from bench.common import log
from bench.jobdock_bench import Jobdock

RATE = 250  # samples per second
THREADS = {
    "Worker._claim_loop": "claim loop (main thread)",
    "Worker._execute_loop": "executor threads (run the job functions)",
    "Worker._flush_loop": "flusher (completions)",
    "Worker._heartbeat_loop": "heartbeat",
    "Worker._maintenance_loop": "maintenance",
}
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def parse(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in Path(path).read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def name(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m['func']} ({file})"


STARTUP = "start-up, imports, shutdown"


def thread_of(names: list[str]) -> str:
    for key, label in THREADS.items():
        if any(f.startswith(key + " ") for f in names):
            return label
    return STARTUP


def interesting(frame: str) -> bool:
    return any(k in frame for k in ("jobdock/", "psycopg", "sqlite3", "json", "threading.py"))


def summarise(stacks: list[tuple[list[str], int]], top: int = 15) -> dict[str, Any]:
    """CPU view (GIL samples): start-up apart, then shares of the draining itself."""
    total = sum(n for _, n in stacks) or 1
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for frames, n in stacks:
        names = [name(f) for f in frames]
        thread = thread_of(names)
        threads[thread] += n
        if thread == STARTUP:
            continue
        for f in set(names):
            if interesting(f):
                inclusive[f] += n
        leaf[names[-1]] += n
    steady = (total - threads[STARTUP]) or 1

    def pct(counter: Counter[str], of: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / of, 1)) for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "startup_share": round(100 * threads[STARTUP] / total, 1),
        "threads": pct(Counter({k: v for k, v in threads.items() if k != STARTUP}), steady),
        "inclusive": pct(inclusive, steady),
        "self": pct(leaf, steady),
    }


def summarise_wall(stacks: list[tuple[list[str], int]], top: int = 8) -> dict[str, Any]:
    """Wall view (--idle samples): what the claim loop and the flusher wait on."""
    out: dict[str, Any] = {}
    for thread in (THREADS["Worker._claim_loop"], THREADS["Worker._flush_loop"]):
        inclusive: Counter[str] = Counter()
        total = 0
        for frames, n in stacks:
            names = [name(f) for f in frames]
            if thread_of(names) != thread:
                continue
            total += n
            # The deepest interesting frame says what the thread is doing.
            inner = [f for f in names if interesting(f)]
            inclusive[" > ".join(f.split(" (")[0] for f in inner[-2:])] += n
        out[thread] = [(k, round(100 * v / (total or 1), 1)) for k, v in inclusive.most_common(top)]
    return out


def record(q: Jobdock, raw: Path, extra: list[str]) -> float:
    path = os.pathsep.join(p for p in (c.JOBDOCK_SRC, str(c.ROOT)) if p)
    env = {**os.environ, **q.env, "PYTHONPATH": path}
    cmd = [str(c.VENV_BIN / "py-spy"), "record", *extra, "-r", str(RATE), "-f", "raw"]
    cmd += ["-o", str(raw), "--", *q.worker_cmd(burst=True)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=c.ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


async def profile(backend: str) -> dict[str, Any]:
    q = Jobdock(backend)
    await q.reset()
    await q.enqueue_bulk(c.N_DRAIN)
    raw = c.OUT / f"profile-{backend}.txt"
    wall = record(q, raw, ["--gil"])
    done = q.done_count()
    summary = summarise(parse(str(raw)))
    # Second pass, same workload, sampling every thread whether it runs or waits.
    await q.reset()
    await q.enqueue_bulk(c.N_DRAIN)
    raw_wall = c.OUT / f"profile-{backend}-wall.txt"
    wall2 = record(q, raw_wall, ["--idle"])
    summary["wall"] = summarise_wall(parse(str(raw_wall)))
    await q.close()
    summary.update(backend=backend, wall_s=wall, wall_s_idle_pass=wall2, done=done, rate_hz=RATE)
    log(f"profile {backend}: {done} jobs in {wall:.1f}s under py-spy, {summary['samples']} samples")
    return summary


async def main(backends: list[str]) -> None:
    c.ensure_bench_db()
    c.OUT.mkdir(parents=True, exist_ok=True)
    out = [await profile(b) for b in backends or ["sqlite", "postgresql"]]
    (c.OUT / "profile.json").write_text(json.dumps(out, indent=2))
    for s in out:
        print(f"\n## {s['backend']}: {s['samples']} GIL samples, {s['startup_share']}% start-up\n")
        for section in ("threads", "inclusive", "self"):
            print(f"{section}:")
            for k, v in s[section]:
                print(f"  {v:5.1f}%  {k}")
        for thread, rows in s["wall"].items():
            print(f"wall, {thread}:")
            for k, v in rows:
                print(f"  {v:5.1f}%  {k}")


if __name__ == "__main__":
    asyncio.run(main([a.lower() for a in sys.argv[1:]]))
