"""Does one-by-one submission scale with clients? (a jobdock diagnosis, not a peer race)

    .bench-venv/bin/python -m bench.submit_threads

1,600 single-job `App.submit` calls to one tenant from 1, 2, 4 and 8 threads of
one process, on PostgreSQL (schema `bench_jobdock_submit`) and on SQLite.
Results go to bench/out/submit.json.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from typing import Any

from bench import common as c
from bench.common import log

N = 1600
SCHEMA = "bench_jobdock_submit"


def rates(url: str, blobs: str) -> dict[int, float]:
    from jobdock import App

    app = App(database_url=url, blob_url=blobs)
    app.job("noop")(lambda ctx, input: {})
    app.migrate()
    app.submit("noop", {})  # warm the pool
    out: dict[int, float] = {}
    for nthreads in (1, 2, 4, 8):
        per = N // nthreads

        def work(per: int = per) -> None:
            for i in range(per):
                app.submit("noop", {"i": i})

        threads = [threading.Thread(target=work) for _ in range(nthreads)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out[nthreads] = per * nthreads / (time.perf_counter() - t0)
    app.close()
    return out


def main() -> None:
    c.ensure_bench_db()
    tmp = tempfile.mkdtemp(prefix="bench-submit-")
    results: dict[str, Any] = {}
    try:
        results["SQLite"] = rates(f"sqlite:///{tmp}/submit.db", f"file://{tmp}/blobs")
        c.reset_schema(SCHEMA)
        results["PostgreSQL"] = rates(c.schema_url(SCHEMA), f"file://{tmp}/blobs")
        with c.pg_connect() as conn:
            conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c.OUT.mkdir(parents=True, exist_ok=True)
    (c.OUT / "submit.json").write_text(json.dumps(results, indent=2))
    log(f"submit from threads: {json.dumps(results)}")


if __name__ == "__main__":
    main()
