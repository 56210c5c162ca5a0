"""Step 1 of a flow, `flow_import`: map, check and upsert the exported records.

`flow_import` reads the exported records page by page. Each record is checked
against `ignore_if` (every field equal: `ignored`), mapped and checked (see
`flow_mapping`), and the good ones are upserted (whole pages per transaction, so a
cancel, seen between pages, never leaves half a page written); counters `success`,
`errors`, `ignored`, `pages` move once their pages are committed. A page is first
typed at once, column by column with Arrow, and such pages are written together, up
to 250,000 rows or 1 s of pages per load; a page where that fails is checked record by
record and written alone. Each failing record is an error record with retry data
(see `flow_errors`).

Within one page (or the pages of one load), records with the same primary key are
written once: the last one wins, and each counts as a success.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from jobdock.kinds.flow_errors import record_error, retried_records
from jobdock.kinds.flow_input import ARROW_ARTIFACT, FlowImportInput, ImportSpec
from jobdock.kinds.flow_mapping import Mapper, last_of_each_key
from jobdock.kinds.flow_steps import pages, reset_counters
from jobdock.store.tables import Tables, open_tables
from jobdock.worker.context import JobContext


def flow_import(ctx: JobContext, input: FlowImportInput) -> dict[str, Any]:
    reset_counters(ctx)
    spec = input.import_
    tenant = ctx.job.tenant_id
    tables = open_tables(ctx.engine.settings.database_url)
    try:
        tables.check(tenant, spec.table, dict(spec.columns), spec.primary_key)  # fail early
        mapper = Mapper(spec)
        group = _Group(ctx, tables, spec, mapper)
        try:
            for page, merged in _import_pages(ctx, input):
                # Between pages only: a page is written whole or not at all.
                ctx.raise_if_cancelled()
                size, batch, rows, failed, ignored = _import_page(ctx, mapper, page)
                counts = {"success": size - failed - ignored, "errors": failed,
                          "ignored": ignored, "pages": merged}
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

            table = last_of_each_key(pa.Table.from_batches(batches),
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
            record_error(ctx, record, mapper.mapped(record), problem or ("", "", ""))
            continue
        rows[key_of(row)] = row
    return rows, failed


def _import_pages(ctx: JobContext, input: FlowImportInput) -> Iterator[tuple[Any, int]]:
    """The records to import, a page of `page_size` at a time (a list of records, or an
    Arrow batch of text columns from an export's `records.arrow`), each with the number
    of pages it is: small Arrow pages come several at once, checked together."""
    if input.records is not None:
        for page in pages(retried_records(ctx, input.records), input.page_size):
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
        for lines in pages((line for line in raw if line.strip()), input.page_size):
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
