"""Step 0 of a flow, `flow_export`: read the source in pages into the step's artifact.

`flow_export` reads the source page by page and writes the records to its artifact:
`records.arrow` for a plain CSV upload (an Arrow IPC stream, a batch of text columns
per page), `records.jsonl` (JSON Lines) for any other source; counters `exported` and
`pages`. A line of an upload that cannot be parsed is an error record (`errors`) and
is not exported.
When the whole source is written, it submits the `flow_import` child (step 1, a
sibling under the flow job; the idempotency key `flow:<flow job>:import` makes a
retried export find the same import).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import jobdock.errors as errors
from jobdock.engine import SubmitRequest
from jobdock.kinds.flow_errors import ERROR_SOURCE
from jobdock.kinds.flow_input import (
    ARROW_ARTIFACT,
    RECORDS_ARTIFACT,
    FlowExportInput,
    FlowFailed,
    FlowImportInput,
)
from jobdock.kinds.flow_steps import jsonable, pages, reset_counters
from jobdock.kinds.readers import (
    ArrowRows,
    UnreadableFile,
    detect_format,
    read_batches,
    read_records,
)
from jobdock.store.tables import open_tables
from jobdock.worker.context import JobContext

_HEAD_BYTES = 64 * 1024  # where a CSV's header line is looked for


def flow_export(ctx: JobContext, input: FlowExportInput) -> dict[str, Any]:
    reset_counters(ctx)
    job = ctx.job
    page_size = input.export.page_size
    header = _csv_header(ctx, input)
    if header is not None:
        artifact = ctx.artifact(ARROW_ARTIFACT, _export_columns(ctx, input, header, page_size),
                                content_type="application/vnd.apache.arrow.stream")
    else:
        artifact = ctx.artifact(RECORDS_ARTIFACT, _export_pages(ctx, input, page_size),
                                content_type="application/x-ndjson")
    ctx.raise_if_cancelled()
    parent = job.parent_id
    key = f"flow:{parent}:import" if parent else f"flow-export:{job.id}:import"
    imported = FlowImportInput(
        integration_id=input.integration_id, flow_id=input.flow_id,
        export_id=input.export.export_id, import_=input.import_, page_size=page_size,
        source_blob=artifact.blob_key)
    [child] = ctx.engine.submit_many([SubmitRequest(
        kind="flow_import", input=imported.model_dump(mode="json"),
        name=input.import_.import_id, parent_id=parent,
        app_id=job.app_id, priority=job.priority, idempotency_key=key)], tenant=job.tenant_id)
    stats = ctx.stats
    return {"exported": stats.get("exported", 0), "pages": stats.get("pages", 0),
            "errors": stats.get("errors", 0), "import_job_id": child.id}


def _export_pages(ctx: JobContext, input: FlowExportInput, page_size: int) -> Iterator[bytes]:
    """The source's records as JSON Lines, a page at a time; counts each page."""
    for page in pages(_source_records(ctx, input), page_size):
        ctx.raise_if_cancelled()
        yield ("\n".join(map(_ENCODER.encode, page)) + "\n").encode()
        ctx.count(exported=len(page), pages=1)
        ctx.progress(ctx.stats.get("exported", 0), None, "exporting")


def _csv_header(ctx: JobContext, input: FlowExportInput) -> list[str] | None:
    """The header's fields when the source is an upload that the readers read as plain
    (not gzipped) CSV: its records all have these fields and text values. An empty
    list when it is such a CSV whose header the csv module must read (a quote in it)."""
    upload_id = input.export.source.upload
    if upload_id is None:
        return None
    try:
        name = ctx.engine.upload(ctx.job.tenant_id, upload_id, ctx.job.app_id).name
        with ctx.open(upload_id) as raw:
            head = raw.read(_HEAD_BYTES)
    except (errors.NotFound, PermissionError):
        return None  # the export fails on it with its message
    # The readers decide on the first 8 bytes and the name, as here.
    if head.startswith(b"\x1f\x8b") or name.lower().endswith(".gz") or detect_format(
            name, head[:8]) != "csv":
        return None
    line, newline, _ = head.partition(b"\n")
    if not newline or b'"' in line or b"\r" in line.rstrip(b"\r"):
        return []
    try:
        # As the readers read a header: UTF-8 (a BOM dropped), names stripped.
        return [h.strip() for h in next(csv.reader([line.decode("utf-8-sig")]), [])]
    except (UnicodeDecodeError, csv.Error):
        return []


def _export_columns(ctx: JobContext, input: FlowExportInput, header: list[str],
                    page_size: int) -> Iterator[bytes]:
    """A CSV source's records as an Arrow IPC stream of text columns, a batch per page
    (the import reads them without a Python object per record); counts each page. The
    readers give most of the file as Arrow columns already (`read_batches`)."""
    import pyarrow as pa

    out = _Chunks()
    writer = None
    for page in _text_pages(_upload_items(ctx, input, header), page_size):
        ctx.raise_if_cancelled()
        if writer is None:
            writer = pa.ipc.new_stream(out, page.schema)
        # One batch per page: the import's pages are the stream's batches.
        writer.write_batch(page.combine_chunks().to_batches()[0])
        yield out.take()
        ctx.count(exported=page.num_rows, pages=1)
        ctx.progress(ctx.stats.get("exported", 0), None, "exporting")
    if writer is None:  # no record at all
        writer = pa.ipc.new_stream(out, pa.schema([]))
    writer.close()
    yield out.take()


def _text_pages(items: Iterable[Any], size: int) -> Iterator[Any]:
    """Pages of `size` records (the last one shorter) as Arrow tables of text columns, from
    records (dicts of text, all with the same fields) and Arrow tables of those fields."""
    import pyarrow as pa

    pieces: list[Any] = []  # tables, in order
    records: list[dict[str, Any]] = []  # records after the last piece
    count = 0
    for item in items:
        if isinstance(item, dict):
            records.append(item)
            count += 1
        else:
            pieces.extend(_text_table(records))
            records = []
            pieces.append(item if isinstance(item, pa.Table) else pa.Table.from_batches([item]))
            count += item.num_rows
        if count >= size:
            pieces.extend(_text_table(records))
            records = []
            whole = pa.concat_tables(pieces)
            while whole.num_rows >= size:
                yield whole.slice(0, size)
                whole = whole.slice(size)
            pieces, count = [whole], whole.num_rows
    pieces.extend(_text_table(records))
    if count:
        yield pa.concat_tables(pieces)


def _text_table(records: list[dict[str, Any]]) -> list[Any]:
    """The records as an Arrow table of text columns (none when there is no record)."""
    import pyarrow as pa

    if not records:
        return []
    names = list(records[0])  # every record of a CSV has the header's fields
    return [pa.table([pa.array([r[n] for r in records], pa.string()) for n in names],
                     names=names)]


class _Chunks(io.RawIOBase):
    """A sink that keeps what is written until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(self.parts[-1])

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _source_records(ctx: JobContext, input: FlowExportInput) -> Iterator[dict[str, Any]]:
    tenant = ctx.job.tenant_id
    source = input.export.source
    if source.table is not None:
        tables = open_tables(ctx.engine.settings.database_url)
        try:
            if tables.describe(tenant, source.table) is None:
                raise FlowFailed(f"table {source.table!r} does not exist")
            for row in tables.rows(tenant, source.table):
                yield {k: jsonable(v) if not isinstance(v, str | int | float | bool)
                       and v is not None else v for k, v in row.items()}
        finally:
            tables.close()
        return
    yield from _upload_items(ctx, input, None)


def _upload_items(ctx: JobContext, input: FlowExportInput,
                  header: list[str] | None) -> Iterator[Any]:
    """The upload's good records (each bad one becomes an error record); with a CSV's
    `header`, runs of them come as Arrow tables of text columns where the readers can."""
    upload_id = input.export.source.upload or ""
    try:
        name = ctx.engine.upload(ctx.job.tenant_id, upload_id, ctx.job.app_id).name
        raw = ctx.open(upload_id)
    except (errors.NotFound, PermissionError) as exc:
        raise FlowFailed(f"upload {upload_id!r} does not exist") from exc
    with raw:
        try:
            items = read_batches(raw, name, header) if header else read_records(raw, name)
            for record in items:
                if isinstance(record, ArrowRows):
                    yield record.batch
                    continue
                if record.values is None:
                    ctx.count(errors=1)
                    ctx.error(f"{name} {record.unit} {record.position}: {record.error}",
                              code="bad_record", source=ERROR_SOURCE,
                              record={"file": name, record.unit: record.position,
                                      "reason": record.error})
                    continue
                yield record.values
        except UnreadableFile as exc:
            raise FlowFailed(f"upload {name} ({upload_id}) cannot be read: {exc}") from exc


# One encoder for every record: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=jsonable)
