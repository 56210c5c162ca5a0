"""Workers killed, frozen and cut off from the database lose no job and finish none twice."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from jobdock import App
from jobdock.engine import SubmitRequest
from jobdock.model import JobStatus
from jobdock.store import open_store
from tests.acceptance.conftest import FAST_LEASES, StartWorker

pytestmark = pytest.mark.slow

N_JOBS = 10_000


def _app(database_url: str, tmp_path_blobs: str) -> App:
    from tests.acceptance.crash_app import app as crash_app

    app = App(database_url=database_url, blob_url=f"file://{tmp_path_blobs}")
    for name, function in crash_app.functions.items():
        app._register(crash_app.specs[name], function)
    return app


def _counts(app: App) -> dict[str, int]:
    counts: dict[str, int] = {}
    token = None
    while True:
        page = app.list(page_size=1000, page_token=token)
        for job in page.items:
            counts[job.status] = counts.get(job.status, 0) + 1
        if page.next_page_token is None:
            return counts
        token = page.next_page_token


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _assert_every_job_done_once(app: App, ids: list[str]) -> None:
    """Every job succeeded, and its result is the one of its final attempt."""
    for start in range(0, len(ids), 500):
        for job_id in ids[start : start + 500]:
            job = app.get(job_id)
            assert job.status is JobStatus.SUCCEEDED, job
            assert job.result["attempt"] == job.attempt, job


def test_drain_while_a_worker_is_killed_repeatedly(database_url: str, tmp_path,
                                                   start_worker: StartWorker) -> None:
    app = _app(database_url, str(tmp_path / "blobs"))
    jobs = app.submit_many([SubmitRequest("work", {"n": i}) for i in range(N_JOBS)])
    ids = [job.id for job in jobs]
    steady = start_worker(database_url)
    victim = start_worker(database_url)
    kills = 0
    rng = random.Random(4)
    while kills < 6 and _counts(app).get(JobStatus.SUCCEEDED, 0) < N_JOBS:
        time.sleep(rng.uniform(0.3, 0.8))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        victim = start_worker(database_url)
    assert kills >= 3, "the drain ended before the victim was killed three times"
    _wait_until(lambda: _counts(app).get(JobStatus.SUCCEEDED, 0) == N_JOBS, 180,
                "every job to succeed")
    assert _counts(app) == {JobStatus.SUCCEEDED: N_JOBS}
    _assert_every_job_done_once(app, ids)
    assert steady.poll() is None


def test_worker_back_after_its_lease_expired_cannot_overwrite(
        database_url: str, tmp_path, start_worker: StartWorker) -> None:
    app = _app(database_url, str(tmp_path / "blobs"))
    first = start_worker(database_url)
    job = app.submit("work", {"sleep": 2.0, "n": 1})
    _wait_until(lambda: app.get(job.id).status is JobStatus.RUNNING, 30, "the job to start")
    first.send_signal(signal.SIGSTOP)  # frozen: no heartbeats, its job still "runs"
    second = start_worker(database_url)
    _wait_until(lambda: app.get(job.id).status is JobStatus.SUCCEEDED, 60,
                "the rescued job to succeed on the second worker")
    done = app.get(job.id)
    assert done.attempt == 2 and done.result == {"attempt": 2, "n": 1}
    first.send_signal(signal.SIGCONT)  # it wakes up and reports attempt 1
    store = open_store(database_url)
    try:
        _wait_until(lambda: any(a.status == "refused" for a in
                                store.job_attempts("default", job.id)),
                    30, "the late result to be refused")
    finally:
        store.close()
    after = app.get(job.id)
    assert after.status is JobStatus.SUCCEEDED
    assert after.attempt == 2 and after.result == {"attempt": 2, "n": 1}
    assert second.poll() is None


def test_postgres_restart_mid_drain(pg_schema_url: str, tmp_path,
                                    start_worker: StartWorker) -> None:
    app = _app(pg_schema_url, str(tmp_path / "blobs"))
    jobs = app.submit_many([SubmitRequest("work", {"n": i, "sleep": 0.01})
                            for i in range(N_JOBS)])
    workers = [start_worker(pg_schema_url), start_worker(pg_schema_url)]
    _wait_until(lambda: _counts(app).get(JobStatus.SUCCEEDED, 0) > 500, 60, "the drain to start")
    app.close()
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, timeout=120)
    _wait_until(lambda: _counts(app).get(JobStatus.SUCCEEDED, 0) == N_JOBS, 240,
                "every job to succeed after the restart")
    assert _counts(app) == {JobStatus.SUCCEEDED: N_JOBS}
    _assert_every_job_done_once(app, [job.id for job in jobs])
    assert all(w.poll() is None for w in workers), "a worker died with the database restart"
    assert FAST_LEASES  # the short leases above make the rescue of cut-off jobs quick
