"""The `flow` kind: export records from a source, then import them into a table.

A `flow` job names an export (a source: an upload, CSV or JSONL, or a table of the
tenant's data area; read in pages of `page_size`) and an import (a table with its
columns, their types and a primary key; a mapping of table columns to source
fields; required columns; records to ignore). It submits a `flow_export` child
(step 0) and succeeds: like `ingest`, the children are the work and carry the
state, times and counters that readers (the integrator dialect) show. The export
submits the `flow_import` child (step 1), a sibling under the flow job.

The modules of the flow kinds, one concept each:

    flow_input    the input models of the three kinds, their labels
    flow_export   step 0: pages of the source, counters exported and pages
    flow_upload   an upload as both steps read it (a plain CSV is read by both)
    flow_import   step 1: pages checked and upserted in loads of whole pages
    flow_mapping  mapping and checks, a record or a page at once
    flow_errors   error records of failing records and their retry data
    flow_steps    what both steps share

This module keeps the parent kind and the names other modules import from
`jobdock.kinds.flow`.

The flow job and its steps are labelled at submit (`KindSpec.labels_of`) with
`integration_id`, `flow_id`, `export_id` and `import_id` from their input, so lists
filter them by label.
"""

from __future__ import annotations

from typing import Any

from jobdock.engine import SubmitRequest
from jobdock.kinds.flow_errors import ERROR_SOURCE, RETRY_BLOB, RETRY_ID, read_retry_data
from jobdock.kinds.flow_export import flow_export
from jobdock.kinds.flow_import import flow_import
from jobdock.kinds.flow_input import (
    ARROW_ARTIFACT,
    MAX_PAGE_SIZE,
    RECORDS_ARTIFACT,
    ExportSpec,
    FlowExportInput,
    FlowFailed,
    FlowImportInput,
    FlowInput,
    ImportSpec,
    SourceSpec,
    flow_labels,
)
from jobdock.kinds.flow_mapping import Mapper
from jobdock.worker.context import JobContext

# The names other modules (kinds/__init__, the integrator dialect, tests) import from here.
__all__ = ["ARROW_ARTIFACT", "ERROR_SOURCE", "MAX_PAGE_SIZE", "RECORDS_ARTIFACT", "RETRY_BLOB",
           "RETRY_ID", "ExportSpec", "FlowExportInput", "FlowFailed", "FlowImportInput",
           "FlowInput", "ImportSpec", "Mapper", "SourceSpec", "flow", "flow_export",
           "flow_import", "flow_labels", "read_retry_data"]


def flow(ctx: JobContext, input: FlowInput) -> dict[str, Any]:
    job = ctx.job
    [child] = ctx.engine.submit_many([SubmitRequest(
        kind="flow_export", input=input.model_dump(mode="json"),
        name=input.export.export_id, parent_id=job.id,
        app_id=job.app_id, priority=job.priority, idempotency_key=f"flow:{job.id}:export")],
        tenant=job.tenant_id)
    return {"export_job_id": child.id}
