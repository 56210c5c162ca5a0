"""The data area on SQLite: one database file per tenant, `<db dir>/tenants/<tenant>.db`.

A load stages its rows in a table with the load's primary key, and `finish`
takes the write lock (`BEGIN IMMEDIATE`) only for the DDL and the apply. So
the lock is held for the apply (and, for a new table, for each batch's short
commit), not while files are read and checked, and several tables of one
tenant can be read at once. Rows go in with `INSERT OR IGNORE`: the first row
of a key stays, later ones are counted as rejected.

- The table exists when the load starts: the stage is a TEMP table of the
  load's own connection (no lock on the tenant's file), and `finish` upserts
  it into the table.
- The table does not exist yet: the stage is a table of the tenant's file
  under a private name that no table name can take, written a batch per
  commit, and `finish` renames it to the table's name: the rows are written
  once. If the table was made meanwhile (another load of it), `finish`
  upserts the stage into it and drops it in the same commit. A load that ends
  without `finish` drops it, so a failed load leaves nothing. Only a crash of
  the load's process can leave that table behind: while its stage exists, a
  load holds an exclusive `flock` on a file of its own beside the tenant's
  (`<tenant>.db-jobdock-load-<hex>.lock`), which the system releases when the
  process dies, so the next load of the tenant drops every such table whose
  file it can lock.
"""

from __future__ import annotations

import fcntl
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any

from jobdock.errors import StoreError, StoreUnavailable
from jobdock.store.tables import Load, Row, Tables, conflicts, validate

# Declared type of each column type; read back from PRAGMA table_info to tell a
# changed type. DATE and DATETIME are stored as ISO 8601 text, BOOLEAN as 0/1.
SQL_TYPES = {"int": "INTEGER", "float": "REAL", "str": "TEXT", "bool": "BOOLEAN",
             "date": "DATE", "datetime": "DATETIME"}
_FROM_SQL = {v: k for k, v in SQL_TYPES.items()}
# Rows per executemany (and per transaction) into the staging table.
_BATCH = 50_000
# Rows of an Arrow batch turned into Python values at once.
_ARROW_SLICE = 8_192
# Values bound per INSERT of many rows (SQLite's oldest limit is 999 parameters): one
# statement per row spends most of its time in the sqlite3 module's per-statement work,
# so rows go in a hundred or so at a time (1M rows of 10 columns: 1.5 s -> 1.0 s).
_VALUES_PER_INSERT = 999
# Page cache of the database the stage is in (KiB): the staging table's pages while it
# is written and read back, instead of SQLite's default 2 MB (and a spill to a file).
_STAGE_CACHE_KIB = 65_536
# A new table's stage: '-' is outside table names (tables.NAME), so this one is free.
_PRIVATE = "jobdock-load-"
# A load waits this long for another load of the same tenant to apply.
_BUSY_TIMEOUT_S = 300.0
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _q(name: str) -> str:
    """A quoted identifier (names are validated first; quoting is a second guard)."""
    return '"' + name.replace('"', '""') + '"'


def _adapt(kind: str) -> Any:
    if kind == "bool":
        return lambda v: None if v is None else int(v)
    if kind == "date":
        return lambda v: None if v is None else v.isoformat()
    if kind == "datetime":
        return lambda v: None if v is None else _iso(v)
    return None


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _describe(conn: sqlite3.Connection, table: str) -> tuple[dict[str, str], list[str]]:
    """The table's columns with their types, and its primary key (empty when missing)."""
    info = conn.execute(f"PRAGMA main.table_info({_q(table)})").fetchall()
    columns = {r[1]: _FROM_SQL.get(str(r[2]).upper(), str(r[2])) for r in info}
    key = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    return columns, key


def _create(table: str, columns: Mapping[str, str], primary_key: Sequence[str]) -> str:
    """CREATE TABLE for `table` (qualified and quoted) with these columns and key."""
    return (f"CREATE TABLE {table} ("
            + ", ".join(f"{_q(c)} {SQL_TYPES[t]}" for c, t in columns.items())
            + f", PRIMARY KEY ({', '.join(map(_q, primary_key))}))")


@contextmanager
def _owned(path: Path, wait: bool = True) -> Iterator[None]:
    """An exclusive lock on the file `path` (made if missing) for the block, removed after;
    BlockingIOError at once, without `wait`, when another holds it. The system releases
    the lock when its process dies."""
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"the tenant database is unavailable: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"the tenant database failed: {exc}") from exc


class SQLiteTables(Tables):
    backend = "sqlite"

    def __init__(self, url: str) -> None:
        if not url.startswith("sqlite:///"):
            raise ValueError(f"SQLite URLs look like sqlite:///file.db: {url}")
        self.root = Path(url[len("sqlite:///"):]).parent / "tenants"

    def path(self, tenant: str) -> Path:
        if not _TENANT.match(tenant):
            raise ValueError(f"invalid tenant name {tenant!r}")
        return self.root / f"{tenant}.db"

    def _connect(self, tenant: str) -> sqlite3.Connection:
        path = self.path(tenant)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _translated():
            conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def check(self, tenant: str, table: str, columns: Mapping[str, str],
              primary_key: Sequence[str]) -> None:
        validate(table, columns, primary_key)
        if not self.path(tenant).exists():
            return
        conn = self._connect(tenant)
        try:
            with _translated():
                existing, key = _describe(conn, table)
        finally:
            conn.close()
        if existing:
            conflicts(table, existing, key, columns, primary_key)

    @contextmanager
    def load(self, tenant: str, table: str, columns: Mapping[str, str],
             primary_key: Sequence[str]) -> Iterator[Load]:
        validate(table, columns, primary_key)
        conn = self._connect(tenant)
        load = None
        # Closed last: a new table's stage keeps its lock file until the stage is gone.
        with ExitStack() as owner:
            try:
                with _translated():
                    self._drop_leftovers(conn, tenant)
                    new = not _describe(conn, table)[0]
                    stage = "temp.stage"
                    if new:
                        name = _PRIVATE + uuid.uuid4().hex
                        owner.enter_context(_owned(self._lock_path(tenant, name)))
                        stage = f"main.{_q(name)}"
                    conn.execute(f"PRAGMA {'main' if new else 'temp'}.cache_size"
                                 f" = -{_STAGE_CACHE_KIB}")
                    if new:
                        # No checkpoint after each batch (it would copy to the file and
                        # sync the pages just written): the WAL keeps the stage until this
                        # connection closes and checkpoints it once, as it kept the one
                        # transaction of a copy from TEMP.
                        conn.execute("PRAGMA wal_autocheckpoint = 0")
                    conn.execute(_create(stage, columns, primary_key))
                load = _SQLiteLoad(conn, table, dict(columns), list(primary_key), stage,
                                    private=new)
                yield load
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if load is not None and load.private:
                    # Best effort: an error here must not hide the one that ended the load.
                    with suppress(sqlite3.Error):
                        conn.execute(f"DROP TABLE IF EXISTS {stage}")
                conn.close()

    def _lock_path(self, tenant: str, stage: str) -> Path:
        return self.root / f"{tenant}.db-{stage}.lock"

    def _drop_leftovers(self, conn: sqlite3.Connection, tenant: str) -> None:
        """Drop the stages of loads whose process died: those whose lock file no load holds
        (see the module's text)."""
        names = [name for (name,) in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name GLOB ?",
            (_PRIVATE + "*",))]
        for name in names:
            try:
                with _owned(self._lock_path(tenant, name), wait=False):
                    # IF EXISTS: its load may have renamed it since it was listed.
                    conn.execute(f"DROP TABLE IF EXISTS main.{_q(name)}")
            except BlockingIOError:
                continue  # a load in progress

    def describe(self, tenant: str, table: str) -> dict[str, str] | None:
        if not self.path(tenant).exists():
            return None
        conn = self._connect(tenant)
        try:
            with _translated():
                columns, _ = _describe(conn, table)
        finally:
            conn.close()
        return columns or None

    def rows(self, tenant: str, table: str, order_by: Sequence[str] = ()) -> Iterator[
            dict[str, Any]]:
        conn = self._connect(tenant)
        try:
            with _translated():
                cur = conn.execute(f"SELECT * FROM main.{_q(table)}"
                                   + (" ORDER BY " + ", ".join(map(_q, order_by))
                                      if order_by else ""))
                names = [d[0] for d in cur.description]
                for row in cur:
                    yield dict(zip(names, row, strict=True))
        finally:
            conn.close()

    def drop_area(self, tenant: str) -> None:
        path = self.path(tenant)
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        for lock in self.root.glob(f"{tenant}.db-{_PRIVATE}*.lock"):
            lock.unlink(missing_ok=True)


class _SQLiteLoad(Load):
    def __init__(self, conn: sqlite3.Connection, table: str, columns: dict[str, str],
                 primary_key: list[str], stage: str, private: bool) -> None:
        self._conn = conn
        self._table = table
        self._columns = columns
        self._key = primary_key
        self._adapters = [_adapt(kind) for kind in columns.values()]
        self._stage = stage
        # The stage is a table of the tenant's file (a new table's), not a TEMP one; until
        # `finish` renames or drops it.
        self.private = private
        self._width = len(columns)
        self._rows_per_insert = max(1, _VALUES_PER_INSERT // self._width)
        row = f"({', '.join('?' * self._width)})"
        self._insert = f"INSERT OR IGNORE INTO {stage} VALUES {row}"
        self._insert_rows = (f"INSERT OR IGNORE INTO {stage} VALUES "
                             + ", ".join([row] * self._rows_per_insert))
        self._staged = 0
        self.rejected = 0

    def _adapted(self, rows: Iterable[Row]) -> Iterator[tuple[Any, ...]]:
        adapters = self._adapters
        for row in rows:
            yield tuple(v if a is None else a(v) for a, v in zip(adapters, row, strict=True))

    def stage(self, rows: Iterable[Row]) -> int:
        staged = 0
        source = self._adapted(rows)
        while batch := list(islice(source, _BATCH)):
            staged += self._insert_many([list(chain.from_iterable(batch))], len(batch))
        return staged

    def stage_arrow(self, batch: Any) -> int:
        import pyarrow as pa
        import pyarrow.compute as pc

        # The stored forms made by Arrow, column by column: dates as ISO text, bools as 0/1.
        columns = []
        for column, kind in zip(batch.columns, self._columns.values(), strict=True):
            if kind == "date":
                column = pc.cast(column, pa.string())
            elif kind == "bool":
                column = pc.cast(column, pa.int64())
            columns.append(column)
        return self._insert_many(self._python_values(columns, batch.num_rows), batch.num_rows)

    def _python_values(self, columns: list[Any], count: int) -> Iterator[list[Any]]:
        """The values of Arrow columns row after row in flat lists, made a slice of rows at
        a time: Python values for a whole batch at once would be tens of MB."""
        width = self._width
        for start in range(0, count, _ARROW_SLICE):
            values: list[Any] = [None] * (min(_ARROW_SLICE, count - start) * width)
            for i, (column, kind) in enumerate(zip(columns, self._columns.values(),
                                                   strict=True)):
                part = column.slice(start, _ARROW_SLICE).to_pylist()
                if kind == "datetime":
                    part = [None if v is None else _iso(v) for v in part]
                values[i::width] = part
            yield values

    def _insert_many(self, slices: Iterable[list[Any]], count: int) -> int:
        """Insert `count` rows given as flat lists of values, row after row, in one
        transaction."""
        conn = self._conn
        with _translated():
            before = conn.total_changes
            # A TEMP stage takes no lock on the tenant's file; a private one takes the write
            # lock for this batch only, so other loads of the tenant wait for a batch at most.
            conn.execute("BEGIN IMMEDIATE" if self.private else "BEGIN")
            for values in slices:
                self._insert_values(values)
            conn.execute("COMMIT")
            # INSERT OR IGNORE skipped the rows whose key was staged already.
            changed = conn.total_changes - before
            self._staged += changed
            self.rejected += count - changed
        return count

    def _insert_values(self, values: list[Any]) -> None:
        """Insert the rows of a flat list: many rows per statement, then the rest one by
        one. The rows go in in order, so the first staged row of a key stays."""
        step = self._width * self._rows_per_insert
        whole = len(values) - len(values) % step
        if whole:
            self._conn.executemany(self._insert_rows, (values[i:i + step]
                                                       for i in range(0, whole, step)))
        if whole < len(values):
            width = self._width
            self._conn.executemany(self._insert, (values[i:i + width]
                                                  for i in range(whole, len(values), width)))

    def finish(self) -> tuple[int, int]:
        conn, table, columns, key = self._conn, _q(self._table), self._columns, self._key
        names, stage = ", ".join(map(_q, columns)), self._stage
        with _translated():
            conn.execute("BEGIN IMMEDIATE")
            existing, existing_key = _describe(conn, self._table)
            if not existing and self.private:
                # The rows are in a table of the tenant's file already: give it its name.
                conn.execute(f"ALTER TABLE {stage} RENAME TO {table}")
                conn.execute("COMMIT")
                self.private = False
                return self._staged, 0
            total = self._staged
            if existing:
                conflicts(self._table, existing, existing_key, columns, key)
                for name, kind in columns.items():
                    if name not in existing:
                        conn.execute(f"ALTER TABLE main.{table} ADD COLUMN {_q(name)}"
                                     f" {SQL_TYPES[kind]}")
                match = " AND ".join(f"m.{_q(c)} = s.{_q(c)}" for c in key)
                updated = conn.execute(
                    f"SELECT count(*) FROM {stage} s WHERE EXISTS"
                    f" (SELECT 1 FROM main.{table} m WHERE {match})").fetchone()[0]
                others = [c for c in columns if c not in key]
                action = ("DO UPDATE SET " + ", ".join(f"{_q(c)} = excluded.{_q(c)}"
                                                       for c in others)
                          if others else "DO NOTHING")
                if not updated and list(existing) == list(columns):
                    # Only new keys, and the stage's columns are the table's: the transfer
                    # of `SELECT *` (see below) where SQLite can, a plain insert otherwise.
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM {stage}")
                else:
                    # WHERE true: without it SQLite would read ON CONFLICT as a join clause.
                    conn.execute(f"INSERT INTO main.{table} ({names}) SELECT {names}"
                                 f" FROM {stage} WHERE true"
                                 f" ON CONFLICT ({', '.join(map(_q, key))}) {action}")
            else:
                # A new table: every staged key (distinct, by the stage's key) is inserted.
                conn.execute(_create(f"main.{table}", columns, key))
                # `SELECT *` from a table of the same columns and key, into an empty one:
                # SQLite copies the records as they are (its transfer optimisation) rather
                # than decoding and encoding every value.
                conn.execute(f"INSERT INTO main.{table} SELECT * FROM {stage}")
                updated = 0
            if self.private:  # the table was made by another load meanwhile
                conn.execute(f"DROP TABLE {stage}")
            conn.execute("COMMIT")
            self.private = False
        return total - updated, updated
