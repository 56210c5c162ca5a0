"""Step 0 of a flow, `flow_export`: read the source in pages; counters `exported` and
`pages`. A line of an upload that cannot be parsed is an error record (`errors`) and is
not exported.

- An upload (CSV or JSONL, gzipped or not; see `flow_upload`): the export submits the
  `flow_import` step first, naming the upload (`source_upload`), then counts the records
  and pages and records the bad lines while the import reads the same records itself.
  Nothing is written in between: the upload is already what an export would write, and
  the two steps run at the same time. A canceled export cancels that import.
- A table: the records go to the artifact `records.jsonl` (JSON Lines), a page at a
  time, and when the whole table is written the export submits the import, naming that
  artifact (`source_blob`).

The import is a sibling under the flow job; the idempotency key
`flow:<flow job>:import` makes a retried export find the same import.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import jobdock.errors as errors
from jobdock.engine import SubmitRequest
from jobdock.kinds.flow_input import (
    RECORDS_ARTIFACT,
    FlowExportInput,
    FlowFailed,
    FlowImportInput,
)
from jobdock.kinds.flow_steps import jsonable, pages, reset_counters
from jobdock.kinds.flow_upload import csv_header, page_sizes, upload_items, upload_name
from jobdock.model import Job
from jobdock.store.tables import open_tables
from jobdock.worker.context import JobContext


def flow_export(ctx: JobContext, input: FlowExportInput) -> dict[str, Any]:
    reset_counters(ctx)
    page_size = input.export.page_size
    upload_id = input.export.source.upload
    if upload_id is not None:
        name = upload_name(ctx, upload_id)  # a missing upload fails the export alone
        header = csv_header(ctx, upload_id, name)
        child = _submit_import(ctx, input, source_upload=upload_id)
        try:
            _count_pages(ctx, upload_id, name, header, page_size)
        except errors.JobCanceled:
            with suppress(errors.IllegalTransition, errors.NotFound):
                ctx.engine.cancel(ctx.job.tenant_id, child.id)
            raise
    else:
        artifact = ctx.artifact(RECORDS_ARTIFACT, _export_pages(ctx, input, page_size),
                                content_type="application/x-ndjson")
        ctx.raise_if_cancelled()
        child = _submit_import(ctx, input, source_blob=artifact.blob_key)
    stats = ctx.stats
    return {"exported": stats.get("exported", 0), "pages": stats.get("pages", 0),
            "errors": stats.get("errors", 0), "import_job_id": child.id}


def _submit_import(ctx: JobContext, input: FlowExportInput, **source: str) -> Job:
    job = ctx.job
    parent = job.parent_id
    key = f"flow:{parent}:import" if parent else f"flow-export:{job.id}:import"
    imported = FlowImportInput(
        integration_id=input.integration_id, flow_id=input.flow_id,
        export_id=input.export.export_id, import_=input.import_,
        page_size=input.export.page_size, **source)
    [child] = ctx.engine.submit_many([SubmitRequest(
        kind="flow_import", input=imported.model_dump(mode="json"),
        name=input.import_.import_id, parent_id=parent,
        app_id=job.app_id, priority=job.priority, idempotency_key=key)], tenant=job.tenant_id)
    return child


def _count_pages(ctx: JobContext, upload_id: str, name: str, header: list[str] | None,
                 page_size: int) -> None:
    """Count an upload's records and pages, as the import will page them; its bad lines
    become error records. Of a plain CSV one column is enough to count (`read_batches`
    finds the records the same way whichever columns it keeps)."""
    wanted = header[:1] if header else None
    for size in page_sizes(upload_items(ctx, upload_id, name, wanted), page_size):
        ctx.raise_if_cancelled()
        ctx.count(exported=size, pages=1)
        ctx.progress(ctx.stats.get("exported", 0), None, "exporting")


def _export_pages(ctx: JobContext, input: FlowExportInput, page_size: int) -> Iterator[bytes]:
    """The source table's records as JSON Lines, a page at a time; counts each page."""
    for page in pages(_source_records(ctx, input), page_size):
        ctx.raise_if_cancelled()
        yield ("\n".join(map(_ENCODER.encode, page)) + "\n").encode()
        ctx.count(exported=len(page), pages=1)
        ctx.progress(ctx.stats.get("exported", 0), None, "exporting")


def _source_records(ctx: JobContext, input: FlowExportInput) -> Iterator[dict[str, Any]]:
    """The rows of the source table, as JSON values."""
    tenant = ctx.job.tenant_id
    table = input.export.source.table or ""
    tables = open_tables(ctx.engine.settings.database_url)
    try:
        if tables.describe(tenant, table) is None:
            raise FlowFailed(f"table {table!r} does not exist")
        for row in tables.rows(tenant, table):
            yield {k: jsonable(v) if not isinstance(v, str | int | float | bool)
                   and v is not None else v for k, v in row.items()}
    finally:
        tables.close()


# One encoder for every record: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=jsonable)
