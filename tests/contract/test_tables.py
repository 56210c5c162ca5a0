"""The tenants' data area, on each backend: one staged load, applied at once."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

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


def test_a_load_of_only_new_keys_into_a_table(tables: Tables) -> None:
    with tables.load("default", "t", COLUMNS, ["id"]) as load:
        load.stage([ROW])
        load.finish()
    later = (5, "e", None, False, dt.date(2024, 5, 6), None)
    with tables.load("default", "t", COLUMNS, ["id"]) as load:
        load.stage_arrow(_arrow([later, (4, "d", 4.0, True, None, None)], COLUMNS))
        load.stage([(5, "no", None, None, None, None)])
        assert load.finish() == (2, 0)
        assert load.rejected == 1
    with tables.load("default", "t", {"name": "str", "id": "int"}, ["id"]) as load:
        load.stage([("f", 6)])  # the table's columns in another order
        assert load.finish() == (1, 0)
    rows = list(tables.rows("default", "t", ["id"]))
    assert [r["id"] for r in rows] == [1, 4, 5, 6]
    assert [r["name"] for r in rows] == ["a", "d", "e", "f"]
    assert (rows[2]["score"], bool(rows[2]["ok"]), str(rows[2]["day"])) == (
        None, False, "2024-05-06")


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


def test_arrow_batches_of_any_text_store_what_rows_store(tables: Tables) -> None:
    """PostgreSQL COPYs batches in its text format while their text allows it, then as
    CSV: values that go either way, and keys repeated across the two, as rows store them."""
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    plain = [(1, "a comma, and  spaces ", 1.5, True, dt.date(2024, 1, 2), moment),
             (2, "ünïcode", None, None, None, None), (3, None, -0.1, False, dt.date(1, 1, 1), None)]
    odd = [(4, "back\\slash", 2.5, None, None, None), (1, "repeat", None, None, None, None),
           (5, "", None, None, None, None)]
    rest = [(2, "again", None, None, None, None), (6, "plain", 0.5, True, None, moment)]
    with tables.load("default", "a", COLUMNS, ["id"]) as load:
        for batch in (plain, odd, rest):
            load.stage_arrow(_arrow(batch, COLUMNS))
        assert load.finish() == (6, 0)
        assert load.rejected == 2
    with tables.load("default", "r", COLUMNS, ["id"]) as load:
        load.stage(plain + odd + rest)
        load.finish()
    stored = list(tables.rows("default", "a", ["id"]))
    assert stored == list(tables.rows("default", "r", ["id"]))
    assert [r["name"] for r in stored] == [plain[0][1], "ünïcode", None, "back\\slash", "",
                                           "plain"]
    # Each value that text cannot carry sends its batch to CSV, with the same result.
    for number, name in enumerate(["", "back\\slash", "tab\there", "line\nbreak", "cr\rhere",
                                   'a "quote"', "\\N", "\\."]):
        batch = [(1, "first", None, None, None, None), (2, name, None, None, None, None)]
        with tables.load("default", f"t{number}", COLUMNS, ["id"]) as load:
            load.stage_arrow(_arrow(batch, COLUMNS))
            load.finish()
        assert [r["name"] for r in tables.rows("default", f"t{number}", ["id"])] == [
            "first", name], name


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


def test_the_first_row_of_a_key_wins_among_many_rows(tables: Tables) -> None:
    """Enough rows that SQLite inserts many per statement: a key repeated within one
    statement, across statements and among the rows left over keeps its first row."""
    columns = {"id": "int", "name": "str", "n": "int"}
    rows = [(i % 700, f"r{i}", i) for i in range(1_000)]  # keys 0..299 come again at 700..
    rows.insert(6, (5, "right after", -1))
    with tables.load("default", "t", columns, ["id"]) as load:
        load.stage(rows[:500])
        load.stage_arrow(_arrow(rows[500:], columns))
        assert load.finish() == (700, 0)
        assert load.rejected == 301
    assert {r["id"]: r["n"] for r in tables.rows("default", "t")} == {k: k for k in range(700)}


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
    assert _table_names(tables, "default") == ["n"]  # no staging table is left behind


def _table_names(tables: Tables, tenant: str) -> list[str]:
    """Every table in the tenant's data area, staging tables included."""
    if tables.backend == "postgres":
        from jobdock.store.tables_postgres import PostgresTables

        assert isinstance(tables, PostgresTables)
        with tables._connect() as conn:
            names = conn.execute("SELECT table_name FROM information_schema.tables"
                                 " WHERE table_schema = %s ORDER BY 1",
                                 (tables.schema(conn, tenant),)).fetchall()
        return [name for (name,) in names]
    from jobdock.store.tables_sqlite import SQLiteTables

    assert isinstance(tables, SQLiteTables)
    if not tables.path(tenant).exists():
        return []
    conn = sqlite3.connect(tables.path(tenant))
    try:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                             " ORDER BY 1").fetchall()
    finally:
        conn.close()
    return [name for (name,) in names]


def test_a_load_of_a_new_table_that_fails_midway_leaves_no_table(tables: Tables) -> None:
    columns = {"id": "int", "name": "str"}
    with pytest.raises(RuntimeError), tables.load("default", "t", columns, ["id"]) as load:
        load.stage([(i, "x") for i in range(1_000)])  # several commits of a stage
        load.stage_arrow(_arrow([(i, "y") for i in range(500, 2_000)], columns))
        raise RuntimeError("cancelled")
    assert _table_names(tables, "default") == []
    with tables.load("default", "t", columns, ["id"]) as load:
        load.stage([(1, "again"), (1, "no")])
        assert load.finish() == (1, 0)
        assert load.rejected == 1
    assert _table_names(tables, "default") == ["t"]
    assert [r["name"] for r in tables.rows("default", "t")] == ["again"]


def test_loads_of_one_tenant_in_threads(tables: Tables) -> None:
    """Loads of new tables, of an existing one and of the same new table, at once: none
    waits for another to fail, and each counts its own rows."""
    columns = {"id": "int", "name": "str"}
    with tables.load("default", "old", columns, ["id"]) as load:
        load.stage([(i, "old") for i in range(0, 30_000, 2)])
        load.finish()
    count = 30_000

    def run(table: str, start: int) -> tuple[int, int, int]:
        with tables.load("default", table, columns, ["id"]) as load:
            for low in range(start, start + count, 5_000):  # many short stage calls
                load.stage((i, table) for i in range(low, low + 5_000))
            load.stage([(start, "repeat")])
            inserted, updated = load.finish()
            return inserted, updated, load.rejected

    jobs = [("a", 0), ("b", 0), ("old", 0), ("same", 0), ("same", 15_000)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    assert results[:3] == [(count, 0, 1), (count, 0, 1), (count // 2, count // 2, 1)]
    # The two loads of "same" overlap by half: whichever finished second updated that half.
    assert sorted(results[3:]) == [(count // 2, count // 2, 1), (count, 0, 1)]
    assert _table_names(tables, "default") == ["a", "b", "old", "same"]
    assert len(list(tables.rows("default", "same"))) == count + count // 2
    assert {r["name"] for r in tables.rows("default", "old")} == {"old"}


# A load of a new table that stages rows, says so, and waits to be killed.
_KILLED_LOAD = """
import sys, time
from jobdock.store.tables import open_tables

with open_tables(sys.argv[1]).load("default", "t", {"id": "int", "name": "str"}, ["id"]) as load:
    load.stage([(i, "x") for i in range(60_000)])  # two commits of the stage on SQLite
    print("staged", flush=True)
    time.sleep(60)
"""


def test_the_stage_of_a_killed_load_is_dropped_by_the_next_load(tables: Tables,
                                                                 database_url: str) -> None:
    with subprocess.Popen([sys.executable, "-c", _KILLED_LOAD, database_url],
                          stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None and process.stdout.readline() == "staged\n"
            with tables.load("default", "live", {"id": "int"}, ["id"]) as load:
                load.stage([(1,)])  # a load of the tenant meanwhile leaves the live stage
                load.finish()
        finally:
            process.kill()
    if tables.backend == "sqlite":  # a table of the tenant's file outlives the process
        left = [n for n in _table_names(tables, "default") if n != "live"]
        assert len(left) == 1 and left[0].startswith("jobdock-load-"), left
    # PostgreSQL: the stage was a table of the load's transaction, rolled back with it.
    columns = {"id": "int", "name": "str"}
    with tables.load("default", "t", columns, ["id"]) as load:
        load.stage([(1, "a")])
        assert load.finish() == (1, 0)
    assert _table_names(tables, "default") == ["live", "t"]
    assert [r["name"] for r in tables.rows("default", "t")] == ["a"]
