"""Built-in job kinds, registered in every App."""

from __future__ import annotations

from jobdock.engine import KindSpec
from jobdock.kinds.flow import (
    FlowExportInput,
    FlowImportInput,
    FlowInput,
    flow,
    flow_export,
    flow_import,
    flow_labels,
)
from jobdock.kinds.ingest import IngestInput, IngestTableInput, ingest, ingest_table
from jobdock.kinds.sleep import SleepInput, sleep
from jobdock.kinds.webhook import MAX_ATTEMPTS, WebhookInput, deliver
from jobdock.worker.runner import JobFunction

BUILTIN: list[tuple[KindSpec, JobFunction]] = [
    (KindSpec("sleep", max_attempts=1, input_model=SleepInput,
              description="Sleep with progress; honours cancel. For demos and health checks."),
     sleep),
    (KindSpec("webhook", max_attempts=MAX_ATTEMPTS, timeout_s=60, input_model=WebhookInput,
              description="Deliver a signed job event to a webhook subscription (Standard"
              " Webhooks headers); retried with backoff until the receiver answers 2xx."),
     deliver),
    (KindSpec("ingest", input_model=IngestInput,
              description="Load uploaded CSV, JSONL, Parquet or Avro files (optionally gzipped)"
              " into the tenant's tables: one ingest_table child job per table."),
     ingest),
    (KindSpec("ingest_table", input_model=IngestTableInput,
              description="Load one table of an ingest; counts read, inserted, updated,"
              " rejected (duplicate keys) and errors, per table and per file."),
     ingest_table),
    (KindSpec("flow", input_model=FlowInput, labels_of=flow_labels,
              description="An integration flow: an export step (records from an upload or a"
              " table, in pages) then an import step (map, validate, upsert into a table),"
              " as flow_export and flow_import child jobs."),
     flow),
    (KindSpec("flow_export", input_model=FlowExportInput, labels_of=flow_labels,
              description="Step 0 of a flow: read the source in pages into records.arrow"
              " (a plain CSV upload) or records.jsonl (any other source); counts exported"
              " and pages; submits the flow_import step."),
     flow_export),
    (KindSpec("flow_import", input_model=FlowImportInput, labels_of=flow_labels,
              description="Step 1 of a flow: map, check and upsert the exported records a"
              " page at a time; counts success, errors (with retry data), ignored, pages."),
     flow_import),
]
