"""Step 1 of a flow, `flow_import`: map, check and upsert the exported records.

`flow_import` reads the records page by page: the upload itself (in the pages its
export counts), an artifact of the export, or an errors retry's records. Each
record is checked against `ignore_if` (every field equal: `ignored`), mapped and
checked (see `flow_mapping`: a page at once where it can, its failing records one by
one), and each failing record becomes an error record with retry data (see
`flow_errors`).

The good rows are upserted in loads of whole pages (`store/tables.py`, one transaction
each): a load stays open while pages come and is committed after `_LOAD_S` seconds or
`_LOAD_ROWS` rows, before a page that repeats a key of the load (a later record of a
key must win, and a load keeps the first), and at the end. So a cancel, seen between
pages, never leaves half a page written, and the counters `success`, `errors`,
`ignored`, `pages` move once their pages are committed. Pages read before a failure or
a cancel are committed (an upsert: running the flow again is safe).

Within one page (or the pages of one load), records with the same primary key are
written once: the last one wins, and each counts as a success.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import ExitStack, closing, suppress
from typing import Any

from jobdock.kinds.flow_errors import record_error, retried_records
from jobdock.kinds.flow_input import ARROW_ARTIFACT, FlowImportInput, ImportSpec
from jobdock.kinds.flow_mapping import CheckedPage, Mapper, checked_page
from jobdock.kinds.flow_steps import pages, reset_counters
from jobdock.kinds.flow_upload import csv_header, text_pages, upload_items, upload_name
from jobdock.kinds.ingest import read_ahead
from jobdock.store.tables import Load, Tables, open_tables
from jobdock.worker.context import JobContext

# A load is committed after this many seconds or rows: the counters move then, and
# its keys (to tell a repeated key, see `_Loads`) stay in memory until then. Each load
# has a cost of its own (an apply into the table; on SQLite and PostgreSQL the first
# load of a new table becomes the table instead), so fewer is faster.
_LOAD_S = 3.0
_LOAD_ROWS = 1_000_000
_STAGE_ROWS = 10_000  # rows handed to the load at once
# Arrow pages smaller than this are checked several at once: the checks cost about a
# millisecond a call, which pages of 100 records would pay each. Pages checked together
# are written together (whole pages), and their records in order, as one by one.
_MERGE_ROWS = 10_000


def flow_import(ctx: JobContext, input: FlowImportInput) -> dict[str, Any]:
    reset_counters(ctx)
    spec = input.import_
    tables = open_tables(ctx.engine.settings.database_url)
    try:
        tables.check(ctx.job.tenant_id, spec.table, dict(spec.columns), spec.primary_key)
        mapper = Mapper(spec)
        loads = _Loads(ctx, tables, spec, mapper.checker.key_positions)
        try:
            # SQLite writes without the GIL, so a read-ahead thread works meanwhile; on
            # PostgreSQL the rows' COPY text is made in Python, and one competed with it
            # (paired runs of 25 Nov: SQLite +3 to +33%, PostgreSQL -1 to -9%).
            ahead = tables.backend == "sqlite"
            with closing(_checked_pages(ctx, input, mapper, ahead)) as checked:
                for page, merged, (batch, failures, ignored) in checked:
                    # Between pages only: a page is written whole or not at all.
                    ctx.raise_if_cancelled()
                    size = len(page) if isinstance(page, list) else page.num_rows
                    for record, problem in failures:
                        record_error(ctx, record, mapper.mapped(record), problem)
                    loads.add(batch, size, {"success": size - len(failures) - ignored,
                                            "errors": len(failures), "ignored": ignored,
                                            "pages": merged})
            loads.commit()
        except Exception:
            # The pages read whole before a cancel or a failure stay written, unless the
            # load itself failed: then the error that ended the import is the one told.
            with suppress(Exception):
                loads.commit()
            loads.abandon()
            raise
    finally:
        tables.close()
    stats = ctx.stats
    return {"table": spec.table, **{k: stats.get(k, 0)
                                    for k in ("success", "errors", "ignored", "pages")}}


class _Loads:
    """The open load of the import's table, its keys, and the counters of its pages."""

    def __init__(self, ctx: JobContext, tables: Tables, spec: ImportSpec,
                 key_positions: list[int]) -> None:
        self.ctx, self.tables, self.spec, self.key_positions = ctx, tables, spec, key_positions
        self.stack: ExitStack | None = None
        self.load: Load | None = None
        self.counts: dict[str, int] = {}
        self.read = 0
        self._forget()

    def _forget(self) -> None:
        """A new load: no rows, no keys."""
        self.rows = 0
        self.started = time.monotonic()
        # The load's keys. While the pages of a one-column key come in ascending order
        # (the usual export, by id), their Arrow columns and the greatest key are enough
        # to tell a repeat (8 bytes a number); else a Python set, made at the first page
        # that is not above the greatest (about 60 bytes a key).
        self.ascending: list[Any] = []
        self.top: Any = None
        self.keys: set[Any] | None = None if len(self.key_positions) == 1 else set()

    def add(self, batch: Any | None, size: int, counts: dict[str, int]) -> None:
        """Stage a page's good rows (its last record of each key); commit when due."""
        if batch is not None and batch.num_rows:
            if self._repeats(batch):
                self.commit()  # the page's records must win over the load's
            self._remember(batch)
            for start in range(0, batch.num_rows, _STAGE_ROWS):
                self._open().stage_arrow(batch.slice(start, _STAGE_ROWS))
            self.rows += batch.num_rows
        self.read += size
        self.ctx.progress(self.read, None, "importing")  # read; the counters: committed
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        if self.rows >= _LOAD_ROWS or time.monotonic() - self.started >= _LOAD_S:
            self.commit()

    def _repeats(self, batch: Any) -> bool:
        """Whether the page (whose keys are distinct) has a key of the load."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.keys is None:
            if self.top is None or pc.min(batch.column(self.key_positions[0])).as_py(
                    ) > self.top:
                return False
            self.keys = set(pa.chunked_array(self.ascending).to_pylist())
            self.ascending = []
        return not self.keys.isdisjoint(self._keys(batch))

    def _remember(self, batch: Any) -> None:
        import pyarrow.compute as pc

        if self.keys is None:
            column = batch.column(self.key_positions[0])
            self.ascending.append(column)
            self.top = pc.max(column).as_py()
        else:
            self.keys.update(self._keys(batch))

    def _keys(self, batch: Any) -> set[Any]:
        columns = [batch.column(i).to_pylist() for i in self.key_positions]
        return set(columns[0] if len(columns) == 1 else zip(*columns, strict=True))

    def _open(self) -> Load:
        if self.load is None:
            stack = ExitStack()
            spec = self.spec
            self.load = stack.enter_context(self.tables.load(
                self.ctx.job.tenant_id, spec.table, dict(spec.columns), spec.primary_key))
            self.stack = stack
        return self.load

    def commit(self) -> None:
        """Apply the open load (if any), then move the counters of its pages."""
        if self.load is not None:
            load, stack = self.load, self.stack
            self.load = self.stack = None
            assert stack is not None
            with stack:
                load.finish()
        self._forget()
        if self.counts:
            self.ctx.count(**self.counts)
            self.counts = {}

    def abandon(self) -> None:
        """Roll back the open load, if any (after a failure)."""
        stack, self.load, self.stack = self.stack, None, None
        if stack is not None:
            stack.__exit__(*sys.exc_info())


def _checked_pages(ctx: JobContext, input: FlowImportInput, mapper: Mapper,
                   ahead: bool) -> Generator[tuple[Any, int, CheckedPage], None, None]:
    """The pages to import (see `_import_pages`), each with what `checked_page` makes of it.
    With `ahead`, those after the first are read and checked by a thread of their own
    (`ingest`'s read-ahead) while the job's thread writes the previous ones. The first is
    read here: reading it looks the upload up in the store, whose connections belong to
    the job's thread."""
    checked = ((page, merged, checked_page(mapper, page))
               for page, merged in _import_pages(ctx, input))
    if not ahead:
        yield from checked
        return
    first = next(checked, None)
    if first is None:
        return
    yield first
    with closing(read_ahead(checked)) as rest:
        yield from rest


def _import_pages(ctx: JobContext, input: FlowImportInput) -> Iterator[tuple[Any, int]]:
    """The records to import, a page of `page_size` at a time (a list of records, or an
    Arrow batch of text columns from a CSV), each with the number of pages it is: small
    Arrow pages come several at once, checked together."""
    if input.records is not None:
        for page in pages(retried_records(ctx, input.records), input.page_size):
            yield page, 1
        return
    if input.source_upload is not None:
        yield from _upload_pages(ctx, input.source_upload, input.page_size)
        return
    if (input.source_blob or "").endswith(ARROW_ARTIFACT):
        import pyarrow as pa

        with ctx.open(input.source_blob or "") as raw:
            yield from _merged(pa.ipc.open_stream(raw))
        return
    with ctx.open(input.source_blob or "") as raw:
        for lines in pages((line for line in raw if line.strip()), input.page_size):
            # One JSON array per page: a single parse instead of one per record.
            yield json.loads(b"[" + b",".join(lines) + b"]"), 1


def _upload_pages(ctx: JobContext, upload_id: str, page_size: int) -> Iterator[tuple[Any, int]]:
    """An upload's pages, as its export counts them (its bad lines, which the export
    records, are passed over): Arrow pages of a plain CSV, merged, or lists of records."""
    name = upload_name(ctx, upload_id)
    header = csv_header(ctx, upload_id, name)
    items = upload_items(ctx, upload_id, name, header, report=False)
    if header:
        yield from _merged(text_pages(items, page_size))
    else:
        for page in pages(items, page_size):
            yield page, 1


def _merged(batches: Iterable[Any]) -> Iterator[tuple[Any, int]]:
    """Arrow pages (tables or batches) gathered until they hold `_MERGE_ROWS` rows, each
    gathering as one batch with the number of pages in it."""

    gathered: list[Any] = []
    count = 0
    for batch in batches:
        gathered.append(batch)
        count += batch.num_rows
        if count >= _MERGE_ROWS:
            yield _one_batch(gathered), len(gathered)
            gathered, count = [], 0
    if gathered:
        yield _one_batch(gathered), len(gathered)


def _one_batch(pieces: list[Any]) -> Any:
    import pyarrow as pa

    tables = [p if isinstance(p, pa.Table) else pa.Table.from_batches([p]) for p in pieces]
    whole = pa.concat_tables(tables).combine_chunks()
    batches = whole.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=whole.schema)
