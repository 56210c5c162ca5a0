"""The tenants' data area, on each backend: one staged load, applied at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from jobdock.errors import InvalidInput
from jobdock.store.tables import TableConflict, Tables, open_tables

COLUMNS = {"id": "int", "name": "str", "score": "float", "ok": "bool", "day": "date",
           "at": "datetime"}
ROW = (1, "a", 1.5, True, dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))


@pytest.fixture
def tables(database_url: str) -> Iterator[Tables]:
    data = open_tables(database_url)
    yield data
    data.drop_area("default")
    data.drop_area("acme")


def test_load_inserts_then_updates(tables: Tables) -> None:
    with tables.load("default", "t", COLUMNS, ["id"]) as load:
        assert load.stage([ROW, (2, None, None, None, None, None)]) == 2
        assert load.finish() == (2, 0)
    with tables.load("default", "t", {"id": "int", "name": "str"}, ["id"]) as load:
        load.stage([(2, "b"), (3, "c")])
        assert load.finish() == (1, 1)
    rows = list(tables.rows("default", "t", ["id"]))
    assert [(r["id"], r["name"]) for r in rows] == [(1, "a"), (2, "b"), (3, "c")]
    assert rows[0]["score"] == 1.5
    assert tables.describe("default", "t") == COLUMNS
    assert tables.describe("acme", "t") is None


def test_unfinished_or_failed_load_keeps_nothing(tables: Tables) -> None:
    with tables.load("default", "t", COLUMNS, ["id"]) as load:
        load.stage([ROW])
    assert tables.describe("default", "t") is None
    with pytest.raises(RuntimeError), tables.load("default", "t", COLUMNS, ["id"]) as load:
        load.stage([ROW])
        raise RuntimeError("stop")
    assert tables.describe("default", "t") is None
    with pytest.raises(RuntimeError), tables.load("default", "t", COLUMNS, ["id"]) as load:
        load.stage_arrow(_arrow([ROW], COLUMNS))  # a COPY still open on PostgreSQL
        raise RuntimeError("stop")
    assert tables.describe("default", "t") is None


def test_new_columns_are_added_and_changed_types_refused(tables: Tables) -> None:
    with tables.load("default", "t", {"id": "int"}, ["id"]) as load:
        load.stage([(1,)])
        load.finish()
    with tables.load("default", "t", {"id": "int", "extra": "date"}, ["id"]) as load:
        load.stage([(1, dt.date(2020, 1, 1))])
        assert load.finish() == (0, 1)
    assert tables.describe("default", "t") == {"id": "int", "extra": "date"}
    with pytest.raises(TableConflict, match="extra is date, declared str"):
        tables.check("default", "t", {"id": "int", "extra": "str"}, ["id"])
    with pytest.raises(TableConflict, match="primary key"), tables.load(
            "default", "t", {"id": "int", "extra": "date"}, ["extra"]) as load:
        load.stage([(2, dt.date(2020, 1, 2))])
        load.finish()
    assert len(list(tables.rows("default", "t"))) == 1


@pytest.mark.parametrize("name", ["Customers", "1abc", "a-b", 'x"; drop table t; --', "a" * 64])
def test_names_are_validated(tables: Tables, name: str) -> None:
    with pytest.raises(InvalidInput):
        tables.check("default", name, {"id": "int"}, ["id"])
    with pytest.raises(InvalidInput):
        tables.check("default", "t", {name: "int"}, [name])


def _arrow(rows: list[tuple[object, ...]], columns: dict[str, str]) -> object:
    import pyarrow as pa

    types = {"int": pa.int64(), "str": pa.string(), "float": pa.float64(), "bool": pa.bool_(),
             "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC")}
    return pa.RecordBatch.from_arrays(
        [pa.array(list(values), type=types[kind])
         for values, kind in zip(zip(*rows, strict=True), columns.values(), strict=True)],
        names=list(columns))


def test_arrow_batches_stage_the_same_values_as_rows(tables: Tables) -> None:
    odd = (2, "", None, False, None, dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC))
    text = (3, 'quote " comma , line\nbreak', 0.1, None, dt.date(1, 1, 1), None)
    with tables.load("default", "a", COLUMNS, ["id"]) as load:
        assert load.stage_arrow(_arrow([ROW, odd, text], COLUMNS)) == 3
        assert load.finish() == (3, 0)
    with tables.load("default", "r", COLUMNS, ["id"]) as load:
        load.stage([ROW, odd, text])
        load.finish()
    assert list(tables.rows("default", "a", ["id"])) == list(tables.rows("default", "r", ["id"]))
    assert [r["name"] for r in tables.rows("default", "a", ["id"])] == ["a", "", text[1]]


def test_a_repeated_key_keeps_the_first_staged_row(tables: Tables) -> None:
    columns = {"id": "int", "name": "str"}
    with tables.load("default", "t", columns, ["id"]) as load:
        load.stage([(1, "first"), (2, "two")])
        load.stage_arrow(_arrow([(1, "second"), (3, "three"), (3, "again")], columns))
        load.stage([(2, "late")])
        assert load.finish() == (3, 0)
        assert load.rejected == 3
    with tables.load("default", "t", columns, ["id"]) as load:
        load.stage_arrow(_arrow([(3, "new three"), (4, "four"), (4, "no")], columns))
        load.stage([(3, "no")])
        assert load.finish() == (1, 1)
        assert load.rejected == 2
    rows = list(tables.rows("default", "t", ["id"]))
    assert [(r["id"], r["name"]) for r in rows] == [(1, "first"), (2, "two"), (3, "new three"),
                                                     (4, "four")]


def test_a_key_only_table_counts_updates_of_existing_keys(tables: Tables) -> None:
    with tables.load("default", "k", {"a": "str", "b": "int"}, ["a", "b"]) as load:
        load.stage([("x", 1), ("x", 2), ("x", 1)])
        assert load.finish() == (2, 0)
        assert load.rejected == 1
    with tables.load("default", "k", {"a": "str", "b": "int"}, ["a", "b"]) as load:
        load.stage([("x", 2), ("y", 1), ("y", 1)])
        assert load.finish() == (1, 1)
        assert load.rejected == 1
    assert len(list(tables.rows("default", "k"))) == 3


def test_two_loads_of_a_new_table_at_once(tables: Tables) -> None:
    columns = {"id": "int", "name": "str"}
    with tables.load("default", "n", columns, ["id"]) as first, \
            tables.load("default", "n", columns, ["id"]) as second:
        first.stage_arrow(_arrow([(1, "a"), (2, "b")], columns))
        second.stage_arrow(_arrow([(2, "B"), (3, "C"), (3, "no")], columns))
        assert first.finish() == (2, 0)
        assert second.finish() == (1, 1)
        assert second.rejected == 1
    rows = list(tables.rows("default", "n", ["id"]))
    assert [(r["id"], r["name"]) for r in rows] == [(1, "a"), (2, "B"), (3, "C")]
    if tables.backend == "postgres":  # no staging table is left in the tenant's schema
        from jobdock.store.tables_postgres import PostgresTables

        assert isinstance(tables, PostgresTables)
        with tables._connect() as conn:
            names = conn.execute("SELECT table_name FROM information_schema.tables"
                                 " WHERE table_schema = %s",
                                 (tables.schema(conn, "default"),)).fetchall()
        assert names == [("n",)]
