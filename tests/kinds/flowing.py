"""Helpers of the flow tests: a flow's input, running one to its end."""

from __future__ import annotations

import time
from typing import Any

import pytest

from jobdock import App
from jobdock.model import Job

ORDERS = {"id": "int", "email": "str", "total": "float", "placed_at": "datetime"}
# Rows of a source: good, ignored, missing a required field, a bad type.
GOOD = {"id": 1, "customer_email": "a@example.com", "total": "9.5",
        "placed_at": "2024-01-01T10:00:00Z", "status": "paid"}
IGNORED = {"id": 2, "customer_email": "b@example.com", "total": 1, "placed_at": None,
           "status": "test"}
NO_EMAIL = {"id": 3, "customer_email": None, "total": 2, "placed_at": None, "status": "paid"}
BAD_TOTAL = {"id": 4, "customer_email": "d@example.com", "total": "lots", "placed_at": None,
             "status": "paid"}


def flow_input(source: dict[str, str], *, page_size: int = 100, flow_id: str = "flow-1",
               integration_id: str = "int-1", table: str = "orders") -> dict[str, Any]:
    return {
        "integration_id": integration_id, "flow_id": flow_id,
        "export": {"export_id": f"exp-{flow_id}", "source": source, "page_size": page_size},
        "import": {"import_id": f"imp-{flow_id}", "table": table, "primary_key": ["id"],
                   "columns": dict(ORDERS), "mapping": {"email": "customer_email"},
                   "required": ["id", "email"], "ignore_if": {"status": "test"}},
    }


def steps(jd: App, flow_job_id: str, tenant: str = "default") -> dict[str, Job]:
    """The flow's export and (first) import child, by kind."""
    found: dict[str, Job] = {}
    for child in jd.children(flow_job_id, tenant=tenant):
        if "retry_of" not in child.labels:
            found[child.kind] = child
    return found


def wait_flow(jd: App, flow_job_id: str, tenant: str = "default",
              timeout_s: float = 60.0) -> tuple[Job, Job, Job | None]:
    """(flow, export, import) once the flow has ended: the import is None when the
    export did not succeed."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = jd.get(flow_job_id, tenant=tenant)
        found = steps(jd, flow_job_id, tenant)
        export, imported = found.get("flow_export"), found.get("flow_import")
        if export is not None and export.terminal and (
                export.status != "succeeded" or (imported is not None and imported.terminal)):
            return job, export, imported
        if time.monotonic() > deadline:
            pytest.fail(f"flow {flow_job_id} did not end: {job.status}, "
                        f"{[(c.kind, c.status) for c in found.values()]}")
        time.sleep(0.05)


def wait_job(jd: App, job_id: str, tenant: str = "default", timeout_s: float = 60.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while not (job := jd.get(job_id, tenant=tenant)).terminal:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} did not end: {job.status}")
        time.sleep(0.05)
    return job
