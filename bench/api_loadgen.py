"""A fixed-concurrency HTTP load generator, for machines without wrk.

    python -m bench.api_loadgen --base URL --path PATH --key KEY \
        --concurrency 16 --duration 15 [--ids-file FILE]

Runs in its own process (bench/api_bench.py starts it), so that it does not
share the GIL with the server it measures. `concurrency` connections each send
one request at a time for `duration` seconds (a closed loop, as wrk does); with
`--ids-file`, each request GETs /v1/jobs/<a random id of the file>. Prints one
line `BENCH_JSON {...}` in the shape of bench/api_wrk.lua's.

It is much slower than wrk: one Python process tops out at a few thousand
requests per second and takes a core's worth of CPU from the server under
test on a 2-core machine. Figures from it are marked as such.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import httpx


async def run(args: argparse.Namespace) -> dict[str, object]:
    ids = None
    if args.ids_file:
        with open(args.ids_file) as f:
            ids = [line.strip() for line in f if line.strip()]
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    received = 0
    limits = httpx.Limits(max_connections=args.concurrency,
                          max_keepalive_connections=args.concurrency)
    headers = {"Authorization": f"Bearer {args.key}"}
    async with httpx.AsyncClient(base_url=args.base, headers=headers, limits=limits,
                                 timeout=10.0) as client:
        start = time.perf_counter()
        deadline = start + args.duration

        async def loop() -> None:
            nonlocal received
            rng = random.Random()
            while time.perf_counter() < deadline:
                path = f"/v1/jobs/{rng.choice(ids)}" if ids else args.path
                t0 = time.perf_counter()
                try:
                    response = await client.get(path)
                except httpx.TimeoutException:
                    errors["timeout"] += 1
                    continue
                except httpx.TransportError:
                    errors["connect"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                received += len(response.content)
                if response.status_code >= 400:
                    errors["status"] += 1

        await asyncio.gather(*(loop() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> int:
        if not latencies:
            return 0
        rank = max(1, min(len(latencies), round(p / 100 * len(latencies) + 0.5)))
        return round(latencies[rank - 1] * 1e6)

    return {
        "requests": len(latencies), "duration_us": round(elapsed * 1e6), "bytes": received,
        "errors": errors,
        "latency_us": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "p999": pct(99.9),
                       "max": pct(100),
                       "mean": round(sum(latencies) / max(1, len(latencies)) * 1e6, 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--key", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--ids-file")
    args = parser.parse_args()
    print("BENCH_JSON " + json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
