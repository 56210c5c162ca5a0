"""The `sleep` kind: waits, reporting progress, and stops when cancelled.

Useful for demos and health checks: `{"seconds": 1.5}`.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from jobdock.errors import JobCanceled
from jobdock.worker.context import JobContext

STEP_S = 0.1


class SleepInput(BaseModel):
    seconds: float = Field(1.0, ge=0, le=86_400, description="how long to sleep")
    fail: bool = Field(False, description="raise an error at the end (to try retries)")


def sleep(ctx: JobContext, input: SleepInput) -> dict[str, float]:
    start = time.monotonic()
    deadline = start + input.seconds
    while (left := deadline - time.monotonic()) > 0:
        if ctx.wait(min(STEP_S, left)):
            raise JobCanceled(f"canceled after {time.monotonic() - start:.1f} s")
        ctx.progress(round(time.monotonic() - start, 3), input.seconds, "sleeping")
    if input.fail:
        raise RuntimeError("failed on request (input.fail = true)")
    ctx.progress(input.seconds, input.seconds, "done")
    return {"slept_s": round(time.monotonic() - start, 3)}
