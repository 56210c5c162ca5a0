"""Helpers shared by test modules: worker threads, waiting for a condition, list plans."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime

import psycopg

from jobdock import App, Worker
from jobdock.model import JobQuery
from jobdock.store import postgres, sqlite


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


def list_plan(database_url: str, query: JobQuery, now: datetime | None = None) -> list[str]:
    """The lines of the plan of the store's list statement for `query`, on either store
    (PostgreSQL's after ANALYZE, so that the plan is the one real statistics give)."""
    if database_url.startswith("sqlite"):
        statement, params = sqlite._job_list_statement(query, now.timestamp() if now else 0.0)
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
            return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
    composed, values = postgres._job_list_statement(query, now)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE jobs")
        rows = conn.execute(b"EXPLAIN " + composed.as_bytes(conn), values).fetchall()
    return [str(row[0]) for row in rows]
