"""PostgreSQL store: psycopg 3 with a connection pool; SQL in postgres_queries.sql.

Every table lives in the connection's `current_schema()` (the URL's search_path),
so several jobdock instances, or tests, can share a database one schema each;
the LISTEN/NOTIFY channel and the advisory-lock keys are derived from the schema
name for the same reason.

Pool connections run in autocommit: a single statement is its own transaction
(no BEGIN/COMMIT round trips), and methods that need several statements to be
atomic open `conn.transaction()` explicitly. Driver errors are translated into
`jobdock.errors` at this boundary; nothing above the store sees psycopg.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import select
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from functools import cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from jobdock.errors import (
    AlreadyExists,
    IdempotencyConflict,
    InvalidInput,
    JobdockError,
    StoreError,
    StoreUnavailable,
    TenantNotFound,
)
from jobdock.model import (
    EMPTY,
    TERMINAL,
    Artifact,
    Attempt,
    Completion,
    Job,
    JobErrorRecord,
    JobQuery,
    JobStatus,
    NewJob,
    Outcome,
    ProgressUpdate,
    RescueResult,
    Tenant,
)
from jobdock.store.base import (
    HeartbeatResult,
    InsertResult,
    QueueWaiter,
    Store,
    index_walks,
    merge_progress,
    one_report_per_job,
)
from jobdock.store.json_columns import fast_loads
from jobdock.store.postgres_access import PostgresAccess
from jobdock.store.queries import load_queries, migration_files
from jobdock.store.records import Record, job_record, records_of

__all__ = ["PostgresStore"]

Row = dict[str, Any]
Params = Mapping[str, Any] | Sequence[Any]

_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
# The columns job_get and job_list read, in Job's field order: their rows are
# plain tuples made into a Job positionally (no dict per row). The jsonb columns
# are read as text and decoded by _job_of_tuple (see there).
_JSON_FIELDS = ("input", "result", "error", "stats", "progress", "labels")
JOB_COLUMNS = ", ".join(f"j.{name}::text" if name in _JSON_FIELDS else f"j.{name}"
                        for name in _JOB_FIELDS)
_JSON_AT = [_JOB_FIELDS.index(name) for name in _JSON_FIELDS]
_Q = {name: query.replace("{cols}", JOB_COLUMNS)
      for name, query in load_queries("postgres_queries.sql").items()}

# How long a caller waits for a pooled connection before StoreUnavailable.
_POOL_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5
# A claim whose candidates were all locked by other workers' claims tries again
# this many times, after 1, 2, 3... ms (those claims commit within milliseconds,
# and the next jobs become the candidates), before reporting an empty queue.
_CLAIM_TRIES = 10
_CLAIM_RETRY_S = 0.001
# Identifiers (and so LISTEN channels) are at most 63 bytes in PostgreSQL.
_MAX_IDENTIFIER = 63
_FK_KEY = re.compile(r"\(tenant_id\)=\((.*)\)")
# Below this many jobs (or when any has an idempotency key) an insert is one
# unnest statement; above it, COPY (a few more round trips, cheaper per row).
_COPY_MIN_JOBS = 200
# The types of the columns `jobs_copy` names, in its order (binary COPY sends
# each value in its column's exact binary format).
_COPY_TYPES = [
    "text", "text", "text", "int8", "text", "text", "text", "int4", "jsonb", "jsonb",
    "text", "int4", "int4", "timestamptz", "float8", "int8", "text", "timestamptz", "timestamptz",
]  # fmt: skip
# One encoder for every JSON value sent (json.dumps with options builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class PostgresStore(PostgresAccess, Store):
    """The PostgreSQL implementation of `Store` (see base.py for the contract)."""

    backend = "postgres"

    def __init__(self, url: str, pool_max: int = 10, **ignored: object) -> None:
        self._url = url
        self._schema: str | None = None
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            # maintenance_lock() keeps one connection for its whole block while
            # the maintenance inside it needs another.
            max_size=max(2, pool_max),
            kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT_S},
            configure=_configure,
            # Connections broken by a server restart are replaced, not handed out.
            check=_check_connection,
            timeout=_POOL_TIMEOUT_S,
            name="jobdock",
            open=True,
        )

    # -- plumbing ------------------------------------------------------------
    @contextmanager
    def _conn(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; psycopg errors raised while it is held are translated."""
        try:
            with self._pool.connection(timeout=timeout) as conn:
                yield conn
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    @staticmethod
    def _rows(conn: psycopg.Connection[Any], query: Any, params: Params | None = None) -> list[Row]:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def _one(self, query: str, params: Params | None = None) -> Row | None:
        with self._conn() as conn:
            rows = self._rows(conn, query, params)
        return rows[0] if rows else None

    def _schema_name(self, conn: psycopg.Connection[Any]) -> str:
        """current_schema(), asked once on the connection the caller already holds."""
        if self._schema is None:
            rows = self._rows(conn, _Q["schema_name"])
            schema = rows[0]["schema"] if rows else None
            if schema is None:
                raise StoreError(
                    "the database URL's search_path names no existing schema;"
                    " create the schema first or fix the search_path option"
                )
            self._schema = str(schema)
        return self._schema

    def _channel(self, conn: psycopg.Connection[Any]) -> str:
        return _channel_for(self._schema_name(conn))

    def _lock_key(self, purpose: str, conn: psycopg.Connection[Any]) -> int:
        return _advisory_key(purpose, self._schema_name(conn))

    # -- lifecycle ---------------------------------------------------------
    def migrate(self) -> list[int]:
        applied: list[int] = []
        with self._conn() as conn:
            key = self._lock_key("migrate", conn)
            with conn.transaction():
                conn.execute(_Q["migration_lock"], {"key": key})
                conn.execute(_Q["migration_table"])
            for version, text in migration_files("postgres"):
                # One transaction per file, each under the lock: a concurrent
                # migrator waits here and then sees the version as applied.
                with conn.transaction():
                    conn.execute(_Q["migration_lock"], {"key": key})
                    done = {r["version"] for r in self._rows(conn, _Q["migration_versions"])}
                    if version in done:
                        continue
                    conn.execute(text)  # no parameters: may hold several statements
                    conn.execute(_Q["migration_record"], {"version": version})
                applied.append(version)
        return applied

    def ping(self) -> None:
        with self._conn(timeout=3.0) as conn:
            conn.execute(_Q["ping"])

    def close(self) -> None:
        self._pool.close()

    def now(self) -> datetime:
        row = self._one(_Q["now"])
        assert row is not None
        now: datetime = row["now"]
        return now

    # -- tenants -------------------------------------------------------------
    def tenant_create(self, tenant_id: str, retention_s: int | None = None) -> Tenant:
        try:
            row = self._one(_Q["tenant_create"], {"id": tenant_id, "retention_s": retention_s})
        except AlreadyExists:
            raise AlreadyExists(f"tenant {tenant_id!r} already exists", tenant=tenant_id) from None
        assert row is not None
        return _tenant(row)

    def tenant_get(self, tenant_id: str) -> Tenant | None:
        row = self._one(_Q["tenant_get"], {"id": tenant_id})
        return _tenant(row) if row else None

    def tenant_list(self) -> list[Tenant]:
        with self._conn() as conn:
            return [_tenant(r) for r in self._rows(conn, _Q["tenant_list"])]

    # -- jobs: submit and read ---------------------------------------------
    def job_insert_many(self, jobs: Sequence[NewJob]) -> list[InsertResult]:
        if not jobs:
            return []
        tenant_ids = sorted({j.tenant_id for j in jobs})
        if (len(tenant_ids) == 1 and len(jobs) < _COPY_MIN_JOBS
                and all(j.idempotency_key is None for j in jobs)):
            return self._insert_one_tenant(tenant_ids[0], jobs)
        keyed = [j for j in jobs if j.idempotency_key is not None]
        with self._conn() as conn, conn.transaction():
            locked = self._rows(conn, _Q["tenants_lock"], {"ids": tenant_ids})
            next_seq = {r["id"]: int(r["next_seq"]) for r in locked}
            for tenant_id in tenant_ids:
                if tenant_id not in next_seq:
                    raise TenantNotFound(tenant_id)
            # Holding the tenants' locks, this sees every key committed before us.
            known: dict[tuple[str, str], Job] = {}
            if keyed:
                rows = self._rows(
                    conn,
                    _Q["jobs_by_idempotency_key"],
                    {
                        "tenant_ids": [j.tenant_id for j in keyed],
                        "keys": [j.idempotency_key for j in keyed],
                    },
                )
                for row in rows:
                    job = _job(row)
                    assert job.idempotency_key is not None
                    known[(job.tenant_id, job.idempotency_key)] = job
            results: list[InsertResult] = []
            new: list[Job] = []
            for nj in jobs:
                key = (nj.tenant_id, nj.idempotency_key) if nj.idempotency_key else None
                if key is not None and key in known:
                    existing = known[key]
                    if existing.kind != nj.kind or not _json_equal(existing.input, nj.input):
                        raise IdempotencyConflict(key[1], existing.id)
                    results.append(InsertResult(existing, created=False))
                    continue
                next_seq[nj.tenant_id] += 1
                job = _job_from_new(nj, next_seq[nj.tenant_id])
                if key is not None:
                    known[key] = job
                new.append(job)
                results.append(InsertResult(job, created=True))
            if len(new) >= _COPY_MIN_JOBS and all(j.idempotency_key is None for j in new):
                self._insert_by_copy(conn, new, next_seq)
            elif new:
                self._insert(conn, new, next_seq)
        return results

    def _insert_one_tenant(self, tenant_id: str, jobs: Sequence[NewJob]) -> list[InsertResult]:
        """The common submit (one tenant, no idempotency keys) in one statement."""
        if len(jobs) == 1:
            query, params = _Q["job_insert_one"], _one_job_params(jobs[0])
        else:
            query, params = _Q["job_insert_one_tenant"], _one_tenant_params(tenant_id, jobs)
        with self._conn() as conn:
            params["channel"] = self._channel(conn)
            found = conn.execute(query, params).fetchall()
        if not found:  # no counter to bump: the statement inserted nothing
            raise TenantNotFound(tenant_id)
        seqs = {job_id: int(seq) for job_id, seq, _ in found}
        return [InsertResult(_job_from_new(j, seqs[j.id]), created=True) for j in jobs]

    def _insert(
        self, conn: psycopg.Connection[Any], jobs: list[Job], next_seq: dict[str, int]
    ) -> None:
        params = {
            "seq_tenants": list(next_seq),
            "seq_values": list(next_seq.values()),
            "ids": [j.id for j in jobs],
            "tenant_ids": [j.tenant_id for j in jobs],
            "app_ids": [j.app_id for j in jobs],
            "seqs": [j.seq for j in jobs],
            "kinds": [j.kind for j in jobs],
            "names": [j.name for j in jobs],
            "statuses": [str(j.status) for j in jobs],
            "priorities": [int(j.priority) for j in jobs],
            "inputs": [_dumps(j.input) for j in jobs],
            "labels": [_dumps(j.labels) if j.labels else None for j in jobs],
            "parent_ids": [j.parent_id for j in jobs],
            "max_attempts": [int(j.max_attempts) for j in jobs],
            "run_ats": [j.run_at for j in jobs],
            "timeouts": [None if j.timeout_s is None else float(j.timeout_s) for j in jobs],
            "retentions": [int(j.retention_s or 0) for j in jobs],
            "keys": [j.idempotency_key for j in jobs],
            "created_ats": [j.created_at for j in jobs],
            "channel": self._channel(conn),
            "notify": any(j.status == JobStatus.QUEUED for j in jobs),
        }
        rows = self._rows(conn, _Q["job_insert_many"], params)
        if rows[0]["inserted"] != len(jobs):
            # Cannot happen while inserts hold their tenants' locks; never lose
            # a job silently if it does.
            raise StoreError("a concurrent insert used the same idempotency key; retry")

    def _insert_by_copy(
        self, conn: psycopg.Connection[Any], jobs: list[Job], next_seq: dict[str, int]
    ) -> None:
        """Large batches without idempotency keys: binary COPY, about twice as fast
        as the unnest insert (rows are encoded in C rather than as Python arrays).

        Empty labels are written as NULL (read back as {}, as on SQLite): most jobs
        have none, and encoding an empty object costs as much as encoding the input."""
        conn.execute(
            _Q["tenants_set_next_seq"],
            {"ids": list(next_seq), "next_seqs": list(next_seq.values())},
        )
        with conn.cursor() as cur, cur.copy(_Q["jobs_copy"]) as copy:
            copy.set_types(_COPY_TYPES)
            write = copy.write_row
            for j in jobs:
                write((
                    j.id, j.tenant_id, j.app_id, j.seq, j.kind, j.name, str(j.status),
                    int(j.priority), Jsonb(j.input, _ENCODE),
                    Jsonb(j.labels, _ENCODE) if j.labels else None,
                    j.parent_id, 0, int(j.max_attempts), j.run_at, j.timeout_s,
                    int(j.retention_s or 0), None, j.created_at, j.created_at,
                ))  # fmt: skip
        if any(j.status == JobStatus.QUEUED for j in jobs):
            conn.execute(_Q["notify"], {"channel": self._channel(conn)})

    def job_get(self, tenant_id: str, job_id: str, now: datetime | None = None) -> Job | None:
        with self._conn() as conn:
            row = conn.execute(_Q["job_get"],
                               {"tenant_id": tenant_id, "id": job_id, "now": now}).fetchone()
        return _job_of_tuple(row) if row else None

    def job_list(self, query: JobQuery, now: datetime | None = None) -> list[Job]:
        if query.page_size <= 0:
            return []
        statement, params = _job_list_statement(query, now)
        with self._conn() as conn:
            return [_job_of_tuple(r) for r in conn.execute(statement, params).fetchall()]

    def job_list_records(self, query: JobQuery, now: datetime | None = None) -> list[Record]:
        if query.page_size <= 0:
            return []
        statement, params = _job_list_statement(query, now, outer="job_records")
        with self._conn() as conn:
            row = conn.execute(statement, params).fetchone()
        try:
            return records_of(f"[{row[0]}]" if row and row[0] else None)
        except ValueError:  # JSON only json.loads reads (see fast_loads): through Job
            return [job_record(job) for job in self.job_list(query, now)]

    def job_attempts(self, tenant_id: str, job_id: str) -> list[Attempt]:
        with self._conn() as conn:
            rows = self._rows(conn, _Q["job_attempts"], {"tenant_id": tenant_id, "job_id": job_id})
        return [Attempt(**r) for r in rows]

    def job_counts(
        self, tenant_id: str | None = None, now: datetime | None = None
    ) -> dict[tuple[str, JobStatus], int]:
        with self._conn() as conn:
            rows = self._rows(conn, _Q["job_counts"], {"tenant_id": tenant_id, "now": now})
        return {(r["kind"], JobStatus(r["status"])): int(r["n"]) for r in rows}

    # -- jobs: the queue ---------------------------------------------------
    def job_claim_many(
        self,
        worker_id: str,
        kinds: Sequence[str],
        limit: int,
        lease_s: float,
        now: datetime | None = None,
    ) -> list[Job]:
        if limit <= 0 or not kinds:
            return []
        params = {
            "worker_id": worker_id,
            "kinds": list(kinds),
            "limit": limit,
            "lease_s": float(lease_s),
            "now": now,
        }
        with self._conn() as conn:
            for attempt in range(1, _CLAIM_TRIES + 1):
                # Tuple rows: a claim reads hundreds of rows, and dict rows cost more.
                rows = conn.execute(_claim_query(limit), params).fetchall()
                claimed = [r for r in rows if r[1] is not None]
                if claimed or rows[0][0] == 0:
                    break
                # Every candidate was locked by another worker's claim, whose
                # transaction is still open: look again once it has ended, rather
                # than idle a whole poll interval with jobs waiting, or end a
                # --burst worker as if the queue were empty.
                time.sleep(_CLAIM_RETRY_S * attempt)
        # One object per distinct value across the batch for the tenant, the kind
        # and the times (the claim's own three are the same for every job; jobs
        # submitted together share theirs): a held or finished job is kept
        # until its result is written, thousands of them in a drain.
        same: dict[Any, Any] = {}
        return [_claimed_job(r, worker_id, same.setdefault) for r in _in_claim_order(claimed)]

    def job_heartbeat_many(
        self, claims: Sequence[tuple[str, int]], lease_s: float, now: datetime | None = None
    ) -> HeartbeatResult:
        result = HeartbeatResult()
        if not claims:
            return result
        pairs = sorted(set(claims))
        params = {
            "ids": [job_id for job_id, _ in pairs],
            "attempts": [attempt for _, attempt in pairs],
            "lease_s": float(lease_s),
            "now": now,
        }
        with self._conn() as conn:
            rows = self._rows(conn, _Q["job_heartbeat_many"], params)
        for r in rows:
            if r["status"] is None:
                result.lost.add(r["id"])
            elif r["status"] == JobStatus.CANCELING:
                result.canceling.add(r["id"])
        return result

    def job_progress_many(self, updates: Sequence[ProgressUpdate]) -> None:
        if not updates:
            return
        batch = merge_progress(updates)
        params = {
            "ids": [u.job_id for u in batch],
            "attempts": [u.attempt for u in batch],
            "stats": [_dumps_or_none(u.stats) for u in batch],
            "progress": [_dumps_or_none(u.progress) for u in batch],
        }
        with self._conn() as conn:
            conn.execute(_Q["job_progress_many"], params)

    def job_complete_many(
        self, completions: Sequence[Completion], now: datetime | None = None
    ) -> set[str]:
        rounds = one_report_per_job(completions)
        accepted: set[str] = set()
        if not rounds:
            return accepted
        with self._conn() as conn, _transaction(conn, len(rounds) > 1):
            channel = self._channel(conn)
            for batch in rounds:
                params = {
                    "ids": [c.job_id for c in batch],
                    "attempts": [c.attempt for c in batch],
                    "outcomes": [Outcome(c.outcome).value for c in batch],
                    "results": [_dumps_or_none(c.result) for c in batch],
                    "errors": [_dumps_or_none(c.error) for c in batch],
                    "retry_ats": [_utc_or_none(c.retry_at) for c in batch],
                    "stats": [_dumps_or_none(c.stats) for c in batch],
                    "progress": [_dumps_or_none(c.progress) for c in batch],
                    "now": now,
                    "channel": channel,
                }
                # Tuple rows, read one at a time: a flush writes thousands of results.
                cursor = conn.execute(_Q["job_complete_many"], params)
                accepted.update(r[0] for r in cursor)
        return accepted

    def job_rescue_expired(
        self,
        backoff_base_s: float,
        backoff_max_s: float,
        now: datetime | None = None,
        limit: int = 1000,
    ) -> RescueResult:
        if limit <= 0:
            return RescueResult()
        params = {
            "backoff_base_s": float(backoff_base_s),
            "backoff_max_s": float(backoff_max_s),
            "now": now,
            "limit": limit,
        }
        row = self._one(_Q["job_rescue_expired"], params)
        assert row is not None
        return RescueResult(
            requeued=int(row["requeued"]), failed=int(row["failed"]), canceled=int(row["canceled"])
        )

    def job_promote_scheduled(self, now: datetime | None = None, limit: int = 10_000) -> int:
        if limit <= 0:
            return 0
        with self._conn() as conn:
            params = {"now": now, "limit": limit, "channel": self._channel(conn)}
            rows = self._rows(conn, _Q["job_promote_scheduled"], params)
        return int(rows[0]["promoted"])

    # -- jobs: user actions ------------------------------------------------
    def job_set_status(
        self,
        tenant_id: str,
        job_id: str,
        sources: frozenset[JobStatus],
        target: JobStatus,
        now: datetime | None = None,
        max_attempts: int | None = None,
    ) -> Job | None:
        if not sources:
            return None
        target = JobStatus(target)
        params = {
            "tenant_id": tenant_id,
            "id": job_id,
            "sources": sorted(str(s) for s in sources),
            "target": str(target),
            "terminal": target.terminal,
            "requeue": target == JobStatus.QUEUED,
            "max_attempts": max_attempts,
            "now": now,
        }
        with self._conn() as conn:
            params["channel"] = self._channel(conn)
            rows = self._rows(conn, _Q["job_set_status"], params)
        return _job(rows[0]) if rows else None

    def job_delete(self, tenant_id: str, job_id: str) -> list[str]:
        with self._conn() as conn:
            rows = self._rows(conn, _Q["job_delete"], {"tenant_id": tenant_id, "id": job_id})
        return [r["id"] for r in rows]

    def job_purge_expired(
        self, now: datetime | None = None, limit: int = 1000
    ) -> list[tuple[str, str]]:
        if limit <= 0:
            return []
        with self._conn() as conn:
            rows = self._rows(conn, _Q["job_purge_expired"], {"now": now, "limit": limit})
        return [(r["tenant_id"], r["id"]) for r in rows]

    # -- per-record errors and artifacts -------------------------------------
    def job_errors_insert_many(self, records: Sequence[JobErrorRecord]) -> None:
        if not records:
            return
        params = {
            "ids": [e.id for e in records],
            "tenant_ids": [e.tenant_id for e in records],
            "job_ids": [e.job_id for e in records],
            "attempts": [int(e.attempt) for e in records],
            "codes": [e.code for e in records],
            "messages": [e.message for e in records],
            "sources": [e.source for e in records],
            "records": [_dumps_or_none(e.record) for e in records],
            "retry_data": [_dumps_or_none(e.retry_data) for e in records],
            "resolved": [bool(e.resolved) for e in records],
            "retried": [bool(e.retried) for e in records],
            "created_ats": [_utc_or_none(e.created_at) for e in records],
        }
        with self._conn() as conn:
            conn.execute(_Q["job_errors_insert_many"], params)

    def job_errors_list(
        self, tenant_id: str, job_id: str, after_id: str | None = None, limit: int = 1000
    ) -> list[JobErrorRecord]:
        if limit <= 0:
            return []
        params = {"tenant_id": tenant_id, "job_id": job_id, "after_id": after_id, "limit": limit}
        with self._conn() as conn:
            rows = self._rows(conn, _Q["job_errors_list"], params)
        return [JobErrorRecord(**r) for r in rows]

    def job_errors_update(
        self,
        tenant_id: str,
        job_id: str,
        error_ids: Sequence[str],
        *,
        resolved: bool | None = None,
        retried: bool | None = None,
    ) -> list[JobErrorRecord]:
        if not error_ids:
            return []
        params = {
            "tenant_id": tenant_id,
            "job_id": job_id,
            "ids": list(error_ids),
            "resolved": resolved,
            "retried": retried,
        }
        with self._conn() as conn:
            rows = self._rows(conn, _Q["job_errors_update"], params)
        return sorted((JobErrorRecord(**r) for r in rows), key=lambda e: e.id)

    def artifact_put(self, artifact: Artifact) -> None:
        params = {
            "tenant_id": artifact.tenant_id,
            "job_id": artifact.job_id,
            "name": artifact.name,
            "blob_key": artifact.blob_key,
            "size": int(artifact.size),
            "sha256": artifact.sha256,
            "content_type": artifact.content_type,
            "created_at": _utc_or_none(artifact.created_at),
        }
        with self._conn() as conn:
            conn.execute(_Q["artifact_put"], params)

    def artifact_list(self, tenant_id: str, job_id: str) -> list[Artifact]:
        with self._conn() as conn:
            rows = self._rows(conn, _Q["artifact_list"], {"tenant_id": tenant_id, "job_id": job_id})
        return [Artifact(**r) for r in rows]

    # -- coordination ------------------------------------------------------
    def maintenance_lock(self) -> AbstractContextManager[bool]:
        return self._maintenance_lock()

    @contextmanager
    def _maintenance_lock(self) -> Iterator[bool]:
        # A session-level advisory lock lives as long as the connection that
        # took it, so that connection is held for the whole block; a crashed
        # holder frees the lock when its session ends.
        with self._conn() as conn:
            key = self._lock_key("maintenance", conn)
            rows = self._rows(conn, _Q["advisory_try_lock"], {"key": key})
            locked = bool(rows[0]["locked"])
            try:
                yield locked
            finally:
                if locked:
                    try:
                        conn.execute(_Q["advisory_unlock"], {"key": key})
                    except psycopg.Error:
                        # Never hand a connection that may still hold the lock
                        # back to the pool: closing it ends the session and the lock.
                        conn.close()

    def queue_waiter(self) -> QueueWaiter:
        return PostgresQueueWaiter(self._url)


class PostgresQueueWaiter(QueueWaiter):
    """LISTEN on the schema's channel over a dedicated autocommit connection.

    A wake-up is only a hint: after any connection error the waiter drops the
    connection, sleeps out the rest of the timeout (the caller then polls, as
    it would have anyway) and reconnects on the next call, so a server restart
    costs at most one poll interval.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        # LISTEN before the caller's first claim: a job queued between a claim
        # that found nothing and a LISTEN issued only then would otherwise wait
        # a whole poll interval (a parent's first child, spawned at once, did).
        with suppress(psycopg.Error, StoreError):
            self._connect(_CONNECT_TIMEOUT_S)

    def _connect(self, timeout: float) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                # libpq counts connect_timeout in whole seconds, 2 at least.
                connect_timeout=max(2, math.ceil(timeout)),
                # Detect a half-open connection (peer gone without a FIN).
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
            try:
                row = conn.execute(_Q["schema_name"]).fetchone()
                if row is None or row[0] is None:
                    raise StoreError("the database URL's search_path names no existing schema")
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(_channel_for(row[0]))))
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def wait(self, timeout: float) -> bool:
        if self._closed:
            return False
        timeout = max(0.0, timeout)
        deadline = time.monotonic() + timeout
        try:
            conn = self._connect(timeout)
            remaining = max(0.0, deadline - time.monotonic())
            for _ in conn.notifies(timeout=remaining, stop_after=1):
                return True
            return False
        except (psycopg.Error, StoreError):
            self._drop()
            if not self._closed:
                time.sleep(max(0.0, deadline - time.monotonic()))
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self._closed = True
        self._drop()


# -- helpers ---------------------------------------------------------------------


@contextmanager
def _transaction(conn: psycopg.Connection[Any], needed: bool) -> Iterator[None]:
    """A transaction around several statements; a single one needs none (autocommit)."""
    if needed:
        with conn.transaction():
            yield
    else:
        yield


def _configure(conn: psycopg.Connection[Any]) -> None:
    # Times come back as UTC datetimes whatever the server's TimeZone setting.
    # No JIT: the store's statements touch a few rows each, and once `jobs` has
    # statistics the planner's estimates could pass the JIT threshold, when
    # compiling cost a claim of 256 jobs 554 of its 559 ms.
    conn.execute("SET TIME ZONE 'UTC'; SET jit = off")


def _check_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection before handing it out; raises when it is broken.

    psycopg_pool's own check runs an empty query, a round trip at every checkout
    (a third of a one-job submit). A connection whose server went away (a
    restart, pg_terminate_backend) has its socket readable while it idles in the
    pool, with the server's last message or the end of the stream: only then is
    that full check run, and it fails on a broken connection."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    idle = select.poll()
    idle.register(conn.fileno(), select.POLLIN)
    if idle.poll(0):
        ConnectionPool.check_connection(conn)


def _channel_for(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema: its name, hashed when too long."""
    channel = f"jobdock.{schema}"
    if len(channel.encode()) > _MAX_IDENTIFIER:
        channel = "jobdock." + hashlib.sha256(schema.encode()).hexdigest()[:40]
    return channel


def _advisory_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for `purpose` within `schema`."""
    digest = hashlib.blake2b(f"jobdock:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _translate(exc: psycopg.Error) -> JobdockError:
    """The jobdock error for a driver error (raised `from` the original)."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # Includes pool timeouts, a closed pool, lost connections, server
        # shutdowns and deadlocks: all worth retrying later.
        return StoreUnavailable(f"the database is unavailable: {exc}".strip())
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        match = _FK_KEY.search(exc.diag.message_detail or "")
        return TenantNotFound(match.group(1) if match else "?")
    if isinstance(exc, pg_errors.UniqueViolation):
        return AlreadyExists(f"already exists: {exc.diag.message_detail or exc}")
    if isinstance(exc, pg_errors.UntranslatableCharacter | pg_errors.NumericValueOutOfRange):
        # Values PostgreSQL cannot store (a \u0000 in JSON text, a priority
        # beyond 32 bits): the request has to change, retrying will not help.
        return InvalidInput(f"value cannot be stored: {exc}".strip())
    return StoreError(f"database error: {exc}".strip())


def _dumps(value: Any) -> str:
    try:
        return _ENCODE(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"value is not JSON: {exc}") from exc


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0) but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _utc(value: datetime) -> datetime:
    """Times sent are made timezone-aware (naive ones are taken as UTC); times read
    back are UTC already, as every session runs with TimeZone UTC."""
    if value.tzinfo is UTC:
        return value  # the common case, and a batch converts two times per job
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _tenant(row: Row) -> Tenant:
    return Tenant(**row)


def _job(row: Row) -> Job:
    """A job from a `jobs` row (its columns are named as Job's fields)."""
    job = Job(**{name: row[name] for name in _JOB_FIELDS})
    job.status = JobStatus(job.status)
    job.stats = job.stats or {}
    job.progress = job.progress or {}
    job.labels = job.labels or {}
    return job


def _job_list_statement(query: JobQuery, now: datetime | None,
                        outer: str = "job_list") -> tuple[sql.Composed, list[Any]]:
    """job_list's statement and parameters for `query` (tests EXPLAIN it); with
    `outer="job_records"`, the same page as job_list_records reads it."""
    walks = index_walks(query)
    where, params = _list_filters(query, walked=len(walks) > 1)
    conditions = sql.SQL(" AND ").join(where)
    if len(walks) > 1:
        ids = sql.SQL(_Q["job_page_ids_walked"]).format(where=conditions)
        params = [[kind for kind, _ in walks], [str(status) for _, status in walks],
                  *params, query.page_size]
    else:
        ids = sql.SQL(_Q["job_page_ids"]).format(where=conditions)
    params.append(query.page_size)
    # Joined around {ids} rather than formatted: job_records' text has braces of its own.
    head, tail = _Q[outer].split("{ids}")
    return sql.Composed([sql.SQL(head), ids, sql.SQL(tail)]), [now, *params]


def _list_filters(query: JobQuery, walked: bool) -> tuple[list[sql.Composable], list[Any]]:
    """The conditions of job_page_ids and their parameters; `walked`: without the
    kinds and statuses, which job_page_ids_walked takes as pairs."""
    where: list[sql.Composable] = []
    params: list[Any] = []

    def add(name: str, *values: Any) -> None:
        where.append(sql.SQL(_Q[f"job_filter_{name}"]))
        params.extend(values)

    add("tenant", query.tenant_id)
    # An empty list filters nothing, as on SQLite; one value is sent as `=`
    # (see job_filter_kind).
    kinds, statuses = query.kinds or [], [str(s) for s in query.statuses or []]
    if not walked:
        if len(kinds) == 1:
            add("kind", kinds[0])
        elif kinds:
            add("kinds", list(kinds))
        if len(statuses) == 1:
            add("status", statuses[0])
        elif statuses:
            add("statuses", statuses)
    if statuses and all(JobStatus(s) in TERMINAL for s in statuses):
        add("finished")
    if query.parent_id is not None:
        add("parent", query.parent_id)
    if query.app_id is not None:
        add("app", query.app_id)
    if query.labels:
        add("labels", _dumps(query.labels))
    if query.created_at_gte is not None:
        add("created_gte", query.created_at_gte)
    if query.created_at_lte is not None:
        add("created_lte", query.created_at_lte)
    if query.finished_at_gte is not None:
        add("finished_gte", query.finished_at_gte)
    if query.finished_at_lte is not None:
        add("finished_lte", query.finished_at_lte)
    for name, value in query.stats_gte.items():
        add("stat_gte", name, name, value)
    for name, value in query.stats_lte.items():
        add("stat_lte", name, name, value)
    if query.after_id is not None:
        add("before", query.after_id)
    return where, params


def _job_of_tuple(row: tuple[Any, ...]) -> Job:
    """A job from a row of JOB_COLUMNS (Job's fields, in order)."""
    values = list(row)
    for at in _JSON_AT:
        values[at] = fast_loads(values[at])
    job = Job(*values)
    job.status = JobStatus(job.status)
    job.stats = job.stats or {}
    job.progress = job.progress or {}
    job.labels = job.labels or {}
    return job


@cache
def _claim_query(limit: int) -> str:
    """job_claim_many for a batch of `limit` jobs: one text per power of two, so
    that a worker's claims share a few prepared statements (see the query)."""
    pool = max(16, 1 << (limit - 1).bit_length())
    return _Q["job_claim_many"].replace("{pool}", str(pool))


def _in_claim_order(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows of job_claim_many in round-robin order, as the query shared the batch out:
    each tenant's first job (by priority, run_at, id), then each one's second..."""
    def queue_order(r: tuple[Any, ...]) -> tuple[Any, ...]:
        return (-r[7], r[17], r[1])  # priority, run_at, id

    place: dict[str, int] = {}
    ranked = []
    for r in sorted(rows, key=lambda r: (r[2], queue_order(r))):  # by tenant
        place[r[2]] = place.get(r[2], 0) + 1
        ranked.append((place[r[2]], queue_order(r), r))
    ranked.sort(key=lambda ranked_row: ranked_row[:2])
    return [r for _, _, r in ranked]


def _claimed_job(r: tuple[Any, ...], worker_id: str, same: Callable[[Any, Any], Any]) -> Job:
    """A job from a row of job_claim_many (columns by position: see the query);
    `same(v, v)` gives the batch's one object equal to v."""
    return Job(
        id=r[1], tenant_id=same(r[2], r[2]), app_id=r[3], seq=r[4], kind=same(r[5], r[5]),
        name=r[6], status=JobStatus.RUNNING, priority=r[7], input=fast_loads(r[8]),
        result=r[9], error=r[10], stats=r[11] or EMPTY, progress=r[12] or EMPTY,
        labels=r[13] or EMPTY, parent_id=r[14], attempt=r[15], max_attempts=r[16],
        run_at=same(r[17], r[17]), timeout_s=r[18], retention_s=r[19], idempotency_key=r[20],
        created_at=same(r[21], r[21]), started_at=same(r[22], r[22]), finished_at=r[23],
        updated_at=same(r[24], r[24]), expires_at=r[25], lease_expires_at=same(r[26], r[26]),
        worker_id=worker_id,
    )


def _one_job_params(j: NewJob) -> dict[str, Any]:
    """job_insert_one's parameters: the job's columns, JSON as text."""
    return {
        "tenant_id": j.tenant_id, "id": j.id, "app_id": j.app_id, "kind": j.kind,
        "name": j.name, "status": str(j.status), "priority": int(j.priority),
        "input": _dumps(j.input), "labels": _dumps(j.labels) if j.labels else None,
        "parent_id": j.parent_id, "max_attempts": int(j.max_attempts), "run_at": _utc(j.run_at),
        "timeout_s": None if j.timeout_s is None else float(j.timeout_s),
        "retention_s": int(j.retention_s), "created_at": _utc(j.created_at),
        "notify": j.status == JobStatus.QUEUED,
    }  # fmt: skip


def _one_tenant_params(tenant_id: str, jobs: Sequence[NewJob]) -> dict[str, Any]:
    """job_insert_one_tenant's parameters: the jobs as one JSON array of objects."""
    rows = [
        {"id": j.id, "app_id": j.app_id, "kind": j.kind, "name": j.name,
         "status": str(j.status), "priority": int(j.priority), "input": j.input,
         "labels": j.labels or None, "parent_id": j.parent_id,
         "max_attempts": int(j.max_attempts), "run_at": _utc(j.run_at).isoformat(),
         "timeout_s": None if j.timeout_s is None else float(j.timeout_s),
         "retention_s": int(j.retention_s), "created_at": _utc(j.created_at).isoformat()}
        for j in jobs
    ]
    return {
        "tenant_id": tenant_id,
        "count": len(jobs),
        "jobs": _dumps(rows),
        "notify": any(j.status == JobStatus.QUEUED for j in jobs),
    }


def _job_from_new(nj: NewJob, seq: int) -> Job:
    """The row an insert writes, as `job_get` would read it back."""
    created_at = _utc(nj.created_at)
    return Job(
        id=nj.id,
        tenant_id=nj.tenant_id,
        kind=nj.kind,
        status=JobStatus(nj.status),
        input=nj.input,
        seq=seq,
        app_id=nj.app_id,
        name=nj.name,
        priority=nj.priority,
        labels=dict(nj.labels),
        parent_id=nj.parent_id,
        attempt=0,
        max_attempts=nj.max_attempts,
        run_at=_utc(nj.run_at),
        timeout_s=None if nj.timeout_s is None else float(nj.timeout_s),
        retention_s=nj.retention_s,
        idempotency_key=nj.idempotency_key,
        created_at=created_at,
        updated_at=created_at,
    )
