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
from jobdock.cli import plain_worker_options
from tests.helpers import WorkerThreads

# What a worker of an app whose kinds take plain input must not import.
HEAVY = ("jobdock.kinds.sleep", "jobdock.kinds.webhook", "jobdock.kinds.ingest",
         "jobdock.kinds.flow", "jobdock.kinds.readers", "pyarrow", "pydantic.", "typer",
         "rich", "jobdock.cli_commands", "pydantic_core")

# `jobdock worker` as the console script runs it.
WORKER_THEN_MODULES = """
import json, sys
from jobdock.cli import main
sys.argv = ["jobdock", "worker", "--burst", "--concurrency", "2", "--log-level=WARNING"]
try:
    main()
finally:
    print(json.dumps(sorted(sys.modules)))
"""


def loaded_by_a_worker(database_url: str, tmp_path: Path) -> set[str]:
    env = {**os.environ, "JOBDOCK_DATABASE_URL": database_url,
           "JOBDOCK_BLOB_URL": f"file://{tmp_path / 'blobs'}"}
    env.pop("JOBDOCK_APP", None)
    out = subprocess.run([sys.executable, "-c", WORKER_THEN_MODULES], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_a_worker_loads_no_kind_module_nor_pydantic_nor_typer(database_url: str,
                                                             tmp_path: Path) -> None:
    loaded = loaded_by_a_worker(database_url, tmp_path)
    assert not {m for m in loaded if m.startswith(HEAVY) or m == "pydantic"}
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


@pytest.mark.parametrize(("argv", "expected"), [
    (["worker"], {}),
    (["worker", "--app", "m:app", "--concurrency=3", "--processes", "2", "--burst",
      "--log-level", "DEBUG"],
     {"app": "m:app", "concurrency": 3, "processes": 2, "burst": True, "log_level": "DEBUG"}),
    (["worker", "--burst", "--no-burst"], {}),
])
def test_plain_worker_options_run_without_typer(argv: list[str], expected: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBDOCK_APP", raising=False)
    defaults = {"app": None, "concurrency": 8, "processes": 1, "burst": False,
                "log_level": "INFO"}
    assert plain_worker_options(argv) == {**defaults, **expected}
    monkeypatch.setenv("JOBDOCK_APP", "env:app")  # --app's default, as in typer
    options = plain_worker_options(argv)
    assert options is not None and options["app"] == expected.get("app", "env:app")


@pytest.mark.parametrize("argv", [
    [], ["submit", "sleep"], ["worker", "--help"], ["worker", "--concurrency", "0"],
    ["worker", "--concurrency=x"], ["worker", "--processes"], ["worker", "--app", "--burst"],
    ["worker", "--unknown"], ["worker", "extra"], ["worker", "--burst=yes"],
])
def test_other_command_lines_go_to_typer(argv: list[str]) -> None:
    assert plain_worker_options(argv) is None
