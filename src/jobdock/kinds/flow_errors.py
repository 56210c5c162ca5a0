"""Error records of a flow's import, and their retry data.

A failing record is an error record whose `record` holds the field, the extracted and
the mapped record, and whose retry data names a blob of the job
(`<tenant>/<job>/retry/<retry id>.json`) that holds the extracted record: it can be
read and corrected (`GET/PUT /v1/jobs/{id}/errors/{error_id}/retry-data`), and an
errors retry runs the corrected records again as a new `flow_import` job (the engine's
errors retry: same parent, input plus `records` and `retry_of`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jobdock.errors as errors
from jobdock.blobs import blob_key
from jobdock.ids import new_id
from jobdock.kinds.flow_input import FlowFailed
from jobdock.kinds.flow_steps import jsonable
from jobdock.worker.context import JobContext

ERROR_SOURCE = "jobdock"
# Retry data of a flow import error: {"blob": <key>, "retry_id": <id>}.
RETRY_BLOB = "blob"
RETRY_ID = "retry_id"


def retried_records(ctx: JobContext, items: list[Any]) -> Iterator[dict[str, Any]]:
    for item in items:
        record = read_retry_data(ctx, item)
        if not isinstance(record, dict):
            raise FlowFailed("a record to import again is not a JSON object")
        yield record


def read_retry_data(ctx: JobContext, item: Any) -> Any:
    """The record that a retry data item stands for: its blob's content, or itself."""
    if isinstance(item, dict) and isinstance(item.get(RETRY_BLOB), str):
        try:
            with ctx.open(item[RETRY_BLOB]) as f:
                return json.loads(f.read())
        except (errors.NotFound, PermissionError, FileNotFoundError) as exc:
            raise FlowFailed(f"retry data {item.get(RETRY_ID)!r} no longer exists") from exc
    return item


def record_error(ctx: JobContext, record: dict[str, Any], mapped: dict[str, Any],
                  problem: tuple[str, str, str]) -> None:
    field, reason, code = problem
    retry_id = new_id()
    key = blob_key(ctx.job.tenant_id, ctx.job.id, "retry", f"{retry_id}.json")
    ctx.engine.blobs.put(key, json.dumps(record, ensure_ascii=False, default=jsonable)
                         .encode())
    ctx.error(f"{field}: {reason}" if field else reason, code=code, source=ERROR_SOURCE,
              record={"field": field, "extracted": record, "mapped": mapped},
              retry_data={RETRY_BLOB: key, RETRY_ID: retry_id})
