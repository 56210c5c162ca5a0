"""`jobdock demo`: sample jobs on the embedded default, watched as they run.

With `serve` (the default) it starts the HTTP API with embedded workers, makes
an API key, and does everything a client would over HTTP: submit, watch,
cancel. Without it, the same through the Python API and an in-process worker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobdock.access import Access
from jobdock.app import App

# Each sample: its name and the input of a `sleep` job.
SAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("demo failure", {"seconds": 0.5, "fail": True}),
    ("demo cancel", {"seconds": 30}),
]
CANCEL_AFTER_S = 1.5

JobView = dict[str, Any]


def samples(jobs: int) -> list[tuple[str, dict[str, Any]]]:
    sleeps = [(f"demo sleep {i + 1}", {"seconds": round(1.0 + 0.3 * i, 1)}) for i in range(jobs)]
    return sleeps + SAMPLES


def run_in_process(app: App, jobs: int, console: Console) -> None:
    """Sample jobs through the Python API, run by an in-process worker."""
    console.print(f"[bold]jobdock demo[/bold] on {app.settings.database_url}")
    ids = [app.submit("sleep", value, name=name).id for name, value in samples(jobs)]
    worker = app.worker(concurrency=4)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    def view(job_id: str) -> JobView:
        job = app.get(job_id)
        return {"id": job.id, "name": job.name, "status": job.status.value,
                "attempt": job.attempt, "progress": job.progress, "result": job.result,
                "error": job.error}

    _watch(console, ids, view, cancel=lambda job_id: app.cancel(job_id))
    worker.stop()
    thread.join()
    _summary(console, [view(i) for i in ids])


def run_served(app: App, jobs: int, host: str, port: int, once: bool,
               console: Console) -> None:
    """Sample jobs over HTTP against a served API with embedded workers."""
    import uvicorn

    from jobdock.api import create_api

    server = uvicorn.Server(uvicorn.Config(create_api(app, workers=4), host=host, port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="jobdock-demo-server", daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    key, _ = Access(app.engine.store).create_key(
        "default", scopes=("jobs:read", "jobs:write", "jobs:delete", "admin"), name="demo")
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                          timeout=10) as client:
            _wait_ready(client, server)
            console.print(f"[bold]jobdock demo[/bold]: API on {base} "
                          f"({app.settings.database_url})")
            ids = [_submit(client, name, value) for name, value in samples(jobs)]
            _watch(console, ids, lambda i: client.get(f"/v1/jobs/{i}").json(),
                   cancel=lambda i: client.post(f"/v1/jobs/{i}/cancel").raise_for_status())
            _summary(console, [client.get(f"/v1/jobs/{i}").json() for i in ids])
        console.print(f"\nAPI key (admin of tenant default): [bold]{key}[/bold]",
                      soft_wrap=True)
        console.print(f"  curl -H 'Authorization: Bearer {key}' {base}/v1/jobs", soft_wrap=True)
        console.print(f"  docs: {base}/docs", soft_wrap=True)
        if not once:
            console.print("Serving; press Ctrl-C to stop.")
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        thread.join(30)


def _wait_ready(client: httpx.Client, server: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.started:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    raise RuntimeError("the API did not start within 30 s (is the port in use?)")


def _submit(client: httpx.Client, name: str, value: dict[str, Any]) -> str:
    answer = client.post("/v1/jobs", json={"kind": "sleep", "input": value, "name": name})
    answer.raise_for_status()
    job_id: str = answer.json()["id"]
    return job_id


def _watch(console: Console, ids: list[str], view: Callable[[str], JobView],
           cancel: Callable[[str], object]) -> None:
    """Progress bars until every job has finished; cancels the last job on the way."""
    start = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    terminal = {"succeeded", "failed", "canceled", "skipped"}
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, Any] = {}
        canceled = False
        while True:
            current = [view(i) for i in ids]
            for job in current:
                if job["id"] not in tasks:
                    tasks[job["id"]] = progress.add_task(job["name"] or job["id"], total=1.0,
                                                         status=job["status"])
                shown = job.get("progress") or {}
                total = float(shown.get("total") or 1) or 1.0
                done = 1.0 if job["status"] in terminal else float(shown.get("done") or 0) / total
                progress.update(tasks[job["id"]], completed=done, status=job["status"])
            if all(job["status"] in terminal for job in current):
                return
            if not canceled and time.monotonic() - start > CANCEL_AFTER_S:
                cancel(ids[-1])
                canceled = True
            time.sleep(0.1)


def _summary(console: Console, jobs: list[JobView]) -> None:
    table = Table("id", "name", "status", "attempt", "result / error")
    for job in jobs:
        outcome = job["result"] if job.get("error") is None else job["error"].get("message")
        table.add_row(job["id"], job["name"] or "", job["status"], str(job["attempt"]),
                      json.dumps(outcome))
    console.print(table)
