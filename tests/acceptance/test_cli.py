"""The `jobdock` command as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import FAST_LEASES, HERE


def run(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBDOCK_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "JOBDOCK_BLOB_URL": f"file://{tmp_path / 'blobs'}", "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "jobdock", *args], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def test_submit_work_and_read_back(tmp_path: Path) -> None:
    assert "applied migrations" in run(tmp_path, "migrate").stdout
    assert "up to date" in run(tmp_path, "migrate").stdout
    job = json.loads(run(tmp_path, "submit", "sleep", '{"seconds": 0}').stdout)
    assert job["status"] == "queued" and job["kind"] == "sleep"
    run(tmp_path, "worker", "--burst", "--concurrency", "2")
    got = json.loads(run(tmp_path, "get", job["id"]).stdout)
    assert got["status"] == "succeeded"
    listing = run(tmp_path, "list", "--status", "succeeded").stdout
    assert job["id"] in listing


def test_bad_input_gets_a_clear_message_and_no_traceback(tmp_path: Path) -> None:
    cases = [
        (("submit", "nope", "{}"), "unknown job kind 'nope'"),
        (("submit", "sleep", '{"seconds": -1}'), "seconds"),
        (("submit", "sleep", "{not json"), "not JSON"),
        (("submit", "sleep", "{}", "--tenant", "ghost"), "tenant 'ghost' does not exist"),
        (("get", "0123456789abcdef01234567"), "not found"),
        (("tenants", "create", "Bad Name!"), "invalid tenant name"),
        (("worker", "--app", "no_such_module:app"), "cannot import"),
    ]
    for args, message in cases:
        result = run(tmp_path, *args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr + result.stdout, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def test_tenants_cancel_retry_delete(tmp_path: Path) -> None:
    run(tmp_path, "tenants", "create", "acme")
    assert "acme" in run(tmp_path, "tenants", "list").stdout
    job = json.loads(run(tmp_path, "submit", "sleep", '{"seconds": 5}', "-t", "acme").stdout)
    assert "canceled" in run(tmp_path, "cancel", job["id"], "-t", "acme").stdout
    assert "queued" in run(tmp_path, "retry", job["id"], "-t", "acme").stdout
    assert "deleted 1 job(s)" in run(tmp_path, "delete", job["id"], "-t", "acme").stdout
    assert run(tmp_path, "get", job["id"], "-t", "acme", check=False).returncode == 2


def test_demo_shows_jobs_finishing(tmp_path: Path) -> None:
    out = run(tmp_path, "demo", "--jobs", "2", "--no-serve").stdout
    assert out.count("succeeded") >= 2 and "failed" in out and "canceled" in out


def test_served_demo_runs_its_jobs_over_http(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = run(tmp_path, "demo", "--jobs", "1", "--once", "--port", str(port)).stdout
    assert f"API on http://127.0.0.1:{port}" in out
    assert "succeeded" in out and "failed" in out and "canceled" in out
    assert re.search(r"jdk_[0-9a-f]{12}_[0-9a-f]{48}", out)


def test_supervisor_restarts_a_killed_worker_process(tmp_path: Path) -> None:
    env = {**os.environ, **FAST_LEASES, "PYTHONPATH": str(HERE),
           "JOBDOCK_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "JOBDOCK_BLOB_URL": f"file://{tmp_path / 'blobs'}"}
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "jobdock", "worker", "--app", "crash_app:app", "--processes", "2",
         "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children = _wait_for_children(supervisor.pid, 2)
        os.kill(children[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            now = _children_of(supervisor.pid)
            if len(now) == 2 and children[0] not in now:
                break
            assert time.monotonic() < deadline, "the killed worker was not restarted"
            time.sleep(0.2)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _wait_for_children(pid: int, n: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(children := _children_of(pid)) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"supervisor started {len(children)} of {n} workers")
        time.sleep(0.1)
    return children
