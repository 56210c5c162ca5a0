"""The app that acceptance tests run in real `jobdock worker` processes."""

from __future__ import annotations

import time
from typing import Any

from jobdock import App, JobContext

app = App()


@app.job("work", max_attempts=50)
def work(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Sleeps a little, then returns which attempt ran it."""
    time.sleep(input.get("sleep", 0.005))
    return {"attempt": ctx.job.attempt, "n": input.get("n")}
