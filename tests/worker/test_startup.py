"""What a worker process loads at start, and the built-in kinds that load on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobdock import App, InvalidInput, JobStatus
from tests.helpers import WorkerThreads

# What a worker of an app whose kinds take plain input must not import.
HEAVY = ("jobdock.kinds.sleep", "jobdock.kinds.webhook", "jobdock.kinds.ingest",
         "jobdock.kinds.flow", "jobdock.kinds.readers", "pyarrow")

WORKER_THEN_MODULES = """
import json, sys
from jobdock import App
App().run_worker(concurrency=2, burst=True)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by_a_worker(database_url: str, tmp_path: Path) -> set[str]:
    env = {**os.environ, "JOBDOCK_DATABASE_URL": database_url,
           "JOBDOCK_BLOB_URL": f"file://{tmp_path / 'blobs'}"}
    env.pop("JOBDOCK_APP", None)
    out = subprocess.run([sys.executable, "-c", WORKER_THEN_MODULES], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_a_worker_loads_no_builtin_kind_module(database_url: str, tmp_path: Path) -> None:
    loaded = loaded_by_a_worker(database_url, tmp_path)
    assert not {m for m in loaded if m.startswith(HEAVY)}
    assert "jobdock.worker.runner" in loaded  # it did run


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[App]:
    the_app = App(database_url=database_url, blob_url=f"file://{tmp_path / 'blobs'}",
                  poll_interval_s=0.05, flush_interval_s=0.02)
    yield the_app
    the_app.close()


def test_builtin_kinds_validate_describe_and_run_as_before(app: App) -> None:
    with pytest.raises(InvalidInput) as bad:
        app.submit("sleep", {"seconds": -1})
    assert bad.value.errors == [{"field": "seconds",
                                 "message": "Input should be greater than or equal to 0"}]
    with pytest.raises(InvalidInput):
        app.submit("flow", {"export": {}})
    schema: dict[str, Any] = app.engine.kind("ingest").input_schema()
    assert "tables" in schema["properties"]
    assert app.engine.kind("webhook").max_attempts == 8
    job = app.submit("sleep", {"seconds": 0})
    assert job.input == {"seconds": 0.0, "fail": False}  # validated and dumped by the model
    workers = WorkerThreads(app)
    try:
        workers.start(concurrency=2)
        done = app.wait(job.id, timeout_s=15)
    finally:
        workers.stop_all()
    assert done.status is JobStatus.SUCCEEDED
    assert done.progress["message"] == "done"  # the function received a SleepInput
