"""The data area on PostgreSQL: a schema per tenant in the job database.

The schema is `data_<tenant>`, or `<store schema>_data_<tenant>` when the job
store lives in another schema than `public` (several instances, or tests, in
one database), hashed down to PostgreSQL's 63-byte limit when longer.

A load holds one connection and one transaction: `stage` COPYs rows into a
staging table; `stage_arrow` COPYs an Arrow batch as Arrow writes it: in
COPY's text format (tabs, no quotes: the server reads it ~15% faster than
CSV) while the load's text values allow it, else as CSV.
The staging table is a TEMP table (ON COMMIT DROP) when the table exists; for
a new table it is a table of the load's transaction in the tenant's schema
(invisible to others until the commit), which `finish` renames to the table
and gives its primary key, instead of copying every row once more. `finish`
takes a transaction-scoped advisory lock on the tenant's schema (so that two
loads never race to create the schema, a table or a column), makes the table
(or renames the staging table to it) and applies the staged rows in one
statement, then commits. The schema itself is created, under the same lock,
in a short transaction of its own when a load of a new table starts.

Repeated keys are rare, so `finish` does not look for them first: it applies
the staged rows under a savepoint, and only when the database refuses a
repeated key (the new table's primary key, or an upsert that would rewrite a
row twice) applies again the first staged row of each key: the one with the
lowest `ctid`, as the staging table only ever has rows appended by COPY in
this transaction (no update, no delete), so its physical order is the order
of staging.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import psycopg.errors
from psycopg import Copy, sql

from jobdock.errors import StoreError, StoreUnavailable
from jobdock.store.tables import Load, Row, Tables, conflicts, text_data, validate

SQL_TYPES = {"int": "bigint", "float": "double precision", "str": "text", "bool": "boolean",
             "date": "date", "datetime": "timestamp with time zone"}
_FROM_SQL = {v: k for k, v in SQL_TYPES.items()}
_MAX_IDENTIFIER = 63
_CONNECT_TIMEOUT_S = 5
# Memory for the sorts of `finish` (the key's index, first row per key), so that a load
# of a few million rows sorts in memory rather than in temporary files.
_FINISH_WORK_MEM = "128MB"
# Memory for the build of a new table's primary key (PostgreSQL's default, 64 MB, sorts
# on disk from about 2,000,000 keys; 3,000,000: 0.86 s on disk, 0.1 s in memory).
_FINISH_INDEX_MEM = "256MB"

# The options of the COPY of Arrow batches: Arrow writes NULL as an empty field in both.
_COPY_TEXT = "(FORMAT text, NULL '')"
_COPY_CSV = "(FORMAT csv)"

_COLUMNS = ("SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position")
_PRIMARY_KEY = (
    "SELECT a.attname FROM pg_index i"
    " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
    " WHERE i.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND i.indisprimary"
    " ORDER BY array_position(i.indkey::int2[], a.attnum)")


def schema_for(store_schema: str, tenant: str) -> str:
    name = f"data_{tenant}" if store_schema == "public" else f"{store_schema}_data_{tenant}"
    if len(name.encode()) > _MAX_IDENTIFIER:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = name[: _MAX_IDENTIFIER - 17] + "_" + digest
    return name


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise StoreUnavailable(f"the database is unavailable: {exc}".strip()) from exc
    except psycopg.Error as exc:
        raise StoreError(f"the tenant's data area failed: {exc}".strip()) from exc


class PostgresTables(Tables):
    backend = "postgres"

    def __init__(self, url: str) -> None:
        self._url = url
        self._store_schema: str | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        with _translated():
            conn = psycopg.connect(self._url, connect_timeout=_CONNECT_TIMEOUT_S)
            conn.execute("SET TIME ZONE 'UTC'")
            if self._store_schema is None:
                row = conn.execute("SELECT current_schema()").fetchone()
                self._store_schema = str(row[0]) if row and row[0] else "public"
        return conn

    def schema(self, conn: psycopg.Connection[Any], tenant: str) -> str:
        assert self._store_schema is not None
        return schema_for(self._store_schema, tenant)

    @staticmethod
    def _describe(conn: psycopg.Connection[Any], schema: str,
                  table: str) -> tuple[dict[str, str], list[str]]:
        columns = {str(r[0]): _FROM_SQL.get(str(r[1]), str(r[1]))
                   for r in conn.execute(_COLUMNS, (schema, table)).fetchall()}
        key = ([str(r[0]) for r in conn.execute(_PRIMARY_KEY, (schema, table)).fetchall()]
               if columns else [])
        return columns, key

    def check(self, tenant: str, table: str, columns: Mapping[str, str],
              primary_key: Sequence[str]) -> None:
        validate(table, columns, primary_key)
        with self._connect() as conn, _translated():
            existing, key = self._describe(conn, self.schema(conn, tenant), table)
        if existing:
            conflicts(table, existing, key, columns, primary_key)

    @contextmanager
    def load(self, tenant: str, table: str, columns: Mapping[str, str],
             primary_key: Sequence[str]) -> Iterator[Load]:
        validate(table, columns, primary_key)
        conn = self._connect()
        try:
            with _translated():
                schema = self.schema(conn, tenant)
                stage = self._stage(conn, schema, table, columns)
            load = _PostgresLoad(conn, schema, table, dict(columns), list(primary_key), stage,
                                 fresh=stage != sql.Identifier("stage"))
            try:
                yield load
            except BaseException as exc:
                load.abandon(exc)
                raise
        finally:
            with _translated():
                conn.rollback()  # nothing when finish() committed
                conn.close()

    def _stage(self, conn: psycopg.Connection[Any], schema: str, table: str,
               columns: Mapping[str, str]) -> sql.Identifier:
        """The load's staging table. For a table that exists: a TEMP table (no WAL). For a
        new one: a table of this transaction in the tenant's schema, invisible to others,
        that `finish` renames to the table (rather than copying every row once more)."""
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(SQL_TYPES[t]))
            for c, t in columns.items())
        if self._describe(conn, schema, table)[0]:
            conn.execute(sql.SQL("CREATE TEMP TABLE stage ({}) ON COMMIT DROP").format(
                definition))
            return sql.Identifier("stage")
        self._create_schema(schema)
        stage = sql.Identifier(schema, f"_stage_{secrets.token_hex(8)}")
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(stage, definition))
        return stage

    def _create_schema(self, schema: str) -> None:
        """The tenant's schema, committed at once (a staging table is made in it), under
        the tenant's lock so that two loads never race to create it."""
        with psycopg.connect(self._url, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         (f"jobdock.data.{schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(schema)))

    def describe(self, tenant: str, table: str) -> dict[str, str] | None:
        with self._connect() as conn, _translated():
            columns, _ = self._describe(conn, self.schema(conn, tenant), table)
        return columns or None

    def rows(self, tenant: str, table: str, order_by: Sequence[str] = ()) -> Iterator[
            dict[str, Any]]:
        with self._connect() as conn, _translated():
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(self.schema(conn, tenant)), sql.Identifier(table))
            if order_by:
                query = query + sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
                    map(sql.Identifier, order_by))
            with conn.cursor() as cur:
                cur.execute(query)
                names = [d.name for d in cur.description or ()]
                for row in cur:
                    yield dict(zip(names, row, strict=True))

    def drop_area(self, tenant: str) -> None:
        with self._connect() as conn, _translated():
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema(conn, tenant))))


class _PostgresLoad(Load):
    def __init__(self, conn: psycopg.Connection[Any], schema: str, table: str,
                 columns: dict[str, str], primary_key: list[str],
                 stage: sql.Identifier, fresh: bool) -> None:
        self._conn = conn
        self._stage = stage
        self._fresh = fresh  # the staging table is in the tenant's schema, see _stage
        self._schema = schema
        self._table = table
        self._columns = columns
        self._key = primary_key
        self._staged = 0
        self.rejected = 0
        # The COPY of Arrow batches and its options, left open from one batch to the next:
        # the server stores a batch while the caller reads the next one, instead of each
        # waiting.
        self._open: tuple[ExitStack, Copy, str] | None = None
        # Whether batches still go in COPY's text format (see _as_text).
        self._text = True

    def stage(self, rows: Iterable[Row]) -> int:
        self._end_copy()
        staged = 0
        names = sql.SQL(", ").join(map(sql.Identifier, self._columns))
        with _translated(), self._conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(self._stage, names)) as copy:
            for row in rows:
                copy.write_row(row)
                staged += 1
        self._staged += staged
        return staged

    def stage_arrow(self, batch: Any) -> int:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        data = self._as_text(batch) if self._text else None
        options = _COPY_TEXT
        if data is None:
            # Once a batch could not go as text, the rest go as CSV: one switch of COPY at
            # most, and no batch written twice. Arrow writes CSV in C++: NULL as an empty
            # field, text always quoted (so an empty text stays empty), dates and times in
            # ISO form, floats exactly.
            self._text = False
            out = pa.BufferOutputStream()
            pacsv.write_csv(batch, out, pacsv.WriteOptions(include_header=False))
            data, options = out.getvalue(), _COPY_CSV
        with _translated():
            self._copy(options).write(memoryview(data))
        self._staged += batch.num_rows
        return int(batch.num_rows)

    def _as_text(self, batch: Any) -> Any | None:
        """The batch in COPY's text format, as Arrow writes CSV with tabs and no quotes
        (NULL an empty field; other values as in CSV), or None when a value cannot go that
        way: text with a backslash (an escape in that format) or empty (NULL there), or
        with a tab, line break or quote (Arrow refuses to write those unquoted)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        for column, kind in zip(batch.columns, self._columns.values(), strict=True):
            chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
            if kind == "str" and (any(b"\\" in text_data(chunk) for chunk in chunks)
                                  or pc.any(pc.equal(column, "")).as_py()):
                return None
        out = pa.BufferOutputStream()
        try:
            pacsv.write_csv(batch, out, pacsv.WriteOptions(
                include_header=False, delimiter="\t", quoting_style="none"))
        except pa.ArrowInvalid:
            return None
        return out.getvalue()

    def _copy(self, options: str) -> Copy:
        """The open COPY of Arrow batches with these options (ending one with others)."""
        if self._open is not None and self._open[2] != options:
            self._end_copy()
        if self._open is None:
            names = sql.SQL(", ").join(map(sql.Identifier, self._columns))
            stack = ExitStack()
            cur = stack.enter_context(self._conn.cursor())
            copy = stack.enter_context(cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN ").format(self._stage, names)
                + sql.SQL(options)))
            self._open = (stack, copy, options)
        return self._open[1]

    def _end_copy(self, error: BaseException | None = None) -> None:
        """End the open COPY: complete it, or abort it with `error`."""
        if self._open is None:
            return
        stack, self._open = self._open[0], None
        with _translated():
            if error is None:
                stack.close()
            else:
                stack.__exit__(type(error), error, error.__traceback__)

    def abandon(self, error: BaseException) -> None:
        self._end_copy(error)

    def finish(self) -> tuple[int, int]:
        self._end_copy()
        conn, columns, key = self._conn, self._columns, self._key
        schema, target = sql.Identifier(self._schema), sql.Identifier(self._schema, self._table)
        with _translated():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         (f"jobdock.data.{self._schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            existing, existing_key = PostgresTables._describe(conn, self._schema, self._table)
            conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(
                sql.Literal(_FINISH_WORK_MEM)))
            conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                sql.Literal(_FINISH_INDEX_MEM)))
            if existing:
                conflicts(self._table, existing, existing_key, columns, key)
                for name, kind in columns.items():
                    if name not in existing:
                        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            target, sql.Identifier(name), sql.SQL(SQL_TYPES[kind])))
                inserted, distinct = self._first_rows(self._upsert, target)
            elif self._fresh and self._rename(target):
                inserted = distinct = self._staged
            elif self._fresh:  # a key repeats: the rename found it
                inserted, distinct = self._create(target, self._first_of_each_key())
            else:
                inserted, distinct = self._first_rows(self._create, target)
            if self._fresh:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._stage))
            conn.commit()
        self.rejected = self._staged - distinct
        return inserted, distinct - inserted

    def _first_rows(self, write: Callable[[sql.Composable, sql.Composable], tuple[int, int]],
                    target: sql.Composable) -> tuple[int, int]:
        """`write` the staged rows into `target` on the hope that no key repeats (the usual
        case, with no sort to find repeats); when the database says a key does, again with
        the first staged row of each key only. (inserted, distinct keys) from `write`."""
        try:
            with self._conn.transaction():  # a savepoint
                return write(target, self._stage)
        except (psycopg.errors.UniqueViolation, psycopg.errors.CardinalityViolation):
            pass
        return write(target, self._first_of_each_key())

    def _first_of_each_key(self) -> sql.Composable:
        names = sql.SQL(", ").join(map(sql.Identifier, self._columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, self._key))
        return sql.SQL("(SELECT DISTINCT ON ({0}) {1} FROM {2} ORDER BY {0}, ctid) AS first"
                       ).format(keys, names, self._stage)

    def _rename(self, target: sql.Identifier) -> bool:
        """Make the staging table the new table, when no key repeats in it (its primary
        key, built once and sorted, says so); False when one does."""
        try:
            with self._conn.transaction():  # a savepoint
                self._conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    self._stage, sql.Identifier(self._table)))
                self._conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                    target, sql.SQL(", ").join(map(sql.Identifier, self._key))))
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def _create(self, target: sql.Composable, source: sql.Composable) -> tuple[int, int]:
        """A new table: every row of `source` is new. The key's index is built once, sorted,
        after the rows are in (rather than row by row); it fails on a repeated key."""
        names = sql.SQL(", ").join(map(sql.Identifier, self._columns))
        self._conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
            target, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c),
                                                               sql.SQL(SQL_TYPES[t]))
                                       for c, t in self._columns.items())))
        cur = self._conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            target, names, names, source))
        self._conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
            target, sql.SQL(", ").join(map(sql.Identifier, self._key))))
        return cur.rowcount, cur.rowcount

    def _upsert(self, target: sql.Composable, source: sql.Composable) -> tuple[int, int]:
        """Insert or rewrite the rows of `source`: (new rows, rows written). A new row's
        `xmax` is 0; a row rewritten by ON CONFLICT has this transaction's. A key repeated
        in `source` fails the statement (a row cannot be rewritten twice)."""
        names = sql.SQL(", ").join(map(sql.Identifier, self._columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, self._key))
        others = [c for c in self._columns if c not in self._key]
        if not others:
            # DO NOTHING would not fail on a repeated key: count the distinct keys.
            row = self._conn.execute(sql.SQL(
                "SELECT count(*) FROM (SELECT DISTINCT {} FROM {}) AS k").format(
                keys, source)).fetchone()
            assert row is not None
            cur = self._conn.execute(sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO NOTHING").format(
                target, names, names, source, keys))
            return max(cur.rowcount, 0), int(row[0])
        action = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in others)
        row = self._conn.execute(sql.SQL(
            "WITH written AS (INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({})"
            " DO UPDATE SET {} RETURNING xmax = 0 AS new)"
            " SELECT count(*) FILTER (WHERE new), count(*) FROM written").format(
            target, names, names, source, keys, action)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
