"""The `ingest` kind: load uploaded files into the tenant's tables.

An `ingest` job names tables, each with its columns and their types, a primary
key and the uploads to load. It submits one `ingest_table` child per table (in
one transaction, with idempotency keys derived from its id, so a retried
parent finds the same children) and succeeds as soon as they are submitted:
the children are the work, and each has its own status, times and counters.
Readers of the ingest (the Amperity dialect) read the children.

An `ingest_table` job reads its files in order (see `readers`), checks each
record against the declared types (`RowChecker`; for CSV and Parquet a whole
Arrow batch at once where it can, see `typed_batch`), and stages the good rows; at
the end the whole table is applied at once (`jobdock.store.tables`), so a
table that fails leaves nothing behind. Its counters, per table:

    read      records read from its files
    errors    records that fail a declared type, lack a primary key value or
              cannot be parsed (each one an error record naming the file, the
              line or row, the column and the reason)
    rejected  records whose primary key was already seen in this job (the first
              one wins; later ones are duplicates, not loaded); the database
              finds them when the table is applied, so this counter is set
              at the end
    inserted  rows whose key was new to the table
    updated   rows whose key existed: the row is rewritten

so that read = inserted + updated + rejected + errors. Per file, the counters
`file_<n>_read` and `file_<n>_errors` (n = the file's place in the input) are
written as the file is read; the result lists them by file at the end.

A file that cannot be read at all, a missing upload, or a declared type that
differs from the table's, fails the table (and is not retried: the input must
change). Other tables of the same ingest are not affected.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from queue import Full, Queue
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator, model_validator

import jobdock.errors as errors
from jobdock.engine import SubmitRequest
from jobdock.kinds.readers import ArrowRows, Record, UnreadableFile, read_batches
from jobdock.store.tables import ARROW_TYPES, NAME, Load, open_tables, text_data
from jobdock.worker.context import JobContext

ColumnType = Literal["int", "float", "str", "bool", "date", "datetime"]
MAX_TABLES = 100
MAX_FILES = 1_000
# Counters are handed to the context every this many records (not per record).
_COUNT_EVERY = 1_000
# Rows checked one by one are staged this many at a time.
_STAGE_EVERY = 10_000
# Batches read ahead of the one being staged (each is a few MB).
_READ_AHEAD = 2


# -- input -------------------------------------------------------------------
def checked_column_names(columns: dict[str, str]) -> dict[str, str]:
    """A declaration's columns, or ValueError naming those whose names a table cannot have."""
    bad = [name for name in columns if not NAME.match(name)]
    if bad:
        raise ValueError(f"invalid column name(s) {bad}: use a-z, 0-9 and _, at most 63")
    return columns


class TableSpec(BaseModel):
    table_name: str = Field(description="the table to load: a-z, 0-9 and _, at most 63",
                            pattern=NAME.pattern)
    feed_id: str | None = Field(None, max_length=200, description="a label for the feed")
    primary_key: list[str] = Field(min_length=1, description="the key columns")
    columns: dict[str, ColumnType] = Field(min_length=1,
                                           description="column name → declared type")
    files: list[str] = Field(min_length=1, max_length=MAX_FILES,
                             description="upload ids, loaded in this order")

    @field_validator("columns")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_column_names(value)

    @model_validator(mode="after")
    def _key(self) -> TableSpec:
        missing = [c for c in self.primary_key if c not in self.columns]
        if missing:
            raise ValueError(f"primary key column(s) {missing} are not declared in columns")
        if len(set(self.primary_key)) != len(self.primary_key):
            raise ValueError("primary_key names a column twice")
        return self


class IngestInput(BaseModel):
    workflow_id: str | None = Field(None, max_length=200, description="an optional label")
    tables: list[TableSpec] = Field(min_length=1, max_length=MAX_TABLES)

    @model_validator(mode="after")
    def _distinct(self) -> IngestInput:
        names = [t.table_name for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError("each table may appear once in an ingest")
        return self


class FileRef(BaseModel):
    file_id: str
    name: str


class IngestTableInput(BaseModel):
    workflow_id: str | None = None
    table_name: str = Field(pattern=NAME.pattern)
    feed_id: str | None = None
    primary_key: list[str] = Field(min_length=1)
    columns: dict[str, ColumnType] = Field(min_length=1)
    files: list[FileRef] = Field(min_length=1, max_length=MAX_FILES)


class IngestFailed(errors.InvalidInput):
    """A table cannot be loaded as asked (an unreadable or missing file)."""

    code = "ingest_failed"


# -- the parent ----------------------------------------------------------------
def ingest(ctx: JobContext, input: IngestInput) -> dict[str, Any]:
    job = ctx.job
    requests = []
    for index, table in enumerate(input.tables):
        child = IngestTableInput(
            workflow_id=input.workflow_id, table_name=table.table_name, feed_id=table.feed_id,
            primary_key=table.primary_key, columns=table.columns,
            files=[FileRef(file_id=f, name=_upload_name(ctx, f)) for f in table.files])
        labels = {"table_name": table.table_name}
        if table.feed_id:
            labels["feed_id"] = table.feed_id
        requests.append(SubmitRequest(
            kind="ingest_table", input=child.model_dump(), name=table.table_name, labels=labels,
            parent_id=job.id, app_id=job.app_id, priority=job.priority,
            idempotency_key=f"ingest:{job.id}:{index}"))
    children = ctx.engine.submit_many(requests, tenant=job.tenant_id)
    return {"workflow_id": input.workflow_id,
            "tables": [{"table_name": t.table_name, "job_id": c.id}
                       for t, c in zip(input.tables, children, strict=True)]}


def _upload_name(ctx: JobContext, upload_id: str) -> str:
    """The upload's file name; its id when it is missing (its table will fail on it)."""
    try:
        return ctx.engine.upload(ctx.job.tenant_id, upload_id, ctx.job.app_id).name
    except errors.NotFound:
        return upload_id


# -- one table -----------------------------------------------------------------
def ingest_table(ctx: JobContext, input: IngestTableInput) -> dict[str, Any]:
    # A retried attempt starts again from nothing: the counters too.
    stale = {name: -value for name, value in ctx.stats.items() if value}
    if stale:
        ctx.count(**stale)
    tenant = ctx.job.tenant_id
    columns = dict(input.columns)
    tables = open_tables(ctx.engine.settings.database_url)
    try:
        tables.check(tenant, input.table_name, columns, input.primary_key)  # fail early
        checker = RowChecker(columns, input.primary_key)
        files: list[dict[str, Any]] = []
        with tables.load(tenant, input.table_name, columns, input.primary_key) as load:
            for index, ref in enumerate(input.files):
                stats = {"file_id": ref.file_id, "name": ref.name, "read": 0, "errors": 0}
                files.append(stats)
                ctx.progress(index, len(input.files), f"reading {ref.name}")
                _load_file(ctx, index, ref, checker, load, stats)
            ctx.progress(len(input.files), len(input.files), "applying")
            inserted, updated = load.finish()
    finally:
        tables.close()
    # Repeated keys are found by the database (the first staged row wins): see tables.
    ctx.count(inserted=inserted, updated=updated, rejected=load.rejected)
    totals = ctx.stats
    return {"table_name": input.table_name, "feed_id": input.feed_id, "files": files,
            **{k: totals.get(k, 0) for k in ("read", "errors", "rejected", "inserted",
                                             "updated")}}


class _FileCounts:
    """A file's `read` and `errors`, handed to the context every so many records."""

    def __init__(self, ctx: JobContext, index: int, stats: dict[str, Any]) -> None:
        self.ctx, self.index, self.stats = ctx, index, stats
        self.read = self.errors = 0

    def flush(self) -> None:
        self.ctx.count(read=self.read, errors=self.errors,
                       **{f"file_{self.index}_read": self.read,
                          f"file_{self.index}_errors": self.errors})
        self.stats["read"] += self.read
        self.stats["errors"] += self.errors
        self.read = self.errors = 0
        self.ctx.raise_if_cancelled()


def _load_file(ctx: JobContext, index: int, ref: FileRef, checker: RowChecker, load: Load,
               stats: dict[str, Any]) -> None:
    """Stage the rows of one file that may be loaded; count and record the others.

    Arrow batches whose every value converts as `RowChecker` would convert it are staged
    as they are (`typed_batch`); any other batch goes record by record through the
    checker, so that each bad record gets its own error record."""
    counts = _FileCounts(ctx, index, stats)
    rows: list[tuple[Any, ...]] = []
    try:
        raw = ctx.open(ref.file_id)
    except (errors.NotFound, PermissionError) as exc:
        raise IngestFailed(f"file {ref.name} ({ref.file_id}): the upload does not exist") from exc
    batches = ((item, typed_batch(item.batch, checker) if isinstance(item, ArrowRows) else None)
               for item in read_batches(raw, ref.name, checker.names))
    with raw, contextlib.closing(read_ahead(batches)) as ahead:
        try:
            for item, typed in ahead:
                if typed is not None:
                    load.stage(rows)  # the rows read before go first: the first key wins
                    rows.clear()
                    load.stage_arrow(typed)
                    counts.read += typed.num_rows
                    counts.flush()
                    continue
                for record in item.records() if isinstance(item, ArrowRows) else [item]:
                    counts.read += 1
                    row = _checked(ctx, ref, checker, record)
                    if row is None:
                        counts.errors += 1
                    else:
                        rows.append(row)
                    if len(rows) >= _STAGE_EVERY:
                        load.stage(rows)
                        rows.clear()
                    if counts.read >= _COUNT_EVERY:
                        counts.flush()
        except UnreadableFile as exc:
            raise IngestFailed(f"file {ref.name} ({ref.file_id}) cannot be read: {exc}") from exc
        load.stage(rows)
        counts.flush()


_T = TypeVar("_T")


def read_ahead(items: Iterator[_T]) -> Generator[_T, None, None]:
    """`items`, produced by a thread of their own while the caller uses the previous ones.
    Arrow parses and converts without holding the GIL, and the databases store without
    it, so reading a file and staging its rows share the machine's cores."""
    done = object()
    queue: Queue[Any] = Queue(maxsize=_READ_AHEAD)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Wait for room unless the caller has stopped reading."""
        while not stop.is_set():
            with contextlib.suppress(Full):
                queue.put(item, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the caller, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="ingest-read", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _checked(ctx: JobContext, ref: FileRef, checker: RowChecker,
             record: Record) -> tuple[Any, ...] | None:
    """The record as a row of the declared types, or None after its error record."""
    if record.values is None:
        problem: Problem | None = (None, record.error or "", "bad_record")
        row = None
    else:
        row, problem = checker.check(record.values)
    if problem is None:
        return row
    column, reason, code = problem
    where = f"{record.unit} {record.position}"
    ctx.error(f"{ref.name} {where}: " + (f"column {column}: " if column else "") + reason,
              code=code, source=ref.name,
              record={"file_id": ref.file_id, "file": ref.name, record.unit: record.position,
                      "column": column, "reason": reason})
    return None


# -- types -----------------------------------------------------------------------
Problem = tuple[str | None, str, str]  # (column, reason, error code)


class RowChecker:
    """Turns a record (a dict from a reader) into a row of the declared types, in the
    order of `columns`, or says what is wrong with it (the first bad column)."""

    def __init__(self, columns: Mapping[str, str], primary_key: list[str]) -> None:
        self.names = list(columns)
        self.coercers = [COERCE[kind] for kind in columns.values()]
        self.kinds = list(columns.values())
        self.key_positions = [self.names.index(c) for c in primary_key]
        self.key_set = set(primary_key)

    def check(self, record: dict[str, Any]) -> tuple[tuple[Any, ...] | None, Problem | None]:
        values: list[Any] = []
        for name, kind, coerce in zip(self.names, self.kinds, self.coercers, strict=True):
            value = record.get(name)
            if isinstance(value, str) and value == "" and kind != "str":
                value = None  # an empty CSV field is a missing value
            if value is None or (name in self.key_set and value == ""):
                if name in self.key_set:
                    return None, (name, "missing primary key value", "missing_key")
                values.append(None)
                continue
            try:
                values.append(coerce(value))
            except (ValueError, TypeError, OverflowError) as exc:
                return None, (name, f"{exc} (declared {kind})", "type_error")
        return tuple(values), None

    def key_of(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row[i] for i in self.key_positions)


_INT = re.compile(r"^[+-]?\d+$")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_INT64 = (-(2**63), 2**63 - 1)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_int(value: Any) -> int:
    """int: an integer, an integral float or decimal, or text of digits; 64-bit range."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float | Decimal):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{_shown(value)} is not an integer")
        number = int(value)
    elif isinstance(value, str) and _INT.match(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError(f"{_shown(value)} is not an integer")
    if not _INT64[0] <= number <= _INT64[1]:
        raise ValueError(f"{_shown(value)} is out of the 64-bit integer range")
    return number


def to_float(value: Any) -> float:
    """float: a number or its text; NaN and infinities are refused."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a number")
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{_shown(value)} is not a number") from None
    else:
        raise ValueError(f"{_shown(value)} is not a number")
    if not math.isfinite(number):
        raise ValueError(f"{_shown(value)} is not a finite number")
    return number


def to_str(value: Any) -> str:
    """str: text as it is (numbers are written as text); NUL characters are refused."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{_shown(value)} is not text")
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise ValueError("text with a NUL character")
    return text


def to_bool(value: Any) -> bool:
    """bool: true/false, or 1/0, t/f, yes/no, y/n as text (any case) or 1/0 as numbers."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"{_shown(value)} is not a boolean")


def to_date(value: Any) -> date:
    """date: a date, or ISO 8601 text YYYY-MM-DD; a date with a time is refused."""
    if isinstance(value, datetime):
        raise ValueError(f"{_shown(value)} has a time; the column is a date")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{_shown(value)} is not a date (YYYY-MM-DD)")


def to_datetime(value: Any) -> datetime:
    """datetime: a datetime, a date (midnight), or ISO 8601 text; no offset means UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{_shown(value)} is not an ISO 8601 date and time") from None
    else:
        raise ValueError(f"{_shown(value)} is not a date and time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


COERCE: dict[str, Callable[[Any], Any]] = {
    "int": to_int, "float": to_float, "str": to_str, "bool": to_bool, "date": to_date,
    "datetime": to_datetime,
}


# -- types, a batch at once ----------------------------------------------------------
# The bytes that text may have for Arrow's cast of a batch to be trusted: Arrow's parsers
# take less than the coercers above from such text (no "+5" as an int, say), never more,
# and read it to the same value; other text (" 5", "0x1F", "nan", "1_000") sends its
# batch to the per-row check, which decides.
_TEXT_BYTES = {"int": b"0123456789+-", "float": b"0123456789+-.eE", "date": b"0123456789-"}


def typed_batch(batch: Any, checker: RowChecker) -> Any | None:
    """`batch` (Arrow columns by name, from `read_batches`) as a RecordBatch of the
    checker's columns and Arrow types (`ARROW_TYPES`), when every value of it converts
    exactly as `RowChecker.check` would convert it and no key is missing; else None, and
    the batch is checked row by row."""
    import pyarrow as pa

    names = batch.schema.names
    arrays = []
    for name, kind in zip(checker.names, checker.kinds, strict=True):
        is_key = name in checker.key_set
        if name not in names:
            if is_key:
                return None
            arrays.append(pa.nulls(batch.num_rows, _arrow_type(kind)))
            continue
        column = batch.column(names.index(name))
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if is_key and column.null_count:
            return None
        typed = _typed_column(column, kind, is_key)
        if typed is None:
            return None
        arrays.append(typed)
    return pa.RecordBatch.from_arrays(arrays, names=checker.names)


def _typed_column(column: Any, kind: str, is_key: bool) -> Any | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    source = column.type
    try:
        if pa.types.is_string(source) or pa.types.is_large_string(source):
            if kind == "str":
                if b"\x00" in text_data(column):
                    return None
                if is_key and pc.any(pc.equal(column, "")).as_py():  # a missing key
                    return None
                return column.cast(pa.string())
            if kind == "bool":
                return _text_bools(column)
            allowed = _TEXT_BYTES.get(kind)
            if allowed is not None:
                if text_data(column).translate(None, allowed):  # a byte not allowed
                    return None
                return _checked_column(column.cast(_arrow_type(kind)), kind)
        elif kind == "int" and pa.types.is_integer(source):
            return column.cast(pa.int64())  # an unsigned value past int64 fails the cast
        elif kind == "float" and pa.types.is_floating(source):
            return _checked_column(column.cast(pa.float64()), kind)
        elif (kind == "bool" and pa.types.is_boolean(source)) or (
                kind == "date" and pa.types.is_date(source)):
            return column.cast(_arrow_type(kind))
    except pa.ArrowException:  # a value Arrow will not convert: the per-row check says why
        return None
    return _python_column(column, kind, is_key)


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    if kind == "datetime":
        return pa.timestamp("us", tz="UTC")
    return pa.type_for_alias(ARROW_TYPES[kind])


def _checked_column(column: Any, kind: str) -> Any | None:
    """None when a converted value is one the coercer refuses: not finite, year 0."""
    import pyarrow.compute as pc

    if kind == "float":
        return column if pc.all(pc.is_finite(column)).as_py() else None
    if kind == "date":
        return column if pc.all(pc.greater_equal(column, date.min)).as_py() else None
    return column


def _text_bools(column: Any) -> Any | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    lower = pc.utf8_lower(column)
    true = pc.is_in(lower, value_set=pa.array(sorted(_TRUE)))
    false = pc.is_in(lower, value_set=pa.array(sorted(_FALSE)))
    if not pc.all(pc.or_(pc.or_(true, false), pc.is_null(column))).as_py():
        return None
    return pc.if_else(pc.is_valid(column), true, pa.scalar(None, pa.bool_()))


def _python_column(column: Any, kind: str, is_key: bool) -> Any | None:
    """The column converted value by value by the coercer (a datetime, or a source type
    that Arrow's casts do not convert as the coercer does); None at the first problem."""
    import pyarrow as pa

    coerce = COERCE[kind]
    values: list[Any] = []
    for value in column.to_pylist():
        if isinstance(value, str) and value == "" and (kind != "str" or is_key):
            value = None
        if value is None:
            if is_key:
                return None
            values.append(None)
            continue
        try:
            values.append(coerce(value))
        except (ValueError, TypeError, OverflowError):
            return None
    return pa.array(values, type=_arrow_type(kind))
