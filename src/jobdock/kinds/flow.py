"""The `flow` kind: export records from a source, then import them into a table.

A `flow` job names an export (a source: an upload, CSV or JSONL, or a table of the
tenant's data area; read in pages of `page_size`) and an import (a table with its
columns, their types and a primary key; a mapping of table columns to source
fields; required columns; records to ignore). It submits a `flow_export` child
(step 0) and succeeds: like `ingest`, the children are the work and carry the
state, times and counters that readers (the integrator dialect) show.

The modules of the flow kinds, one concept each: `flow_input` (the input models and
labels), `flow_export` (step 0), `flow_import` (step 1), `flow_mapping` (mapping and
checks, a record or a page at once), `flow_errors` (error records, retry data),
`flow_steps` (what both steps share).

`flow_export` reads the source page by page and writes the records to its artifact:
`records.arrow` for a plain CSV upload (an Arrow IPC stream, a batch of text columns
per page), `records.jsonl` (JSON Lines) for any other source; counters `exported` and
`pages`. A line of an upload that cannot be parsed is an error record (`errors`) and
is not exported.
When the whole source is written, it submits the `flow_import` child (step 1, a
sibling under the flow job; the idempotency key `flow:<flow job>:import` makes a
retried export find the same import).

`flow_import` reads the exported records page by page. Each record is checked
against `ignore_if` (every field equal: `ignored`), mapped (column <- source
field, `mapping` naming the source field of a column when its name differs; a
dotted name reaches into nested objects), checked for its required columns and
its declared types (the `ingest` kind's coercion), and the good ones are upserted
(whole pages per transaction, so a cancel, seen between pages, never leaves half a
page written); counters `success`, `errors`, `ignored`, `pages` move once their pages
are committed. A page is first typed at once, column by column with Arrow
(`typed_batch`, which converts only what the coercion would convert to the same
value), and such pages are written together, up to 250,000 rows or 1 s of pages per
load; a page where that fails (a bad record, a missing required value, mixed types
in a column, a dotted mapping) is checked record by record and written alone.
Each failing record is an error record whose `record` holds the field, the
extracted and the mapped record, and whose retry data names a blob of the job
(`<tenant>/<job>/retry/<retry id>.json`) that holds the extracted record: it can
be read and corrected (`GET/PUT /v1/jobs/{id}/errors/{error_id}/retry-data`), and
an errors retry runs the corrected records again as a new `flow_import` job (the
engine's errors retry: same parent, input plus `records` and `retry_of`).

Within one page (or the pages of one load), records with the same primary key are
written once: the last one wins, and each counts as a success.

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
