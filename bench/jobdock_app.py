"""jobdock app for the benchmark: a no-op kind and a stamp kind.

The store comes from JOBDOCK_DATABASE_URL (and blobs from JOBDOCK_BLOB_URL), set
by bench/jobdock_bench.py; workers run it with
`jobdock worker --app bench.jobdock_app:app`.
"""

from __future__ import annotations

from typing import Any

from bench.common import write_stamp
from jobdock import App, JobContext

app = App()


@app.job("noop")
def noop(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    return {}


@app.job("stamp")
def stamp(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    write_stamp(input["path"], input["i"])
    return {}
