"""The tenants' data area: tables that jobs write (the `ingest` kind's targets).

One interface (`Tables`), one implementation per backend: on SQLite a file per
tenant next to the job database (`<db dir>/tenants/<tenant>.db`, WAL); on
PostgreSQL a schema per tenant in the job database (`data_<tenant>`, prefixed
with the job store's schema when that is not `public`, so that instances or
tests sharing a database never share tables).

A load is one transaction, staged first and applied once:

    with tables.load(tenant, "customers", columns, ["id"]) as load:
        load.stage(rows)            # as often as needed; nothing is visible yet
        inserted, updated = load.finish()

`stage` writes into a staging table (COPY into a temporary table on PostgreSQL;
on SQLite many rows per INSERT, into a TEMP table, or for a new table into a
private table of the tenant's file that `finish` renames); `stage_arrow` does
the same with an Arrow batch of typed columns, without a Python object per value.
`finish` makes the table (creating it, adding new declared columns, refusing a
changed type or primary key) and upserts the whole staging table in one
statement (a new SQLite table: renames its stage), then commits.
Leaving the block without `finish` (an exception, a cancel) rolls back:
nothing of the load is kept.

Rows must already hold values of their declared types (`COLUMN_TYPES`). When
several staged rows have the same primary key, the first one staged is applied
and the others are not: after `finish`, `load.rejected` says how many. The
database finds them (a keyed staging table on SQLite, one sort in `finish` on
PostgreSQL), so a load's memory does not grow with its rows.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from jobdock.errors import InvalidInput

__all__ = ["ARROW_TYPES", "COLUMN_TYPES", "NAME", "Load", "TableConflict", "Tables",
           "check_name", "open_tables"]

# The declared column types a table may use.
COLUMN_TYPES = ("int", "float", "str", "bool", "date", "datetime")
# The Arrow type of each declared type, for `Load.stage_arrow` (pyarrow's names).
ARROW_TYPES = {"int": "int64", "float": "float64", "str": "string", "bool": "bool",
               "date": "date32", "datetime": "timestamp[us, tz=UTC]"}
# Table and column names: lower case, an identifier in both backends without quoting
# (they are quoted anyway), at most 63 characters (PostgreSQL's limit).
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Row = Sequence[Any]


class TableConflict(InvalidInput):
    """A load that the existing table cannot take: a column declared with another type
    than the table has, or another primary key. Not worth retrying."""

    code = "table_conflict"


def text_data(column: Any) -> bytes:
    """The bytes of an Arrow text column's values, for checks that run in C (`in`,
    `translate`): far cheaper than Arrow's per-value kernels. Bytes of the buffer outside
    the column, if any, count too: at worst a needless slower path."""
    data = column.buffers()[2]
    return b"" if data is None else bytes(data.to_pybytes())


def check_name(name: str, what: str = "name") -> str:
    if not NAME.match(name):
        raise InvalidInput(f"invalid {what} {name!r}: use 1 to 63 characters a-z, 0-9 and _,"
                           " not starting with a digit")
    return name


class Load(abc.ABC):
    """One table load in progress: rows staged, then applied at once by `finish`."""

    # Staged rows not applied because a row with their key was staged before them.
    rejected: int = 0

    @abc.abstractmethod
    def stage(self, rows: Iterable[Row]) -> int:
        """Stage rows (values in the order of the load's columns); return how many."""

    @abc.abstractmethod
    def stage_arrow(self, batch: Any) -> int:
        """Stage a pyarrow Table or RecordBatch whose columns are the load's, in its order,
        of the Arrow types `ARROW_TYPES` names; return how many rows."""

    @abc.abstractmethod
    def finish(self) -> tuple[int, int]:
        """Make the table, upsert the first staged row of each key and commit; return
        (inserted, updated): rows whose key was new, and rows whose key existed and whose
        row was rewritten. Sets `rejected`."""


class Tables(abc.ABC):
    """The data area of every tenant of one job store."""

    backend: str

    @abc.abstractmethod
    def check(self, tenant: str, table: str, columns: Mapping[str, str],
              primary_key: Sequence[str]) -> None:
        """TableConflict now if the table exists and could not take these columns and key
        (checked again by `finish`; this only fails early)."""

    @abc.abstractmethod
    def load(self, tenant: str, table: str, columns: Mapping[str, str],
             primary_key: Sequence[str]) -> AbstractContextManager[Load]:
        """A load into `table` (see the module's text)."""

    @abc.abstractmethod
    def describe(self, tenant: str, table: str) -> dict[str, str] | None:
        """The table's columns and their declared types, or None when it does not exist."""

    @abc.abstractmethod
    def rows(self, tenant: str, table: str, order_by: Sequence[str] = ()) -> Iterator[
            dict[str, Any]]:
        """Every row of a table (for exports and tests); values as the backend returns them."""

    @abc.abstractmethod
    def drop_area(self, tenant: str) -> None:
        """Delete the tenant's whole data area."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""


def validate(table: str, columns: Mapping[str, str], primary_key: Sequence[str]) -> None:
    """InvalidInput unless the names are valid and the key is made of declared columns."""
    check_name(table, "table name")
    if not columns:
        raise InvalidInput(f"table {table!r} declares no columns")
    for name, kind in columns.items():
        check_name(name, "column name")
        if kind not in COLUMN_TYPES:
            raise InvalidInput(f"column {name!r}: unknown type {kind!r}; use one of"
                               f" {', '.join(COLUMN_TYPES)}")
    if not primary_key:
        raise InvalidInput(f"table {table!r} needs a primary key")
    missing = [c for c in primary_key if c not in columns]
    if missing:
        raise InvalidInput(f"primary key column(s) {missing} of {table!r} are not declared")
    if len(set(primary_key)) != len(primary_key):
        raise InvalidInput(f"primary key of {table!r} names a column twice")


def conflicts(table: str, existing: Mapping[str, str], existing_key: Sequence[str],
              columns: Mapping[str, str], primary_key: Sequence[str]) -> None:
    """TableConflict when a declared column has another type than the table's, or the
    primary key differs. `existing` maps columns to declared types (None: unknown type)."""
    changed = [f"{name} is {existing[name]}, declared {kind}" for name, kind in columns.items()
               if name in existing and existing[name] != kind]
    if changed:
        raise TableConflict(f"table {table!r} exists with other column types: "
                            + "; ".join(changed))
    if list(existing_key) != list(primary_key):
        raise TableConflict(f"table {table!r} has primary key {list(existing_key)}, not"
                            f" {list(primary_key)}")


def open_tables(url: str) -> Tables:
    """The data area beside the job store that `url` names."""
    if url.startswith("sqlite:"):
        from jobdock.store.tables_sqlite import SQLiteTables

        return SQLiteTables(url)
    if url.startswith(("postgresql:", "postgres:")):
        from jobdock.store.tables_postgres import PostgresTables

        return PostgresTables(url)
    raise ValueError(f"unsupported database URL {url!r}")
