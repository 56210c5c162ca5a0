"""The worker in-process on both stores: timeouts, cancel, counters, errors, files, children."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from jobdock import App, JobContext, JobStatus, Worker
from tests.helpers import WorkerThreads, wait_for

FAST = {"lease_s": 2.0, "heartbeat_interval_s": 0.1, "poll_interval_s": 0.05,
        "flush_interval_s": 0.02, "maintenance_interval_s": 0.1,
        "retry_backoff_base_s": 0.01, "retry_backoff_max_s": 0.05}


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[App]:
    the_app = App(database_url=database_url, blob_url=f"file://{tmp_path / 'blobs'}", **FAST)
    yield the_app
    the_app.close()


@pytest.fixture
def running(app: App) -> Iterator[Callable[[], Worker]]:
    """Start a worker thread for `app` (after kinds are registered); stopped after the test."""
    workers = WorkerThreads(app)
    yield lambda: workers.start(concurrency=4)
    workers.stop_all()


def test_success_with_counters_progress_errors_and_artifact(app: App, running: Any) -> None:
    @app.job("rows")
    def rows(ctx: JobContext, input: dict[str, Any]) -> dict[str, int]:
        for i in ctx.progress_iter(range(input["n"])):
            if i % 10 == 0:
                ctx.error("row is a multiple of ten", code="422", source="test",
                          record={"i": i}, retry_data={"i": i + 1})
                ctx.count(errors=1)
            else:
                ctx.count(success=1)
        ctx.artifact("out.txt", b"hello", content_type="text/plain")
        with ctx.open("out.txt") as f:
            assert f.read() == b"hello"
        return {"n": input["n"]}

    running()
    job = app.submit("rows", {"n": 100})
    done = app.wait(job.id, timeout_s=15)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"n": 100}
    assert done.stats == {"success": 90, "errors": 10}
    assert done.progress["done"] == 100 and done.progress["total"] == 100
    errors = app.errors(job.id)
    assert len(errors) == 10
    assert errors[0].record == {"i": 0} and errors[0].retry_data == {"i": 1}
    assert errors[0].code == "422" and errors[0].source == "test"
    artifacts = app.engine.store.artifact_list("default", job.id)
    assert [(a.name, a.size, a.content_type) for a in artifacts] == [("out.txt", 5, "text/plain")]


def test_counters_are_visible_while_the_job_runs(app: App, running: Any) -> None:
    release = threading.Event()

    @app.job("slow")
    def slow(ctx: JobContext, input: dict[str, Any]) -> None:
        ctx.count(read=5)
        ctx.progress(1, 2, "half way")
        release.wait(10)

    running()
    job = app.submit("slow", {})
    wait_for(lambda: app.get(job.id).stats.get("read") == 5)
    assert app.get(job.id).progress["message"] == "half way"
    release.set()
    assert app.wait(job.id).status is JobStatus.SUCCEEDED


def test_cancel_reaches_a_running_job_within_a_heartbeat(app: App, running: Any) -> None:
    running()
    job = app.submit("sleep", {"seconds": 30})
    wait_for(lambda: app.get(job.id).status is JobStatus.RUNNING)
    asked = time.monotonic()
    assert app.cancel(job.id).status is JobStatus.CANCELING
    done = app.wait(job.id, timeout_s=10)
    assert done.status is JobStatus.CANCELED
    assert time.monotonic() - asked < 5  # generous: heartbeats run every 0.1 s here


def test_timeout_fails_the_attempt_and_retries(app: App, running: Any) -> None:
    @app.job("stuck", max_attempts=2, timeout_s=0.3)
    def stuck(ctx: JobContext, input: dict[str, Any]) -> None:
        ctx.wait(5)  # honours cancel: returns when the timeout asks it to stop

    running()
    job = app.submit("stuck", {})
    done = app.wait(job.id, timeout_s=20)
    assert done.status is JobStatus.FAILED
    assert done.attempt == 2
    assert done.error is not None and "timeout" in done.error["message"]
    history = app.engine.store.job_attempts("default", job.id)
    assert [a.status for a in history] == ["retry", "failed"]


def test_failures_retry_with_backoff_then_succeed(app: App, running: Any) -> None:
    @app.job("flaky", max_attempts=3)
    def flaky(ctx: JobContext, input: dict[str, Any]) -> int:
        if ctx.job.attempt < 3:
            raise ConnectionError(f"attempt {ctx.job.attempt} failed")
        return ctx.job.attempt

    running()
    job = app.submit("flaky", {})
    done = app.wait(job.id, timeout_s=20)
    assert done.status is JobStatus.SUCCEEDED and done.result == 3 and done.error is None
    history = app.engine.store.job_attempts("default", job.id)
    assert [(a.attempt, a.status) for a in history] == [(1, "retry"), (2, "retry")]
    assert history[0].error == {"code": "ConnectionError", "message": "attempt 1 failed"}


class Greeting(BaseModel):
    name: str
    times: int = 1


def test_pydantic_input_and_async_functions(app: App, running: Any) -> None:
    @app.job("greet")
    async def greet(ctx: JobContext, input: Greeting) -> str:
        await asyncio.sleep(0.01)
        return " ".join([f"hello {input.name}"] * input.times)

    running()
    job = app.submit("greet", {"name": "ada", "times": 2})
    assert app.wait(job.id).result == "hello ada hello ada"


def test_spawned_children_run_and_are_listed(app: App, running: Any) -> None:
    @app.job("parent")
    def parent(ctx: JobContext, input: dict[str, Any]) -> list[str]:
        return [ctx.spawn("sleep", {"seconds": 0}).id for _ in range(3)]

    running()
    job = app.submit("parent", {})
    child_ids = app.wait(job.id).result
    wait_for(lambda: all(app.get(c).status is JobStatus.SUCCEEDED for c in child_ids))
    assert sorted(c.id for c in app.children(job.id)) == sorted(child_ids)
    assert {app.get(c).parent_id for c in child_ids} == {job.id}


def test_stop_gives_back_jobs_that_did_not_start(app: App, running: Any) -> None:
    gate = threading.Event()

    @app.job("gate")
    def gate_job(ctx: JobContext, input: dict[str, Any]) -> None:
        gate.wait(10)

    worker = running()
    jobs = app.submit_many([("gate", {}) for _ in range(12)])
    # Four run (blocked on the gate) and the rest of the claim waits unstarted.
    wait_for(lambda: worker._held_count() > 4)
    worker.stop()
    gate.set()
    wait_for(lambda: all(app.get(j.id).status in (JobStatus.SUCCEEDED, JobStatus.QUEUED)
                         for j in jobs))
    statuses = [app.get(j.id) for j in jobs]
    released = [j for j in statuses if j.status is JobStatus.QUEUED]
    # Never claimed (attempt 0) or given back (attempt 1, one more try): no try consumed.
    assert all(j.max_attempts - j.attempt == 3 for j in released), released
    assert any(j.attempt == 1 for j in released)
    assert sum(j.status is JobStatus.SUCCEEDED for j in statuses) >= 4


def test_burst_waits_for_children_spawned_by_its_last_job(app: App) -> None:
    @app.job("spawner")
    def spawner(ctx: JobContext, input: dict[str, Any]) -> str:
        return ctx.spawn("sleep", {"seconds": 0}).id

    job = app.submit("spawner", {})
    app.run_worker(concurrency=1, burst=True)
    child_id = app.get(job.id).result
    assert app.get(child_id).status is JobStatus.SUCCEEDED


def test_results_waiting_to_be_written_hold_back_claims(database_url: str,
                                                          tmp_path: Path) -> None:
    """A worker whose results are written slower than its jobs run stops claiming while
    4 x 2 x claim_batch results wait (they are kept in memory with their jobs), and
    still finishes every job."""
    app = App(database_url=database_url, blob_url=f"file://{tmp_path / 'blobs'}",
              **{**FAST, "claim_batch": 2, "flush_interval_s": 0.01})
    app.job("noop")(lambda ctx, input: None)
    jobs = app.submit_many([("noop", {"i": i}) for i in range(120)])
    worker = app.worker(concurrency=4, burst=True)
    complete, most = app.engine.complete, [0]

    def slow_complete(*args: Any) -> set[str]:
        most[0] = max(most[0], worker._unflushed)
        time.sleep(0.01)
        return complete(*args)

    app.engine.complete = slow_complete  # type: ignore[method-assign]
    try:
        stats = worker.run()
    finally:
        app.close()
    assert stats.succeeded == 120
    assert worker._unflushed_max == 16
    # + the jobs held when the claims stopped: at most claim_batch + concurrency
    assert 0 < most[0] <= worker._unflushed_max + 6
    assert len({j.id for j in jobs}) == 120


def test_the_first_result_after_a_quiet_spell_is_written_at_once(app: App) -> None:
    """Not at the next timed flush: a worker's first result is visible at once, while
    its other job still runs."""
    app.settings.flush_interval_s = 5.0  # the worker reads it when made
    release = threading.Event()

    @app.job("wait")
    def wait(ctx: JobContext, input: dict[str, Any]) -> None:
        release.wait(10)

    app.job("noop")(lambda ctx, input: None)
    waiting = app.submit("wait", {})
    job = app.submit("noop", {})
    workers = WorkerThreads(app)
    try:
        workers.start(concurrency=2)
        done = app.wait(job.id, timeout_s=2.5)
        assert app.get(waiting.id).status is JobStatus.RUNNING
    finally:
        release.set()
        workers.stop_all()
    assert done.status is JobStatus.SUCCEEDED
