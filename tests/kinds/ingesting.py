"""Helpers of the ingest tests: files of every format, a worker thread, waiting."""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from jobdock import App
from jobdock.files import create_upload
from jobdock.model import Job
from jobdock.store.tables import open_tables

TENANTS = ("default", "acme", "other")


def make_app(database_url: str, tmp_path: Path) -> App:
    return App(database_url=database_url, blob_url=f"file://{tmp_path / 'blobs'}",
               data_dir=str(tmp_path / "data"), poll_interval_s=0.05, heartbeat_interval_s=0.1,
               flush_interval_s=0.02, maintenance_interval_s=0.1)


def drop_data(database_url: str) -> None:
    """Drop the test tenants' data areas (PostgreSQL schemas outlive the test's schema)."""
    tables = open_tables(database_url)
    for tenant in TENANTS:
        tables.drop_area(tenant)


@contextmanager
def running(jd: App) -> Iterator[None]:
    worker = jd.worker(concurrency=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        worker.stop()
        thread.join(10)


def wait_ingest(jd: App, job_id: str, tenant: str = "default",
                timeout_s: float = 30.0) -> tuple[Job, list[Job]]:
    """The ingest job once it and all its children are terminal."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = jd.get(job_id, tenant=tenant)
        children = jd.children(job_id, tenant=tenant)
        if job.terminal and all(c.terminal for c in children) and (
                children or job.status != "succeeded"):
            return job, children
        if time.monotonic() > deadline:
            pytest.fail(f"ingest {job_id} did not finish: {job.status},"
                        f" {[c.status for c in children]}")
        time.sleep(0.05)


def upload(jd: App, name: str, data: bytes, tenant: str = "default") -> str:
    return create_upload(jd.engine, tenant, name, [data]).id


def table(name: str, files: list[str], columns: dict[str, str] | None = None,
          key: list[str] | None = None, feed_id: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"table_name": name, "primary_key": key or ["id"],
                            "columns": columns or CUSTOMERS, "files": files}
    if feed_id:
        spec["feed_id"] = feed_id
    return spec


def by_table(children: list[Job]) -> dict[str, Job]:
    return {c.input["table_name"]: c for c in children}


CUSTOMERS = {"id": "int", "email": "str", "score": "float", "joined": "date"}
COUNTERS = ("read", "inserted", "updated", "rejected", "errors")


def counters(job: Job) -> dict[str, int]:
    return {name: job.stats.get(name, 0) for name in COUNTERS}


# -- files of each format ------------------------------------------------------
def csv_bytes(rows: list[dict[str, Any]], header: list[str] | None = None) -> bytes:
    out = io.StringIO()
    fields = header or list(rows[0])
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue().encode()


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out, row_group_size=2)
    return out.getvalue()


def avro_bytes(rows: list[dict[str, Any]]) -> bytes:
    import fastavro

    def kind(name: str) -> Any:
        values = [r[name] for r in rows if r.get(name) is not None]
        if values and all(isinstance(v, int) for v in values):
            return ["null", "long"]
        if values and all(isinstance(v, int | float) for v in values):
            return ["null", "double"]
        return ["null", "string"]

    names = list(rows[0])
    schema = {"type": "record", "name": "Row",
              "fields": [{"name": n, "type": kind(n), "default": None} for n in names]}
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), rows)
    return out.getvalue()


WRITERS = {"csv": csv_bytes, "jsonl": jsonl_bytes, "parquet": parquet_bytes, "avro": avro_bytes}


def gz(data: bytes) -> bytes:
    return gzip.compress(data)
