"""The `ingest` kind on each store: counters, error records, formats, failures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from jobdock import App
from jobdock.store.tables import open_tables
from tests.kinds.ingesting import (
    CUSTOMERS,
    WRITERS,
    by_table,
    counters,
    csv_bytes,
    gz,
    jsonl_bytes,
    parquet_bytes,
    running,
    table,
    upload,
    wait_ingest,
)

# Seven records: three good, one duplicate key, a bad float, a missing key, a bad date.
FIRST: list[dict[str, Any]] = [
    {"id": 1, "email": "a@example.com", "score": 1.5, "joined": "2024-01-01"},
    {"id": 2, "email": "b@example.com", "score": 2, "joined": "2024-01-02"},
    {"id": 2, "email": "duplicate", "score": 3, "joined": "2024-01-03"},
    {"id": 3, "email": "c@example.com", "score": "high", "joined": "2024-01-04"},
    {"id": None, "email": "d@example.com", "score": 1, "joined": "2024-01-05"},
    {"id": 4, "email": "e@example.com", "score": 4, "joined": "2024-13-01"},
    {"id": 5, "email": None, "score": None, "joined": None},
]
FIRST_COUNTS = {"read": 7, "inserted": 3, "updated": 0, "rejected": 1, "errors": 3}
# An update of id 1 and a new id 6.
SECOND: list[dict[str, Any]] = [
    {"id": 1, "email": "a2@example.com", "score": 9.5, "joined": "2024-02-01"},
    {"id": 6, "email": "f@example.com", "score": 6, "joined": "2024-02-06"},
]


def _text_values(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every value as text, as a CSV would have it (typed formats can't mix types)."""
    return [{k: None if v is None else str(v) for k, v in r.items()} for r in rows]


def _file(fmt: str, rows: list[dict[str, Any]]) -> tuple[str, bytes]:
    """(name, content) of `rows` in a format: csv, jsonl, parquet, avro, each maybe .gz;
    'jsonl-unnamed' and 'csv.gz-unnamed' carry no suffix (found by content)."""
    base, _, unnamed = fmt.partition("-")
    plain = base.removesuffix(".gz")
    values = _text_values(rows) if plain in ("parquet", "avro") else rows
    data = WRITERS[plain](values)
    if base.endswith(".gz"):
        data = gz(data)
    return ("upload-file" if unnamed else f"customers.{base}"), data


def _ingest(jd: App, *tables: dict[str, Any], workflow_id: str | None = None,
            tenant: str = "default") -> tuple[Any, dict[str, Any]]:
    body: dict[str, Any] = {"tables": list(tables)}
    if workflow_id:
        body["workflow_id"] = workflow_id
    job = jd.submit("ingest", body, tenant=tenant)
    parent, children = wait_ingest(jd, job.id, tenant)
    return parent, by_table(children)


FORMATS = ["csv", "jsonl", "parquet", "avro", "csv.gz", "jsonl.gz", "parquet.gz", "avro.gz",
           "jsonl-unnamed", "csv.gz-unnamed"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_counters_of_each_format(jd: App, fmt: str) -> None:
    name, data = _file(fmt, FIRST)
    first = upload(jd, name, data)
    with running(jd):
        parent, tables = _ingest(jd, table("customers", [first], feed_id="df-customers"))
        assert parent.status == "succeeded"
        child = tables["customers"]
        assert child.status == "succeeded", child.error
        assert counters(child) == FIRST_COUNTS
        assert child.stats["file_0_read"] == 7
        assert child.stats["file_0_errors"] == 3
        assert child.result["files"] == [{"file_id": first, "name": name, "read": 7,
                                          "errors": 3}]

        name2, data2 = _file(fmt, SECOND)
        second = upload(jd, name2, data2)
        _, tables = _ingest(jd, table("customers", [second]))
        assert counters(tables["customers"]) == {"read": 2, "inserted": 1, "updated": 1,
                                                 "rejected": 0, "errors": 0}

    rows = list(open_tables(jd.settings.database_url).rows("default", "customers", ["id"]))
    assert [r["id"] for r in rows] == [1, 2, 5, 6]
    assert rows[0]["email"] == "a2@example.com" and rows[0]["score"] == 9.5
    assert rows[1]["email"] == "b@example.com"  # the first of the duplicates won
    assert rows[2]["email"] is None and rows[2]["score"] is None


def test_error_records_name_file_line_column_and_reason(jd: App) -> None:
    first = upload(jd, "customers.csv", csv_bytes(FIRST))
    with running(jd):
        _, tables = _ingest(jd, table("customers", [first]))
    child = tables["customers"]
    records = sorted((e.record for e in jd.errors(child.id)), key=lambda r: r["line"])
    assert records == [
        {"file_id": first, "file": "customers.csv", "line": 5, "column": "score",
         "reason": "'high' is not a number (declared float)"},
        {"file_id": first, "file": "customers.csv", "line": 6, "column": "id",
         "reason": "missing primary key value"},
        {"file_id": first, "file": "customers.csv", "line": 7, "column": "joined",
         "reason": "'2024-13-01' is not a date (YYYY-MM-DD) (declared date)"},
    ]
    codes = sorted(e.code or "" for e in jd.errors(child.id))
    assert codes == ["missing_key", "type_error", "type_error"]


def test_duplicates_across_files_and_typed_parquet(jd: App) -> None:
    typed = [{"id": 10, "email": "t@example.com", "score": 1.25, "joined": dt.date(2023, 5, 1)},
             {"id": 11, "email": "u@example.com", "score": 2.0, "joined": dt.date(2023, 5, 2)}]
    one = upload(jd, "a.parquet", parquet_bytes(typed))
    two = upload(jd, "b.jsonl", jsonl_bytes([
        {"id": 11, "email": "again", "score": 1, "joined": "2023-05-03"},
        {"id": 12, "email": "v@example.com", "score": 1, "joined": "2023-05-04"},
        "not an object",  # type: ignore[list-item]
    ]))
    with running(jd):
        _, tables = _ingest(jd, table("customers", [one, two]))
    child = tables["customers"]
    assert counters(child) == {"read": 5, "inserted": 3, "updated": 0, "rejected": 1,
                               "errors": 1}
    assert child.result["files"] == [
        {"file_id": one, "name": "a.parquet", "read": 2, "errors": 0},
        {"file_id": two, "name": "b.jsonl", "read": 3, "errors": 1}]
    rows = list(open_tables(jd.settings.database_url).rows("default", "customers", ["id"]))
    assert str(rows[0]["joined"]) == "2023-05-01"


def test_corrupt_file_fails_its_table_only_and_keeps_nothing(jd: App) -> None:
    good = upload(jd, "good.csv", csv_bytes(FIRST[:2]))
    corrupt = upload(jd, "broken.parquet", b"PAR1 this is not really parquet at all PAR1")
    other = upload(jd, "orders.csv", b"order_id,total\n1,9.5\n2,3\n")
    with running(jd):
        parent, tables = _ingest(
            jd, table("customers", [good, corrupt]),
            table("orders", [other], columns={"order_id": "int", "total": "float"},
                  key=["order_id"]))
    assert parent.status == "succeeded"
    failed = tables["customers"]
    assert failed.status == "failed"
    assert failed.error is not None and "broken.parquet" in failed.error["message"]
    assert failed.error["code"] == "ingest_failed"
    assert failed.attempt == 1  # not retried: the file must change
    assert tables["orders"].status == "succeeded"
    assert counters(tables["orders"])["inserted"] == 2
    data = open_tables(jd.settings.database_url)
    assert data.describe("default", "customers") is None  # nothing half-committed
    assert len(list(data.rows("default", "orders"))) == 2


def test_missing_upload_and_bad_gzip_fail_their_tables(jd: App) -> None:
    bad_gzip = upload(jd, "x.csv.gz", b"\x1f\x8b\x08\x00garbage")
    with running(jd):
        _, tables = _ingest(jd, table("a", ["0123456789abcdef01234567"]),
                            table("b", [bad_gzip]))
    assert tables["a"].status == "failed"
    assert "0123456789abcdef01234567" in tables["a"].error["message"]  # type: ignore[index]
    assert tables["b"].status == "failed"
    assert "x.csv.gz" in tables["b"].error["message"]  # type: ignore[index]


def test_type_conflict_fails_that_table_and_new_columns_are_added(jd: App) -> None:
    first = upload(jd, "c.csv", csv_bytes(FIRST[:2]))
    with running(jd):
        _ingest(jd, table("customers", [first]))
        changed = upload(jd, "c2.csv", b"id,email,tier\n1,x@example.com,gold\n")
        other = upload(jd, "o.csv", b"order_id\n1\n")
        _, tables = _ingest(
            jd, table("customers", [changed], columns={"id": "str", "email": "str"}),
            table("orders", [other], columns={"order_id": "int"}, key=["order_id"]))
        conflict = tables["customers"]
        assert conflict.status == "failed"
        assert conflict.error is not None and conflict.error["code"] == "table_conflict"
        assert "id is int, declared str" in conflict.error["message"]
        assert tables["orders"].status == "succeeded"

        _, tables = _ingest(jd, table("customers", [changed],
                                      columns={"id": "int", "email": "str", "tier": "str"}))
        assert counters(tables["customers"]) == {"read": 1, "inserted": 0, "updated": 1,
                                                 "rejected": 0, "errors": 0}
    data = open_tables(jd.settings.database_url)
    assert data.describe("default", "customers") == {**CUSTOMERS, "tier": "str"}
    rows = {r["id"]: r for r in data.rows("default", "customers")}
    assert rows[1]["tier"] == "gold" and rows[1]["score"] == 1.5  # other columns kept
    assert rows[2]["tier"] is None


def test_invalid_input_is_refused_at_submit(jd: App) -> None:
    from jobdock.errors import InvalidInput

    bad = [
        {"tables": []},
        {"tables": [table("Bad Name", ["x"])]},
        {"tables": [table("t", ["x"], key=["nope"])]},
        {"tables": [table("t", ["x"], columns={"id": "money"})]},
        {"tables": [table("t", ["x"]), table("t", ["y"])]},
    ]
    for body in bad:
        with pytest.raises(InvalidInput):
            jd.submit("ingest", body)


def test_tables_are_per_tenant(jd: App) -> None:
    jd.create_tenant("acme")
    mine = upload(jd, "c.csv", csv_bytes(FIRST[:2]))
    theirs = upload(jd, "c.csv", csv_bytes(FIRST[:1]), tenant="acme")
    with running(jd):
        _ingest(jd, table("customers", [mine]))
        _, tables = _ingest(jd, table("customers", [theirs]), tenant="acme")
        assert counters(tables["customers"])["inserted"] == 1
        # Another tenant's upload is not found from this tenant's job.
        _, tables = _ingest(jd, table("customers", [theirs]))
        assert tables["customers"].status == "failed"
    data = open_tables(jd.settings.database_url)
    assert len(list(data.rows("default", "customers"))) == 2
    assert len(list(data.rows("acme", "customers"))) == 1
