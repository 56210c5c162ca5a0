"""Running jobs: the claim loop and JobContext."""

from jobdock.worker.context import JobContext
from jobdock.worker.runner import Worker, WorkerStats

__all__ = ["JobContext", "Worker", "WorkerStats"]
