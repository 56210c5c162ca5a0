"""The `flow` kind: export records from a source, then import them into a table.

A `flow` job names an export (a source: an upload, CSV or JSONL, or a table of the
tenant's data area; read in pages of `page_size`) and an import (a table with its
columns, their types and a primary key; a mapping of table columns to source
fields; required columns; records to ignore). It submits a `flow_export` child
(step 0) and succeeds: like `ingest`, the children are the work and carry the
state, times and counters that readers (the integrator dialect) show.

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

import csv
import io
import json
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import jobdock.errors as errors
from jobdock.blobs import blob_key
from jobdock.engine import SubmitRequest
from jobdock.ids import new_id
from jobdock.kinds.ingest import ColumnType, RowChecker, checked_column_names, typed_batch
from jobdock.kinds.readers import (
    ArrowRows,
    UnreadableFile,
    detect_format,
    read_batches,
    read_records,
)
from jobdock.store.tables import NAME, Tables, open_tables
from jobdock.worker.context import JobContext

RECORDS_ARTIFACT = "records.jsonl"
ARROW_ARTIFACT = "records.arrow"  # a CSV source's records: an Arrow IPC stream
_HEAD_BYTES = 64 * 1024  # where a CSV's header line is looked for
MAX_PAGE_SIZE = 10_000
ERROR_SOURCE = "jobdock"
# Retry data of a flow import error: {"blob": <key>, "retry_id": <id>}.
RETRY_BLOB = "blob"
RETRY_ID = "retry_id"


class FlowFailed(errors.InvalidInput):
    """A flow step cannot run as asked (a missing upload or table, an unreadable file)."""

    code = "flow_failed"


# -- input -------------------------------------------------------------------
class SourceSpec(BaseModel):
    upload: str | None = Field(None, description="an upload id (CSV or JSONL)")
    table: str | None = Field(None, pattern=NAME.pattern,
                              description="a table of the tenant's data area")

    @model_validator(mode="after")
    def _one(self) -> SourceSpec:
        if (self.upload is None) == (self.table is None):
            raise ValueError("name exactly one of 'upload' and 'table'")
        return self


class ExportSpec(BaseModel):
    export_id: str = Field(min_length=1, max_length=200)
    source: SourceSpec
    page_size: int = Field(100, ge=1, le=MAX_PAGE_SIZE, description="records per page")


class ImportSpec(BaseModel):
    import_id: str = Field(min_length=1, max_length=200)
    table: str = Field(pattern=NAME.pattern, description="the table to upsert into")
    primary_key: list[str] = Field(min_length=1)
    columns: dict[str, ColumnType] = Field(min_length=1,
                                           description="table column → declared type")
    mapping: dict[str, str] = Field(default_factory=dict,
                                    description="table column → source field, when they"
                                    " differ (a dotted name reaches into objects)")
    required: list[str] = Field(default_factory=list, description="columns that must have"
                                " a value")
    ignore_if: dict[str, Any] = Field(default_factory=dict, description="source field →"
                                      " value: records matching all of them are ignored")

    @field_validator("columns")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_column_names(value)

    @model_validator(mode="after")
    def _declared(self) -> ImportSpec:
        for what, names in (("primary_key", self.primary_key), ("required", self.required),
                            ("mapping", list(self.mapping))):
            missing = [c for c in names if c not in self.columns]
            if missing:
                raise ValueError(f"{what} names column(s) {missing} not declared in columns")
        if len(set(self.primary_key)) != len(self.primary_key):
            raise ValueError("primary_key names a column twice")
        return self


class _ByAlias(BaseModel):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)


class FlowInput(_ByAlias):
    integration_id: str = Field(min_length=1, max_length=200)
    flow_id: str = Field(min_length=1, max_length=200)
    export: ExportSpec
    import_: ImportSpec = Field(alias="import")


class FlowExportInput(FlowInput):
    pass


class FlowImportInput(_ByAlias):
    integration_id: str = Field(min_length=1, max_length=200)
    flow_id: str = Field(min_length=1, max_length=200)
    export_id: str = Field(min_length=1, max_length=200)
    import_: ImportSpec = Field(alias="import")
    page_size: int = Field(100, ge=1, le=MAX_PAGE_SIZE)
    source_blob: str | None = Field(None, description="the export's records (JSON Lines)")
    records: list[Any] | None = Field(None, description="records to import instead of the"
                                      " export's (an errors retry: their retry data)")
    retry_of: str | None = None

    @model_validator(mode="after")
    def _source(self) -> FlowImportInput:
        if self.source_blob is None and self.records is None:
            raise ValueError("name the export's records (source_blob) or give records")
        return self


def flow_labels(input: Any) -> dict[str, str]:
    """The labels of a flow job or step, from its validated input (KindSpec.labels_of)."""
    if not isinstance(input, dict):
        return {}
    export = input.get("export") or {}
    found = {"integration_id": input.get("integration_id"), "flow_id": input.get("flow_id"),
             "export_id": input.get("export_id") or export.get("export_id"),
             "import_id": (input.get("import") or {}).get("import_id")}
    return {k: v for k, v in found.items() if isinstance(v, str)}


def _reset_counters(ctx: JobContext) -> None:
    """A retried attempt starts again from nothing: the counters too."""
    stale = {name: -value for name, value in ctx.stats.items() if value}
    if stale:
        ctx.count(**stale)


# -- the flow ------------------------------------------------------------------
def flow(ctx: JobContext, input: FlowInput) -> dict[str, Any]:
    job = ctx.job
    [child] = ctx.engine.submit_many([SubmitRequest(
        kind="flow_export", input=input.model_dump(mode="json"),
        name=input.export.export_id, parent_id=job.id,
        app_id=job.app_id, priority=job.priority, idempotency_key=f"flow:{job.id}:export")],
        tenant=job.tenant_id)
    return {"export_job_id": child.id}


# -- step 0: export -------------------------------------------------------------
def flow_export(ctx: JobContext, input: FlowExportInput) -> dict[str, Any]:
    _reset_counters(ctx)
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
    for page in _pages(_source_records(ctx, input), page_size):
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
                yield {k: _jsonable(v) if not isinstance(v, str | int | float | bool)
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON")


# One encoder for every record: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _pages(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    page: list[Any] = []
    for record in records:
        page.append(record)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


# -- step 1: import -------------------------------------------------------------
def flow_import(ctx: JobContext, input: FlowImportInput) -> dict[str, Any]:
    _reset_counters(ctx)
    spec = input.import_
    tenant = ctx.job.tenant_id
    tables = open_tables(ctx.engine.settings.database_url)
    try:
        tables.check(tenant, spec.table, dict(spec.columns), spec.primary_key)  # fail early
        mapper = Mapper(spec)
        group = _Group(ctx, tables, spec, mapper)
        try:
            for page, pages in _import_pages(ctx, input):
                # Between pages only: a page is written whole or not at all.
                ctx.raise_if_cancelled()
                size, batch, rows, failed, ignored = _import_page(ctx, mapper, page)
                counts = {"success": size - failed - ignored, "errors": failed,
                          "ignored": ignored, "pages": pages}
                if batch is not None:
                    group.add(batch, size, counts)
                else:  # the pages before it go first: a later record of a key wins
                    group.flush()
                    if rows:
                        _write(tables, tenant, spec, rows=rows.values())
                    group.count(size, counts)
            group.flush()
        except Exception:
            group.flush()  # the pages read whole before a cancel or a failure stay written
            raise
    finally:
        tables.close()
    stats = ctx.stats
    return {"table": spec.table, **{k: stats.get(k, 0)
                                    for k in ("success", "errors", "ignored", "pages")}}


# Pages typed at once are written together, in one load of up to this many rows or
# pages read in this many seconds: each load's apply has a cost of its own (about
# 0.1 s on PostgreSQL), which pages of a few hundred records would pay each.
_GROUP_ROWS = 250_000
_GROUP_S = 1.0
_STAGE_ROWS = 10_000  # rows handed to the load at once


class _Group:
    """Pages typed at once and not written yet; their counters move once they are."""

    def __init__(self, ctx: JobContext, tables: Tables, spec: ImportSpec,
                 mapper: Mapper) -> None:
        self.ctx, self.tables, self.spec, self.mapper = ctx, tables, spec, mapper
        self.batches: list[Any] = []
        self.size = 0
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.done = 0

    def add(self, batch: Any, size: int, counts: dict[str, int]) -> None:
        if batch.num_rows:
            self.batches.append(batch)
        self.size += size
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        if (sum(b.num_rows for b in self.batches) >= _GROUP_ROWS
                or time.monotonic() - self.started >= _GROUP_S):
            self.flush()

    def flush(self) -> None:
        """Write the pages (the last record of a key wins, as page after page would)."""
        batches, size, counts = self.batches, self.size, self.counts
        self.batches, self.size, self.counts = [], 0, {}
        self.started = time.monotonic()
        if batches:
            import pyarrow as pa

            table = _last_of_each_key(pa.Table.from_batches(batches),
                                      self.mapper.checker.key_positions)
            _write(self.tables, self.ctx.job.tenant_id, self.spec, arrow=table)
        if counts:
            self.count(size, counts)

    def count(self, size: int, counts: dict[str, int]) -> None:
        self.done += size
        self.ctx.count(**counts)
        self.ctx.progress(self.done, None, "importing")


def _write(tables: Tables, tenant: str, spec: ImportSpec, *,
           rows: Iterable[tuple[Any, ...]] = (), arrow: Any = None) -> None:
    """One load of the import's table: rows (or an Arrow table) applied in one commit."""
    with tables.load(tenant, spec.table, dict(spec.columns), spec.primary_key) as load:
        if arrow is not None:
            # In slices: a load may convert a whole batch to Python values at once.
            for batch in arrow.to_batches(max_chunksize=_STAGE_ROWS):
                load.stage_arrow(batch)
        else:
            load.stage(rows)
        load.finish()


def _import_page(ctx: JobContext, mapper: Mapper, page: Any) -> tuple[
        int, Any, dict[Any, tuple[Any, ...]], int, int]:
    """A page's good rows, as an Arrow batch typed at once or (when a record fails) by
    key, with the numbers of its records, failing ones (each an error record) and
    ignored ones."""
    if not isinstance(page, list):  # Arrow text columns, from a CSV
        kept = mapper.not_ignored(page)
        batch = mapper.typed_columns(kept)
        if batch is not None:
            return page.num_rows, batch, {}, 0, page.num_rows - kept.num_rows
        page = page.to_pylist()
    records = [r for r in page if not mapper.ignored(r)] if mapper.ignore_if else page
    ignored = len(page) - len(records)
    batch = mapper.typed_page(records)
    if batch is not None:
        return len(page), batch, {}, 0, ignored
    rows, failed = _checked_rows(ctx, mapper, records)
    return len(page), None, rows, failed, ignored


def _checked_rows(ctx: JobContext, mapper: Mapper, records: list[Any]) -> tuple[
        dict[Any, tuple[Any, ...]], int]:
    """The rows of a page's good records by key (the last of a key wins), and the number
    of failing records; each failing one becomes an error record."""
    rows: dict[Any, tuple[Any, ...]] = {}
    key_of = mapper.checker.key_of
    failed = 0
    for record in records:
        row, problem = mapper.check(record)
        if problem is not None or row is None:
            failed += 1
            _record_error(ctx, record, mapper.mapped(record), problem or ("", "", ""))
            continue
        rows[key_of(row)] = row
    return rows, failed


def _import_pages(ctx: JobContext, input: FlowImportInput) -> Iterator[tuple[Any, int]]:
    """The records to import, a page of `page_size` at a time (a list of records, or an
    Arrow batch of text columns from an export's `records.arrow`), each with the number
    of pages it is: small Arrow pages come several at once, checked together."""
    if input.records is not None:
        for page in _pages(_retried_records(ctx, input.records), input.page_size):
            yield page, 1
        return
    if (input.source_blob or "").endswith(ARROW_ARTIFACT):
        import pyarrow as pa

        with ctx.open(input.source_blob or "") as raw:
            for batches in _pages_of_rows(pa.ipc.open_stream(raw), _MERGE_ROWS):
                whole = pa.Table.from_batches(batches).combine_chunks()
                yield whole.to_batches()[0], len(batches)
        return
    with ctx.open(input.source_blob or "") as raw:
        for lines in _pages((line for line in raw if line.strip()), input.page_size):
            # One JSON array per page: a single parse instead of one per record.
            yield json.loads(b"[" + b",".join(lines) + b"]"), 1


# Arrow pages smaller than this are checked several at once: the checks cost about a
# millisecond a call, which pages of 100 records would pay each. Pages checked together
# are written together (whole pages), and their records in order, as one by one.
_MERGE_ROWS = 10_000


def _pages_of_rows(batches: Iterable[Any], rows: int) -> Iterator[list[Any]]:
    """Consecutive batches gathered until they hold at least `rows` rows."""
    gathered: list[Any] = []
    count = 0
    for batch in batches:
        gathered.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield gathered
            gathered, count = [], 0
    if gathered:
        yield gathered


def _retried_records(ctx: JobContext, items: list[Any]) -> Iterator[dict[str, Any]]:
    for item in items:
        record = read_retry_data(ctx, item)
        if not isinstance(record, dict):
            raise FlowFailed("a record to import again is not a JSON object")
        yield record


def read_retry_data(ctx: JobContext, item: Any) -> Any:
    """The record that a retry data item stands for: its blob's content, or itself."""
    if isinstance(item, dict) and isinstance(item.get(RETRY_BLOB), str):
        try:
            with ctx.open(item[RETRY_BLOB]) as f:
                return json.loads(f.read())
        except (errors.NotFound, PermissionError, FileNotFoundError) as exc:
            raise FlowFailed(f"retry data {item.get(RETRY_ID)!r} no longer exists") from exc
    return item


def _record_error(ctx: JobContext, record: dict[str, Any], mapped: dict[str, Any],
                  problem: tuple[str, str, str]) -> None:
    field, reason, code = problem
    retry_id = new_id()
    key = blob_key(ctx.job.tenant_id, ctx.job.id, "retry", f"{retry_id}.json")
    ctx.engine.blobs.put(key, json.dumps(record, ensure_ascii=False, default=_jsonable)
                         .encode())
    ctx.error(f"{field}: {reason}" if field else reason, code=code, source=ERROR_SOURCE,
              record={"field": field, "extracted": record, "mapped": mapped},
              retry_data={RETRY_BLOB: key, RETRY_ID: retry_id})


Problem = tuple[str, str, str]  # (column, reason, code)


class Mapper:
    """Maps an extracted record to the table's columns and checks it."""

    def __init__(self, spec: ImportSpec) -> None:
        self.sources = {column: spec.mapping.get(column, column) for column in spec.columns}
        self.required = list(spec.required)
        self.ignore_if = dict(spec.ignore_if)
        self.checker = RowChecker(dict(spec.columns), spec.primary_key)
        # Each column reads the field of its own name (names have no dots): the record
        # can be checked as it is, without building the mapped record first.
        self.identity = all(column == source for column, source in self.sources.items())
        self.plain = not any("." in source for source in self.sources.values())

    def ignored(self, record: dict[str, Any]) -> bool:
        if not self.ignore_if:
            return False
        for field, wanted in self.ignore_if.items():
            value = _get(record, field)
            if value != wanted and not (isinstance(value, str) and value == _text(wanted)):
                return False
        return True

    def not_ignored(self, page: Any) -> Any:
        """The records of a page of Arrow text columns that `ignored` keeps, at once."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.ignore_if:
            return page
        names = page.schema.names
        matches = pa.array([True] * page.num_rows)
        for field, wanted in self.ignore_if.items():
            if field not in names:  # the record has no such field: its value is None
                if wanted is not None:
                    return page
                continue
            # A text value matches the wanted value's text (None's is "None"), a
            # missing one matches None.
            values = page.column(names.index(field))
            equal = pc.fill_null(pc.equal(values, _text(wanted)), False)
            if wanted is None:
                equal = pc.or_(equal, pc.is_null(values))
            matches = pc.and_(matches, equal)
        return page.filter(pc.invert(matches))

    def mapped(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record's value of each table column (column <- source field)."""
        if self.plain:
            return {column: record.get(source) for column, source in self.sources.items()}
        return {column: _get(record, source) for column, source in self.sources.items()}

    def check(self, record: dict[str, Any]) -> tuple[tuple[Any, ...] | None, Problem | None]:
        """The table row of an extracted record, or the problem that keeps it out."""
        # A missing column reads None from the record as from the mapped record.
        mapped = record if self.identity else self.mapped(record)
        for column in self.required:
            value = mapped.get(column)
            if value is None or value == "":
                return None, (column, "missing required field", "missing_required_field")
        row, problem = self.checker.check(mapped)
        if problem is not None:
            bad, reason, code = problem
            return None, (bad or "", reason, code)
        return row, None


    def typed_columns(self, page: Any) -> Any | None:
        """A page of Arrow text columns (a CSV's records) typed as `typed_page` would type
        its records, without making records of it; None as there."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.plain:
            return None
        names = page.schema.names
        arrays = []
        for column, source in self.sources.items():
            values = (page.column(names.index(source)) if source in names
                      else pa.nulls(page.num_rows))  # as a column of None alone
            if column in self.required and (values.null_count or pc.any(
                    pc.equal(values, "")).as_py()):
                return None
            arrays.append(values)
        return self._typed(pa.RecordBatch.from_arrays(arrays, names=list(self.sources)))

    def typed_page(self, records: list[dict[str, Any]]) -> Any | None:
        """The page as an Arrow batch of the table's columns, typed at once by the ingest
        kind's `typed_batch`, when every record passes and converts as `check` would
        convert it; else None, and the page is checked record by record."""
        import pyarrow as pa

        if not self.plain:
            return None
        arrays = []
        for column in self.sources:
            values = [record.get(self.sources[column]) for record in records]
            if column in self.required and any(v is None or v == "" for v in values):
                return None
            # Arrow would make one type of mixed values (ints among floats as floats):
            # only a column of one Python type is typed at once.
            if len({type(v) for v in values if v is not None}) > 1:
                return None
            try:
                arrays.append(pa.array(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                return None
        return self._typed(pa.RecordBatch.from_arrays(arrays, names=list(self.sources)))

    def _typed(self, mapped: Any) -> Any | None:
        batch = typed_batch(mapped, self.checker)
        return None if batch is None else _last_of_each_key(batch, self.checker.key_positions)


def _last_of_each_key(batch: Any, key_positions: list[int]) -> Any:
    """The batch without the rows whose key a later row repeats (the last one wins)."""
    import pyarrow.compute as pc

    if len(key_positions) == 1 and pc.count_distinct(
            batch.column(key_positions[0])).as_py() == batch.num_rows:
        return batch  # the usual case, found without a Python object per key
    keys = [batch.column(i).to_pylist() for i in key_positions]
    last = {key: i for i, key in enumerate(
        keys[0] if len(keys) == 1 else zip(*keys, strict=True))}
    if len(last) == batch.num_rows:
        return batch
    return batch.take(sorted(last.values()))


def _get(record: dict[str, Any], path: str) -> Any:
    if path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
