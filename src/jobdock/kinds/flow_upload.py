"""An upload as both steps of a flow read it: its records, and for a plain CSV its pages
as Arrow tables of text columns.

An upload is read by both steps: the export counts its records and pages and records
its bad lines, the import reads the same records again, in the same pages, and passes
over the bad lines. A plain CSV (gzipped or not, a header the readers read without the
csv module) is read in Arrow blocks, its pages Arrow tables of text columns; any other
upload record by record.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import jobdock.errors as errors
from jobdock.kinds.flow_errors import ERROR_SOURCE
from jobdock.kinds.flow_input import FlowFailed
from jobdock.kinds.readers import (
    ArrowRows,
    UnreadableFile,
    detect_format,
    read_batches,
    read_records,
)
from jobdock.worker.context import JobContext

_HEAD_BYTES = 64 * 1024  # where a CSV's header line is looked for


def csv_header(ctx: JobContext, upload_id: str, name: str) -> list[str] | None:
    """The header's fields when the upload (named `name`) is one that the readers read as
    CSV (gzipped or not): its records all have these fields and text values. An empty
    list when it is such a CSV whose header the csv module must read (a quote in it)."""
    try:
        with ctx.open(upload_id) as raw:
            head = raw.read(_HEAD_BYTES)
    except (errors.NotFound, PermissionError):
        return None  # the export fails on it with its message
    # The readers decide on the first bytes and the name, as here.
    if head.startswith(b"\x1f\x8b") or name.lower().endswith(".gz"):
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _HEAD_BYTES)
        except zlib.error:
            return None  # the export fails on it with the readers' message
    if detect_format(name, head[:8]) != "csv":
        return None
    line, newline, _ = head.partition(b"\n")
    if not newline or b'"' in line or b"\r" in line.rstrip(b"\r"):
        return []
    try:
        # As the readers read a header: UTF-8 (a BOM dropped), names stripped.
        return [h.strip() for h in next(csv.reader([line.decode("utf-8-sig")]), [])]
    except (UnicodeDecodeError, csv.Error):
        return []


def upload_name(ctx: JobContext, upload_id: str) -> str:
    """The upload's file name; FlowFailed when it does not exist."""
    try:
        return ctx.engine.upload(ctx.job.tenant_id, upload_id, ctx.job.app_id).name
    except errors.NotFound as exc:
        raise FlowFailed(f"upload {upload_id!r} does not exist") from exc


def upload_items(ctx: JobContext, upload_id: str, name: str, header: list[str] | None, *,
                 report: bool = True) -> Iterator[Any]:
    """The good records of the upload named `name`; each bad one becomes an error record
    (`report`) or is passed over (the step that does not report them). With a CSV's
    `header` (or some of its fields), runs of records come as Arrow tables of text
    columns where the readers can."""
    try:
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
                    if report:
                        ctx.count(errors=1)
                        ctx.error(f"{name} {record.unit} {record.position}: {record.error}",
                                  code="bad_record", source=ERROR_SOURCE,
                                  record={"file": name, record.unit: record.position,
                                          "reason": record.error})
                    continue
                yield record.values
        except UnreadableFile as exc:
            raise FlowFailed(f"upload {name} ({upload_id}) cannot be read: {exc}") from exc


def text_pages(items: Iterable[Any], size: int) -> Iterator[Any]:
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


def page_sizes(items: Iterable[Any], size: int) -> Iterator[int]:
    """The number of records of each page that `text_pages` makes of the same items,
    without making the pages."""
    count = 0
    for item in items:
        count += 1 if isinstance(item, dict) else item.num_rows
        while count >= size:
            yield size
            count -= size
    if count:
        yield count


def _text_table(records: list[dict[str, Any]]) -> list[Any]:
    """The records as an Arrow table of text columns (none when there is no record)."""
    import pyarrow as pa

    if not records:
        return []
    names = list(records[0])  # every record of a CSV has the header's fields
    return [pa.table([pa.array([r[n] for r in records], pa.string()) for n in names],
                     names=names)]
