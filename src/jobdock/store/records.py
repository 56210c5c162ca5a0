"""Job records: a job as the native API writes it, in plain JSON values.

The API's list pages are made of these. The stores build a page of them in SQL,
as one JSON text (times already RFC 3339 text, JSON columns embedded), which is
parsed once here: no `Job` and no model per job, which were most of a page's
time. `job_record` makes the same record from a `Job`, for pages the SQL cannot
write exactly (see the stores); tests check that both give the same bytes as
the API's `JobOut` model.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobdock.model import Job

__all__ = ["RECORD_FIELDS", "Record", "job_record", "records_of", "rfc3339"]

Record = dict[str, Any]

# JobOut's fields, in its order (lease_expires_at and worker_id are not shown).
RECORD_FIELDS = (
    "id", "tenant_id", "app_id", "seq", "kind", "name", "status", "priority", "input",
    "result", "error", "stats", "progress", "labels", "parent_id", "attempt", "max_attempts",
    "run_at", "timeout_s", "retention_s", "idempotency_key", "created_at", "started_at",
    "finished_at", "updated_at", "expires_at",
)  # fmt: skip
TIME_FIELDS = ("run_at", "created_at", "started_at", "finished_at", "updated_at", "expires_at")
_MAPS = ("stats", "progress", "labels")


def rfc3339(value: datetime) -> str:
    """`value` in UTC, as RFC 3339 with microseconds and a `Z`."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _rfc3339_or_none(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def job_record(job: Job, time: Callable[[datetime | None], Any] = _rfc3339_or_none) -> Record:
    """`job` as the API writes it; `time` gives each time's value (RFC 3339 text by
    default; the API's GET hands some to its encoder as they are)."""
    record: Record = {name: getattr(job, name) for name in RECORD_FIELDS}
    record["status"] = str(job.status)
    for name in TIME_FIELDS:
        record[name] = time(record[name])
    if job.timeout_s is not None:
        record["timeout_s"] = float(job.timeout_s)
    return record


def records_of(text: str | None) -> list[Record]:
    """The records of a page's JSON array (None: no rows), with what SQL leaves to do:
    `timeout_s` comes as the text of the float (exact, and JSON has no -0.0, NaN or
    Infinity), and counters, progress and labels are `{}` when empty, as `Job` has
    them. ValueError when the text is not JSON that pydantic-core reads (then the
    caller takes the rows through `Job`)."""
    if text is None:
        return []
    # Imported here: the API reads pages and has it loaded; a worker never reads one.
    from pydantic_core import from_json

    records: list[Record] = from_json(text, cache_strings="keys")  # values rarely repeat
    for record in records:
        if record["timeout_s"] is not None:
            record["timeout_s"] = float(record["timeout_s"])
        for name in _MAPS:
            if not record[name]:
                record[name] = {}
    return records
