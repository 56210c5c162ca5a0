"""Helpers shared by test modules: worker threads and waiting for a condition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobdock import App, Worker


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll `check` until it is true; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s} s"
        time.sleep(0.02)


class WorkerThreads:
    """In-process workers of an App, each on a thread; `stop_all()` at teardown."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.running: list[tuple[Worker, threading.Thread]] = []

    def start(self, concurrency: int = 2) -> Worker:
        """Start a worker (after the test has registered its kinds)."""
        worker = self.app.worker(concurrency=concurrency)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        self.running.append((worker, thread))
        return worker

    def stop_all(self) -> None:
        while self.running:
            worker, thread = self.running.pop()
            worker.stop()
            thread.join(30)
