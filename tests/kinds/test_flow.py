"""The `flow` kind on each store: steps, counters, error records, retry data, cancel."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest

from jobdock import App
from jobdock.errors import InvalidInput
from jobdock.kinds.flow import RETRY_BLOB
from jobdock.store.tables import open_tables
from tests.kinds.flowing import (
    BAD_TOTAL,
    GOOD,
    IGNORED,
    NO_EMAIL,
    flow_input,
    wait_flow,
    wait_job,
)
from tests.kinds.ingesting import csv_bytes, jsonl_bytes, running, upload

COUNTERS = ("exported", "pages", "success", "errors", "ignored")


def counters(*jobs: Any) -> dict[str, int]:
    total = {name: 0 for name in COUNTERS}
    for job in jobs:
        for name in COUNTERS:
            total[name] += job.stats.get(name, 0)
    return total


def rows(jd: App, table: str = "orders", tenant: str = "default") -> list[dict[str, Any]]:
    tables = open_tables(jd.settings.database_url)
    try:
        return list(tables.rows(tenant, table, order_by=["id"]))
    finally:
        tables.close()


SOURCE = [GOOD, IGNORED, NO_EMAIL, BAD_TOTAL,
          {**GOOD, "id": 5, "customer_email": "e@example.com", "total": 3}]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "csv.gz"])
def test_flow_exports_and_imports_an_upload(jd: App, fmt: str) -> None:
    data = jsonl_bytes(SOURCE) if fmt == "jsonl" else csv_bytes(SOURCE)
    if fmt.endswith(".gz"):
        data = gzip.compress(data)
    upload_id = upload(jd, f"orders.{fmt}", data)
    flow = jd.submit("flow", flow_input({"upload": upload_id}, page_size=2))
    with running(jd):
        job, export, imported = wait_flow(jd, flow.id)
    assert job.status == "succeeded" and export.status == "succeeded"
    assert imported is not None and imported.status == "succeeded"
    assert export.parent_id == flow.id and imported.parent_id == flow.id
    assert export.stats.get("exported") == 5 and export.stats.get("pages") == 3
    assert {k: imported.stats.get(k, 0) for k in ("success", "errors", "ignored", "pages")} == {
        "success": 2, "errors": 2, "ignored": 1, "pages": 3}
    labels = {"integration_id": "int-1", "flow_id": "flow-1", "export_id": "exp-flow-1",
              "import_id": "imp-flow-1"}
    assert job.labels == export.labels == imported.labels == labels
    loaded = rows(jd)
    assert [(r["id"], r["email"], float(r["total"])) for r in loaded] == [
        (1, "a@example.com", 9.5), (5, "e@example.com", 3.0)]
    errs = jd.engine.errors("default", imported.id)
    assert [(e.code, e.record["field"]) for e in errs] == [
        ("missing_required_field", "email"), ("type_error", "total")]
    assert errs[0].record["extracted"]["id"] in (3, "3")
    # The import reads the upload itself: the export writes nothing.
    assert jd.engine.store.artifact_list("default", export.id) == []
    assert imported.input["source_upload"] == upload_id
    assert errs[0].record["mapped"]["email"] is None
    for e in errs:
        with jd.engine.blobs.open(e.retry_data[RETRY_BLOB]) as f:
            assert json.loads(f.read()) == e.record["extracted"]


def test_flow_reads_a_table_and_retries_corrected_errors(jd: App) -> None:
    # First a flow that fills `source_orders` from an upload, then a flow from that table.
    first = flow_input({"upload": upload(jd, "o.jsonl", jsonl_bytes(
        [{"id": i, "customer_email": f"{i}@x", "total": i, "placed_at": None,
          "status": "paid"} for i in range(1, 8)]))}, table="source_orders")
    first["import"]["mapping"] = {}
    first["import"]["columns"] = {"id": "int", "customer_email": "str", "total": "str",
                                  "status": "str"}
    first["import"]["required"] = []
    source = jd.submit("flow", first)
    with running(jd):
        wait_flow(jd, source.id)
        # total "7" will fail: make it text in the source so one record is bad.
        spec = flow_input({"table": "source_orders"}, page_size=3, flow_id="flow-2")
        spec["import"]["columns"]["total"] = "int"
        spec["import"]["ignore_if"] = {"id": 2}
        flow = jd.submit("flow", spec)
        _, export, imported = wait_flow(jd, flow.id)
        assert export.stats["exported"] == 7 and export.stats["pages"] == 3
        assert imported is not None
        assert (imported.stats.get("success"), imported.stats.get("ignored", 0),
                imported.stats.get("errors", 0)) == (6, 1, 0)

        # A flow whose records fail, corrected through the retry data, then retried.
        bad = flow_input({"upload": upload(jd, "bad.csv", csv_bytes([NO_EMAIL, BAD_TOTAL]))},
                         flow_id="flow-3", table="fixed")
        flow = jd.submit("flow", bad)
        _, _, imported = wait_flow(jd, flow.id)
        assert imported is not None and imported.stats.get("errors") == 2, imported.error
        errs = jd.engine.errors("default", imported.id)
        fixes = {"missing_required_field": {"customer_email": "c@example.com"},
                 "type_error": {"total": "4.25"}}
        for e in errs:
            key = e.retry_data[RETRY_BLOB]
            with jd.engine.blobs.open(key) as f:
                record = json.loads(f.read())
            jd.engine.blobs.put(key, json.dumps({**record, **fixes[e.code or ""]}).encode())
        retry = jd.engine.retry_errors("default", imported.id)
        assert retry.kind == "flow_import" and retry.parent_id == flow.id
        assert retry.labels["retry_of"] == imported.id
        done = wait_job(jd, retry.id)
    assert done.status == "succeeded", done.error
    assert (done.stats.get("success"), done.stats.get("errors", 0)) == (2, 0)
    assert all(e.retried for e in jd.engine.errors("default", imported.id))
    by_id = {r["id"]: r for r in rows(jd, "fixed")}
    assert by_id[3]["email"] == "c@example.com" and float(by_id[4]["total"]) == 4.25


def test_a_retry_that_fails_again_records_new_errors(jd: App) -> None:
    flow = jd.submit("flow", flow_input({"upload": upload(jd, "b.csv", csv_bytes([NO_EMAIL]))}))
    with running(jd):
        _, _, imported = wait_flow(jd, flow.id)
        assert imported is not None
        retry = jd.engine.retry_errors("default", imported.id)
        done = wait_job(jd, retry.id)
    assert done.status == "succeeded" and done.stats.get("errors") == 1
    [again] = jd.engine.errors("default", retry.id)
    assert again.code == "missing_required_field" and not again.retried


def test_a_missing_upload_fails_the_export(jd: App) -> None:
    flow = jd.submit("flow", flow_input({"upload": "0" * 24}))
    with running(jd):
        _job, export, imported = wait_flow(jd, flow.id)
    assert export.status == "failed" and imported is None
    assert export.error and export.error["code"] == "flow_failed"


def test_invalid_inputs_are_refused(jd: App) -> None:
    spec = flow_input({"upload": "0" * 24})
    for change in ({"export": {**spec["export"], "source": {}}},
                   {"import": {**spec["import"], "required": ["nope"]}},
                   {"import": {**spec["import"], "primary_key": ["nope"]}}):
        with pytest.raises(InvalidInput):
            jd.submit("flow", {**spec, **change})


def test_cancel_stops_between_pages(jd: App) -> None:
    many = [{**GOOD, "id": i} for i in range(1, 3001)]
    flow = jd.submit("flow", flow_input({"upload": upload(jd, "m.jsonl", jsonl_bytes(many))},
                                        page_size=1))
    with running(jd):
        deadline = time.monotonic() + 60
        imported = None
        while time.monotonic() < deadline:
            found = {c.kind: c for c in jd.children(flow.id)}
            imported = found.get("flow_import")
            # Progress counts the records read; the counters move once pages are committed.
            if imported is not None and (imported.progress or {}).get("done", 0) > 5:
                break
            time.sleep(0.01)
        assert imported is not None
        jd.engine.cancel("default", imported.id)
        done = wait_job(jd, imported.id)
    assert done.status == "canceled"
    assert 0 < done.stats["success"] < 3000
    assert len(rows(jd)) == done.stats["success"] == done.stats["pages"]


def test_a_table_with_dates_and_times_flows_into_another(jd: App) -> None:
    first = jd.submit("flow", flow_input({"upload": upload(jd, "o.jsonl", jsonl_bytes(
        [GOOD, {**GOOD, "id": 2, "placed_at": None}]))}))
    with running(jd):
        wait_flow(jd, first.id)
        spec = flow_input({"table": "orders"}, flow_id="copy", table="orders_copy")
        spec["import"]["mapping"] = {}
        second = jd.submit("flow", spec)
        _, export, imported = wait_flow(jd, second.id)
    assert export.stats["exported"] == 2 and imported is not None
    assert imported.stats.get("success") == 2, jd.engine.errors("default", imported.id)
    assert [(r["id"], str(r["placed_at"])[:19].replace(" ", "T")) for r in rows(
        jd, "orders_copy")] == [(1, "2024-01-01T10:00:00"), (2, "None")]


def test_mappings_reach_into_objects_and_errors_show_the_mapped_record(jd: App) -> None:
    nested = [{"id": 1, "customer": {"email": "a@example.com"}, "total": 1, "note": "x"},
              {"id": 2, "customer": {"name": "no email"}, "total": 2},
              {"id": 3, "customer.email": "flat@example.com", "total": 3},
              {"id": 4, "customer": "not an object", "total": 4}]
    spec = flow_input({"upload": upload(jd, "n.jsonl", jsonl_bytes(nested))})
    spec["import"]["mapping"] = {"email": "customer.email"}
    spec["import"]["ignore_if"] = {}
    # Without a mapping each column reads the field of its own name.
    plain = flow_input({"upload": upload(jd, "p.jsonl", jsonl_bytes(
        [{"id": 5, "email": "p@example.com", "total": "1.5", "extra": 1},
         {"id": 6, "total": 2}]))}, flow_id="plain", table="plain")
    plain["import"]["mapping"] = {}
    with running(jd):
        _, _, imported = wait_flow(jd, jd.submit("flow", spec).id)
        _, _, plain_import = wait_flow(jd, jd.submit("flow", plain).id)
    assert imported is not None and plain_import is not None
    assert [(r["id"], r["email"]) for r in rows(jd)] == [(1, "a@example.com"),
                                                        (3, "flat@example.com")]
    errs = jd.engine.errors("default", imported.id)
    assert [(e.record["extracted"]["id"], e.record["mapped"]) for e in errs] == [
        (2, {"id": 2, "email": None, "total": 2, "placed_at": None}),
        (4, {"id": 4, "email": None, "total": 4, "placed_at": None})]
    assert [(r["id"], r["email"], r["total"]) for r in rows(jd, "plain")] == [
        (5, "p@example.com", 1.5)]
    [err] = jd.engine.errors("default", plain_import.id)
    assert err.code == "missing_required_field"
    assert err.record["mapped"] == {"id": 6, "email": None, "total": 2, "placed_at": None}


TRICKY = {
    "int": ["12", "-7", "007", "+5", " 12", "12 ", "1_000", "1.0", "1e3", "", "x", "٣",
            "9" * 18, "9" * 19, "-9223372036854775808", "9223372036854775808"],
    "float": ["1.5", "-0", ".5", "5.", "1e3", "1.5E-3", "1e999", "-1e999", "nan", "inf",
              " 2.5", "1_0.5", "0x10", "", "1e-400", "123456789012345678901234567890"],
    "date": ["2024-02-29", "2023-02-29", "0999-01-01", "2024-1-01", "2024-13-01",
             "2024-W01-1", " 2024-01-01", "20240101", ""],
    "bool": ["true", "FALSE", "t", "F", "1", "0", "yes", "No", " true", "2", ""],
    "str": ["text", "", "with\x00nul", "ünïcode"],
}


@pytest.mark.parametrize("kind", list(TRICKY))
def test_a_page_typed_at_once_matches_the_record_check(kind: str) -> None:
    # A page typed at once (Arrow) either gives exactly the rows of the per-record check
    # or is left to it (None); never other values.
    from jobdock.kinds.flow import ImportSpec, Mapper

    mapper = Mapper(ImportSpec(import_id="i", table="t", primary_key=["id"],
                               columns={"id": "int", "c": kind}))
    for value in [*TRICKY[kind], None]:
        record = {"id": "1", "c": value}
        row, problem = mapper.check(record)
        batch = mapper.typed_page([record])
        if batch is not None:
            assert problem is None and row is not None, value
            got = batch.to_pylist()[0]["c"]
            assert got == row[1] and type(got) is type(row[1]), value
    # Ordinary text is typed at once; a missing key leaves the page to the records.
    plain = {"int": ["1", "-2"], "float": ["1.5", "2"], "date": ["2024-01-02"],
             "bool": ["true", "0"], "str": ["a", ""]}[kind]
    records = [{"id": str(i), "c": v} for i, v in enumerate([*plain, None])]
    batch = mapper.typed_page(records)
    assert batch is not None
    assert [tuple(r.values()) for r in batch.to_pylist()] == [
        mapper.check(r)[0] for r in records]
    assert mapper.typed_page([*records, {"id": None, "c": None}]) is None


def test_repeated_keys_in_a_page_keep_the_last_record(jd: App) -> None:
    good = [{**GOOD, "id": 1, "total": "1"}, {**GOOD, "id": 2, "total": "2"},
            {**GOOD, "id": 1, "total": "3"}]
    with_bad = [*good, BAD_TOTAL]  # a page with an error: its good records at once
    with running(jd):
        # "paged": a page per record, typed at once and written together in one load;
        # "lines": a page per JSONL record, staged into one load until a key repeats.
        for name, source, size, fmt in (("typed", good, 100, "csv"),
                                        ("checked", with_bad, 100, "csv"),
                                        ("paged", good, 1, "csv"), ("lines", good, 1, "jsonl")):
            data = csv_bytes(source) if fmt == "csv" else jsonl_bytes(source)
            spec = flow_input({"upload": upload(jd, f"{name}.{fmt}", data)},
                              flow_id=name, table=name, page_size=size)
            _, _, imported = wait_flow(jd, jd.submit("flow", spec).id)
            assert imported is not None and imported.stats["success"] == 3
            assert [(r["id"], float(r["total"])) for r in rows(jd, name)] == [
                (1, 3.0), (2, 2.0)]


def test_keys_out_of_order_across_the_pages_of_a_load(jd: App) -> None:
    # A load tells a repeated key by its greatest key while keys ascend, then by a set.
    ids = [5, 6, 9, 1, 7, 6, 2, 5]
    source = [{**GOOD, "id": i, "total": str(n)} for n, i in enumerate(ids)]
    spec = flow_input({"upload": upload(jd, "mixed.jsonl", jsonl_bytes(source))}, page_size=2)
    with running(jd):
        _, _, imported = wait_flow(jd, jd.submit("flow", spec).id)
    assert imported is not None and imported.stats["success"] == len(ids)
    last = {i: float(n) for n, i in enumerate(ids)}
    assert [(r["id"], float(r["total"])) for r in rows(jd)] == sorted(last.items())


def test_a_csv_flows_as_arrow_columns_with_exact_errors(jd: App) -> None:
    source = [{**GOOD, "id": 1}, {**GOOD, "id": 2, "total": "2"},  # page 1: typed at once
              {**GOOD, "id": 3}, NO_EMAIL,  # page 2: record by record
              {**GOOD, "id": 1, "total": "5"}]  # page 3: the key again, later
    spec = flow_input({"upload": upload(jd, "orders.csv", csv_bytes(source))}, page_size=2)
    spec["import"]["ignore_if"] = {}
    empty = flow_input({"upload": upload(jd, "empty.csv", b"id,customer_email\n")},
                       flow_id="empty", table="empty")
    with running(jd):
        _, export, imported = wait_flow(jd, jd.submit("flow", spec).id)
        _, empty_export, empty_import = wait_flow(jd, jd.submit("flow", empty).id)
    # A plain CSV upload: the import reads it itself, nothing is written in between.
    assert jd.engine.store.artifact_list("default", export.id) == []
    assert imported is not None and imported.input["source_upload"] == spec["export"][
        "source"]["upload"]
    assert imported is not None and counters(export, imported) == {
        "exported": 5, "pages": 6, "success": 4, "errors": 1, "ignored": 0}
    assert [(r["id"], float(r["total"])) for r in rows(jd)] == [(1, 5.0), (2, 2.0), (3, 9.5)]
    [err] = jd.engine.errors("default", imported.id)
    assert err.code == "missing_required_field" and err.record["extracted"]["id"] == "3"
    with jd.engine.blobs.open(err.retry_data[RETRY_BLOB]) as f:
        assert json.loads(f.read()) == err.record["extracted"]
    assert empty_import is not None and empty_import.status == "succeeded"
    assert counters(empty_export, empty_import)["exported"] == 0


def test_a_big_csv_read_in_arrow_blocks_then_by_the_csv_module(jd: App) -> None:
    # Past 4 MB the readers give Arrow blocks; a short line near the end sends the rest
    # to the csv module. Pages, counters, error records and rows stay exact.
    n = 90_000
    note = b"x" * 40  # ~80 bytes a line: two blocks of 4 MB
    lines = [b"id,customer_email,total,placed_at,status,note"]
    lines += [b"%d,c%d@example.com,%d.5,,paid,%s" % (i, i, i, note) for i in range(1, n + 1)]
    lines[n - 10] = b"bad,line"  # line n - 9 of the file: id n - 10 is missing
    lines[n - 5] = b'%d,"two\nlines@example.com",1,,paid,' % (n - 5)
    spec = flow_input({"upload": upload(jd, "big.csv", b"\n".join(lines) + b"\n")},
                      page_size=7_000)
    spec["import"]["ignore_if"] = {}
    with running(jd):
        _, export, imported = wait_flow(jd, jd.submit("flow", spec).id, timeout_s=120)
    assert imported is not None, export.error
    assert counters(export, imported) == {"exported": n - 1, "pages": 2 * 13,
                                          "success": n - 1, "errors": 1, "ignored": 0}
    [bad] = jd.engine.errors("default", export.id)
    assert bad.code == "bad_record" and bad.record["line"] == n - 9
    loaded = rows(jd)
    assert len(loaded) == n - 1 and loaded[-1]["id"] == n and loaded[-1]["total"] == n + 0.5
    assert {r["id"]: r["email"] for r in loaded}[n - 5] == "two\nlines@example.com"


@pytest.mark.parametrize("ignore_if", [
    {"status": "test"}, {"n": 5}, {"b": True}, {"status": None}, {"nope": None},
    {"nope": "x"}, {"status": "test", "n": 5}, {"status.x": None}, {"n": 5.5}])
def test_ignore_if_on_arrow_columns_matches_the_record_check(ignore_if: dict[str, Any]
                                                             ) -> None:
    import pyarrow as pa

    from jobdock.kinds.flow import ImportSpec, Mapper

    records = [{"id": str(i), "status": s, "n": n, "b": b} for i, (s, n, b) in enumerate([
        ("test", "5", "true"), ("paid", "5", "false"), (None, None, None),
        ("None", "5.5", "True"), ("test", "6", "true"), ("", "5", None)])]
    page = pa.RecordBatch.from_pylist(records)
    mapper = Mapper(ImportSpec(import_id="i", table="t", primary_key=["id"],
                               columns={"id": "int"}, ignore_if=ignore_if))
    assert mapper.not_ignored(page).to_pylist() == [
        r for r in records if not mapper.ignored(r)]


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "records"])
def test_a_page_with_failing_records_types_its_good_ones_at_once(arrow: bool) -> None:
    # checked_page gives exactly what the record check gives, record by record: the rows
    # (the last of each key), the failing records in order with their problems, ignored.
    import pyarrow as pa

    from jobdock.kinds.flow import ImportSpec, Mapper
    from jobdock.kinds.flow_mapping import checked_page

    mapper = Mapper(ImportSpec(
        import_id="i", table="t", primary_key=["id"], mapping={"email": "customer_email"},
        columns={"id": "int", "email": "str", "total": "float", "day": "date",
                 "at": "datetime", "ok": "bool"},
        required=["id", "email"], ignore_if={"status": "test"}))
    bad: dict[int, tuple[str, list[Any]]] = {
        37: ("total", TRICKY["float"]), 41: ("day", TRICKY["date"]),
        53: ("customer_email", [None, ""]), 59: ("status", ["test"]),
        61: ("id", TRICKY["int"]), 67: ("at", ["2024-13-01T00:00:00", "soon", " 2024"]),
        71: ("ok", TRICKY["bool"]), 1009: ("total", ["1e999"])}
    records = []
    for i in range(3_000):
        record = {"id": str(i % 2_500), "customer_email": f"c{i}@example.com",
                  "total": f"{i}.5", "day": "2024-01-02", "at": "2024-01-01T10:00:00Z",
                  "ok": "true", "status": "paid"}
        for every, (name, values) in bad.items():
            if i % every == 0:
                record[name] = values[i // every % len(values)]
        records.append(record)
    rows: dict[Any, Any] = {}
    failures, ignored = [], 0
    for record in records:
        if mapper.ignored(record):
            ignored += 1
            continue
        row, problem = mapper.check(record)
        if problem is None and row is not None:
            rows[row[0]] = row
        else:
            failures.append((record, problem))
    assert failures and ignored and len(rows) > 2_000
    page: Any = records
    if arrow:
        page = pa.RecordBatch.from_pylist(records, schema=pa.schema(
            [(name, pa.string()) for name in records[0]]))
    batch, got_failures, got_ignored = checked_page(mapper, page)
    assert got_ignored == ignored
    assert got_failures == failures
    assert batch is not None
    got = sorted((tuple(r.values()) for r in batch.to_pylist()), key=lambda r: r[0])
    assert got == sorted(rows.values(), key=lambda r: r[0])


def test_an_import_queued_by_an_earlier_export_reads_its_artifacts(jd: App) -> None:
    # Exports before the import read uploads itself wrote records.arrow (a CSV's text
    # columns, a batch per page) or records.jsonl: an import naming one still reads it.
    import pyarrow as pa

    from jobdock.blobs import blob_key

    spec = flow_input({"upload": "0" * 24})
    records = [{"id": "1", "customer_email": "a@x", "total": "1.5", "status": "paid"},
               {"id": "2", "customer_email": None, "total": "2", "status": "paid"}]
    page = pa.RecordBatch.from_pylist(records)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, page.schema) as writer:
        writer.write_batch(page)
    jobs = []
    for name, data in (("records.arrow", sink.getvalue().to_pybytes()),
                       ("records.jsonl", b"\n".join(json.dumps(r).encode() for r in records))):
        key = blob_key("default", "earlier-export", "artifacts", name)
        jd.engine.blobs.put(key, data)
        jobs.append(jd.submit("flow_import", {
            "integration_id": "int-1", "flow_id": "flow-1", "export_id": "exp-flow-1",
            "import": {**spec["import"], "table": name.replace(".", "_")},
            "page_size": 100, "source_blob": key}))
    with running(jd):
        done = [wait_job(jd, job.id) for job in jobs]
    for job in done:
        assert job.status == "succeeded", job.error
        assert (job.stats.get("success"), job.stats.get("errors")) == (1, 1)


def test_a_canceled_export_cancels_the_import_reading_its_upload(jd: App) -> None:
    # The import of an upload is submitted as its export starts: an export that sees a
    # cancel cancels that import too. The export runs here in this thread, asked to
    # stop before its first page (a running flow's export ends too fast to catch).
    from jobdock.errors import JobCanceled
    from jobdock.kinds.flow import FlowExportInput, flow_export
    from jobdock.worker.context import JobContext

    spec = flow_input({"upload": upload(jd, "o.csv", csv_bytes(SOURCE))})
    export = jd.submit("flow_export", spec)
    ctx = JobContext(export, jd.worker())
    ctx._request_cancel()
    with pytest.raises(JobCanceled):
        flow_export(ctx, FlowExportInput.model_validate(spec))
    [imported] = [j for j in jd.list(page_size=10).items if j.kind == "flow_import"]
    assert imported.status == "canceled"
    assert imported.input["source_upload"] == spec["export"]["source"]["upload"]
