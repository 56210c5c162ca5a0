"""The ingest's Arrow path reads and types exactly as the record-by-record path."""

from __future__ import annotations

import io
from typing import Any

import pytest

from jobdock import App
from jobdock.kinds import readers
from jobdock.kinds.ingest import RowChecker, typed_batch
from jobdock.kinds.readers import ArrowRows, Record, UnreadableFile, read_batches, read_records
from jobdock.store.tables import open_tables
from tests.kinds.ingesting import counters, parquet_bytes, running, table, upload, wait_ingest

HEADER = b"id,name,n\n"
CSV_CASES = {
    "plain": HEADER + b"".join(b"%d,name %d,%d\n" % (i, i, i * 2) for i in range(40)),
    "no final newline": HEADER + b"1,a,2\n2,b,3",
    "crlf and bom": b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + b"1,a,2\r\n2,,\r\n",
    "blank lines": HEADER + b"1,a,2\n\n2,b,3\n\n\n3,c,4\n",
    "quoted": HEADER + b'1,"a, b",2\n2,"",3\n3,"x",""\n' * 5,
    "line break in quotes": HEADER + b'1,a,2\n2,"two\nlines",3\n3,c,4\n' * 5,
    "inner quotes": HEADER + b'1,"say ""hi""",2\n2,a"b,3\n',
    "bad quoting": HEADER + b'1,a,2\n2,"a"b,3\n',
    # The quote after the comma closes the field: the csv module refuses the file.
    "a quote closing a field early": HEADER + (b'1,a,2\n2,"a,"b",3\n' + b"3,c,4\n" * 9) * 3,
    "a quote closing the last field early": HEADER + b'1,"a",2\n2,x,"a,"b"\n3,"c",4\n',
    "quotes that pair": HEADER + b'1,"a,",2\n2,"",""\n3,"a,b","4"\n4,x",5\n' * 3,
    "doubled quotes and crlf": HEADER + b'1,"say ""hi""",2\r\n2,"""",3\r\n3,"",4',
    "short and long rows": HEADER + b"1,a,2\n2,b\n3,c,4,5\n4,d,5\n" * 5,
    "not utf-8 in a column not read": b"id,x,name,n\n1,\xff,a,2\n",
    "repeated header name": b"id,name,name,n\n1,a,b,2\n",
    "quoted header": b'"id","name",n\n1,a,2\n',
    "no wanted column": b"x,y\n1,2\n",
    "header only": HEADER,
}


def _expanded(items: Any) -> list[Record]:
    out: list[Record] = []
    for item in items:
        out.extend(item.records() if isinstance(item, ArrowRows) else [item])
    return out


def _outcome(read: Any) -> list[Record] | str:
    try:
        return list(read())
    except UnreadableFile as exc:
        return f"unreadable: {exc}"


@pytest.mark.parametrize("block", [16, 64, 4 * 1024 * 1024])
@pytest.mark.parametrize("case", list(CSV_CASES))
def test_csv_batches_are_the_records(monkeypatch: pytest.MonkeyPatch, case: str,
                                     block: int) -> None:
    monkeypatch.setattr(readers, "_CSV_BLOCK", block)
    data = CSV_CASES[case]
    wanted = ["id", "name", "n"]
    expected = _outcome(lambda: read_records(io.BytesIO(data), "f.csv"))
    found = _outcome(lambda: _expanded(read_batches(io.BytesIO(data), "f.csv", wanted)))
    assert _wanted(found, wanted) == _wanted(expected, wanted)


def _wanted(records: list[Record] | str, wanted: list[str]) -> list[Record] | str:
    """The records with their wanted fields only (the checker reads no others)."""
    if isinstance(records, str):
        return records
    return [Record(r.position, None if r.values is None else
                   {k: v for k, v in r.values.items() if k in wanted}, r.error, r.unit)
            for r in records]


def test_plain_csv_is_read_in_arrow_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_CSV_BLOCK", 64)
    items = list(read_batches(io.BytesIO(CSV_CASES["plain"]), "f.csv", ["id", "n"]))
    assert len(items) > 3 and all(isinstance(i, ArrowRows) for i in items)
    assert [i.first for i in items[:2]] == [2, 2 + items[0].batch.num_rows]
    for case in ("quoted", "quotes that pair"):  # quotes in their places: Arrow reads too
        items = list(read_batches(io.BytesIO(CSV_CASES[case]), "f.csv", ["id", "n"]))
        assert all(isinstance(i, ArrowRows) for i in items), case


def test_a_quote_closing_a_field_early_fails_the_table(jd: App,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in a later block, after Arrow blocks were staged: the table fails naming the
    file and the line, and keeps nothing."""
    monkeypatch.setattr(readers, "_CSV_BLOCK", 64)
    good = b"".join(b'%d,"n%d",%d\n' % (i, i, i) for i in range(1, 30))
    bad = upload(jd, "quotes.csv", HEADER + good + b'30,"a,"b",3\n31,x,4\n')
    columns = {"id": "int", "name": "str", "n": "int"}
    with running(jd):
        parent = jd.submit("ingest", {"tables": [table("q", [bad], columns=columns)]})
        _, children = wait_ingest(jd, parent.id)
    assert children[0].status == "failed"
    message = children[0].error["message"]  # type: ignore[index]
    assert "quotes.csv" in message and "line 31" in message, message
    assert open_tables(jd.settings.database_url).describe("default", "q") is None


CHECKER = RowChecker({"i": "int", "f": "float", "s": "str", "b": "bool", "d": "date",
                      "t": "datetime"}, ["i"])
TEXT = {"i": ["1", "-7", "007", "+5", "0x1F", " 3", "1e3", "9223372036854775808", "١٢", "1-2",
              "-", "--1", "+-1"],
        "f": ["1.5", "-.5", "1e3", "1.", "nan", "inf", "1e999", "0x1p3", "1_0", " 2", "+1.5",
              "1.e5", ".e5", "1e", "e5", "1..5", "-", "1e+-5", "1.5E-3", "+.5", "5e-400"],
        "s": ["a", "", "\x00"],
        "b": ["true", "F", "YES", "n", "0", " true", "maybe"],
        "d": ["2024-01-31", "2024-02-30", "0000-01-01", "2024-1-1", "2021-W01-1", "20240131",
              "-024-01-31", "2024-01-3-", "2024--1-31", "12024-01-31", "2024-13-01"],
        "t": ["2024-01-02T03:04:05", "2024-01-02 03:04:05+02:00", "x"]}
GOOD = {"i": 1, "f": 1.5, "s": "a", "b": "true", "d": "2024-01-31", "t": "2024-01-02"}


def _batch_of(records: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    names = list(records[0])
    return pa.table({n: pa.array([r[n] for r in records], pa.string()) for n in names})


@pytest.mark.parametrize("column", list(TEXT))
def test_typed_batches_convert_as_the_checker(column: str) -> None:
    for value in TEXT[column]:
        record = {k: str(v) for k, v in GOOD.items()} | {column: value}
        row, problem = CHECKER.check(record)
        typed = typed_batch(_batch_of([record]), CHECKER)
        if problem is not None:
            assert typed is None, (column, value)
        elif typed is not None:
            assert tuple(typed.to_pylist()[0].values()) == row, (column, value)


def test_a_missing_key_or_an_empty_key_text_sends_the_batch_to_the_checker() -> None:
    import pyarrow as pa

    good = {k: str(v) for k, v in GOOD.items()}
    assert typed_batch(_batch_of([good]), CHECKER) is not None
    assert typed_batch(_batch_of([good | {"i": None}]), CHECKER) is None
    assert typed_batch(pa.table({"f": ["1"]}), CHECKER) is None  # no key column at all
    keyed = RowChecker({"s": "str"}, ["s"])
    assert typed_batch(pa.table({"s": ["a", ""]}), keyed) is None


CSV_ROWS = [(1, "a@x", "1.5", "2024-01-01"), (2, "b@x", "2", "2024-01-02"),
            (2, "dup", "3", "2024-01-03"), (3, "c@x", "high", "2024-01-04"),
            (4, "d@x", "4", "2024-01-05"), (1, "dup again", "5", "2024-01-06"),
            (5, "e@x", "", "")] * 1


def _csv(rows: list[tuple[Any, ...]]) -> bytes:
    return b"id,email,score,joined\n" + b"".join(
        ",".join(str(v) for v in r).encode() + b"\n" for r in rows)


def test_arrow_blocks_and_checked_rows_mix_in_one_file(jd: App,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Small blocks: good blocks go through Arrow, the one with `high` row by row.
    monkeypatch.setattr(readers, "_CSV_BLOCK", 48)
    many = [(10 + i, f"m{i}@x", str(i), "2024-02-01") for i in range(30)]
    first = upload(jd, "one.csv", _csv(CSV_ROWS + many + [(10, "dup", "1", "2024-01-01")]))
    second = upload(jd, "two.parquet", parquet_bytes(
        [{"id": 4, "email": "dup", "score": 1.0}, {"id": 50, "email": "p@x", "score": 2.0}]))
    with running(jd):
        job = jd.submit("ingest", {"tables": [table("customers", [first, second])]})
        _, children = wait_ingest(jd, job.id)
    child = children[0]
    assert child.status == "succeeded", child.error
    assert counters(child) == {"read": 40, "errors": 1, "rejected": 4, "inserted": 35,
                               "updated": 0}
    assert child.result["files"][0]["read"] == 38
    assert [e.record["line"] for e in jd.errors(child.id)] == [5]
    from jobdock.store.tables import open_tables

    rows = {r["id"]: r for r in open_tables(jd.settings.database_url).rows("default",
                                                                          "customers")}
    assert rows[1]["email"] == "a@x" and rows[2]["email"] == "b@x"
    assert rows[4]["email"] == "d@x" and rows[10]["email"] == "m0@x"
    assert rows[5]["score"] is None and rows[50]["score"] == 2.0


def test_read_ahead_gives_items_in_order_raises_their_error_and_stops_early() -> None:
    import threading

    from jobdock.kinds.ingest import read_ahead

    assert list(read_ahead(iter(range(100)))) == list(range(100))

    def failing() -> Any:
        yield 1
        raise UnreadableFile("broken")

    with pytest.raises(UnreadableFile, match="broken"):
        list(read_ahead(failing()))
    ahead = read_ahead(iter(range(1_000_000)))
    assert next(ahead) == 0
    ahead.close()  # the reading thread ends without being drained
    assert not [t for t in threading.enumerate() if t.name == "ingest-read"]


def test_parquet_types_the_checker_refuses_send_the_batch_to_it() -> None:
    import pyarrow as pa

    checker = RowChecker({"id": "int", "s": "str", "d": "date", "f": "float"}, ["id"])
    odd = pa.record_batch({"id": pa.array([1, 2]), "s": pa.array([{"a": 1}, {"a": 2}]),
                           "d": pa.array([[1], [2]]), "f": pa.array([b"x", b"y"])})
    assert typed_batch(odd, checker) is None
    typed = pa.record_batch({"id": pa.array([1, 2], pa.uint8()), "s": pa.array(["a", "b"]),
                             "d": pa.array([None, None], pa.date32()),
                             "f": pa.array([1.5, None], pa.float32())})
    assert typed_batch(typed, checker).to_pylist() == [  # type: ignore[union-attr]
        {"id": 1, "s": "a", "d": None, "f": 1.5}, {"id": 2, "s": "b", "d": None, "f": None}]


VARIED = [
    {"id": "1", "name": "plain", "score": "1.5", "day": "2024-02-29", "ok": "true"},
    {"id": "007", "name": "a, quoted one", "score": ".5", "day": "0001-01-01", "ok": "F"},
    {"id": "-3", "name": " spaces kept ", "score": "5.", "day": None, "ok": "Yes"},
    {"id": "4", "name": "back\\slash \\N", "score": "-0", "day": "9999-12-31", "ok": "n"},
    {"id": "5", "name": "ünïcödé ✓", "score": "+1.25", "day": "2024-01-01", "ok": "0"},
    {"id": "6", "name": None, "score": None, "day": None, "ok": None},
    {"id": "9223372036854775807", "name": "\\.", "score": "123456789.123456789",
     "day": "2000-01-01", "ok": "1"},
    {"id": "8", "name": "e", "score": "0.1", "day": "2000-01-02", "ok": "TRUE"},
]
VARIED_COLUMNS = {"id": "int", "name": "str", "score": "float", "day": "date", "ok": "bool"}


def test_csv_batches_store_what_records_store(jd: App) -> None:
    import csv as csvmodule
    import json

    out = io.StringIO()
    writer = csvmodule.DictWriter(out, fieldnames=list(VARIED_COLUMNS), lineterminator="\n",
                                  quoting=csvmodule.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(VARIED)
    as_csv = upload(jd, "varied.csv", out.getvalue().encode())
    as_jsonl = upload(jd, "varied.jsonl", b"".join(json.dumps(r).encode() + b"\n"
                                                   for r in VARIED))
    with running(jd):
        job = jd.submit("ingest", {"tables": [
            table("by_csv", [as_csv], VARIED_COLUMNS), table("by_jsonl", [as_jsonl],
                                                             VARIED_COLUMNS)]})
        _, children = wait_ingest(jd, job.id)
    assert all(c.status == "succeeded" for c in children), [c.error for c in children]
    assert [counters(c)["inserted"] for c in children] == [8, 8]
    from jobdock.store.tables import open_tables

    tables = open_tables(jd.settings.database_url)
    assert list(tables.rows("default", "by_csv", ["id"])) == list(
        tables.rows("default", "by_jsonl", ["id"]))
