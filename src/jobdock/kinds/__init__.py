"""Built-in job kinds, registered in every App.

Each kind's module (its function and pydantic input model) is imported when the
kind is first used: at a submit (validation), by GET /v1/kinds (the schema) or
when a worker runs one of its jobs. A worker that only runs other kinds never
loads them: the flow and ingest modules, with their pydantic models, took each
worker process 11-13 ms to import (pydantic itself aside).
"""

from __future__ import annotations

from typing import Any

from jobdock.engine import KindSpec, imported
from jobdock.worker.runner import JobFunction

# How often a webhook delivery is tried before it fails (with backoff between tries).
WEBHOOK_MAX_ATTEMPTS = 8

_SLEEP = "jobdock.kinds.sleep"
_WEBHOOK = "jobdock.kinds.webhook"
_INGEST = "jobdock.kinds.ingest"
_FLOW = "jobdock.kinds.flow"


def later(ref: str) -> Any:
    """A stand-in for the function "module:attribute" names, imported at its first call."""
    def call(*args: Any) -> Any:
        return imported(ref)(*args)

    call.__qualname__ = call.__name__ = ref.partition(":")[2]
    return call


BUILTIN: list[tuple[KindSpec, JobFunction]] = [
    (KindSpec("sleep", max_attempts=1, input_model_ref=f"{_SLEEP}:SleepInput",
              description="Sleep with progress; honours cancel. For demos and health checks."),
     later(f"{_SLEEP}:sleep")),
    (KindSpec("webhook", max_attempts=WEBHOOK_MAX_ATTEMPTS, timeout_s=60,
              input_model_ref=f"{_WEBHOOK}:WebhookInput",
              description="Deliver a signed job event to a webhook subscription (Standard"
              " Webhooks headers); retried with backoff until the receiver answers 2xx."),
     later(f"{_WEBHOOK}:deliver")),
    (KindSpec("ingest", input_model_ref=f"{_INGEST}:IngestInput",
              description="Load uploaded CSV, JSONL, Parquet or Avro files (optionally gzipped)"
              " into the tenant's tables: one ingest_table child job per table."),
     later(f"{_INGEST}:ingest")),
    (KindSpec("ingest_table", input_model_ref=f"{_INGEST}:IngestTableInput",
              description="Load one table of an ingest; counts read, inserted, updated,"
              " rejected (duplicate keys) and errors, per table and per file."),
     later(f"{_INGEST}:ingest_table")),
    (KindSpec("flow", input_model_ref=f"{_FLOW}:FlowInput", labels_of=later(f"{_FLOW}:flow_labels"),
              description="An integration flow: an export step (records from an upload or a"
              " table, in pages) then an import step (map, validate, upsert into a table),"
              " as flow_export and flow_import child jobs."),
     later(f"{_FLOW}:flow")),
    (KindSpec("flow_export", input_model_ref=f"{_FLOW}:FlowExportInput",
              labels_of=later(f"{_FLOW}:flow_labels"),
              description="Step 0 of a flow: submits the flow_import step, then reads the"
              " source in pages and counts exported records and pages. The import reads an"
              " upload itself, at the same time; a table source is copied for it into"
              " records.jsonl."),
     later(f"{_FLOW}:flow_export")),
    (KindSpec("flow_import", input_model_ref=f"{_FLOW}:FlowImportInput",
              labels_of=later(f"{_FLOW}:flow_labels"),
              description="Step 1 of a flow: read the exported records (the upload itself,"
              " or records.jsonl) a page at a time; map, check and upsert them; counts"
              " success, errors (with retry data), ignored, pages."),
     later(f"{_FLOW}:flow_import")),
]
