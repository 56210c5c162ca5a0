"""Real worker processes for acceptance tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent

FAST_LEASES = {
    "JOBDOCK_LEASE_S": "1.5",
    "JOBDOCK_HEARTBEAT_INTERVAL_S": "0.3",
    "JOBDOCK_MAINTENANCE_INTERVAL_S": "0.2",
    "JOBDOCK_RETRY_BACKOFF_BASE_S": "0.05",
    "JOBDOCK_RETRY_BACKOFF_MAX_S": "0.5",
    "JOBDOCK_POLL_INTERVAL_S": "0.2",
}

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """Start `jobdock worker --app crash_app:app` processes; all are killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(database_url: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **FAST_LEASES, "JOBDOCK_DATABASE_URL": database_url,
               "JOBDOCK_BLOB_URL": f"file://{tmp_path / 'blobs'}",
               "PYTHONPATH": str(HERE)}
        with (tmp_path / f"worker-{len(started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "jobdock", "worker", "--app", "crash_app:app",
                 "--log-level", "WARNING", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()
