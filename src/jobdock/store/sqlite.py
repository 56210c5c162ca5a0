"""The embedded store: one SQLite file in WAL mode, the standard sqlite3 module.

Each thread uses its own connection (sqlite3 connections are not shared across
threads). Every write runs in `BEGIN IMMEDIATE`, which takes the write lock at
the start: a deferred transaction that reads first and then writes can fail
with SQLITE_BUSY at once, whatever the busy timeout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import jobdock.errors as errors
from jobdock.ids import new_id
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
from jobdock.store.backoff import backoff_s
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
from jobdock.store.queries import load_queries, migration_files
from jobdock.store.records import TIME_FIELDS, Record, job_record, records_of
from jobdock.store.sqlite_access import SQLiteAccess

JOB_COLUMNS = (
    "id, tenant_id, app_id, seq, kind, name, status, priority, input, result, error, stats,"
    " progress, labels, parent_id, attempt, max_attempts, run_at, timeout_s, retention_s,"
    " idempotency_key, created_at, started_at, finished_at, updated_at, expires_at,"
    " lease_expires_at, worker_id"
)
# What a claim reads back: the columns it sets (status, attempt's start and lease,
# worker) are the same for the whole batch and are filled in from its parameters.
CLAIMED_COLUMNS = (
    "id, tenant_id, app_id, seq, kind, name, priority, input, result, error, stats, progress,"
    " labels, parent_id, attempt, max_attempts, run_at, timeout_s, retention_s,"
    " idempotency_key, created_at, finished_at, expires_at"
)
_Q = {name: sql.replace("{cols}", JOB_COLUMNS).replace("{claimed}", CLAIMED_COLUMNS)
      for name, sql in load_queries("sqlite_queries.sql").items()}


def _records_query() -> str:
    """job_records with its per-time-column parts written out ({page} is left)."""
    def each(part: str, sep: str = ", ") -> str:
        return sep.join(_Q[part].replace("{t}", t) for t in TIME_FIELDS)

    text = _Q["job_records"].replace("{split}", each("record_time_split"))
    text = text.replace("{micros}", each("record_time_micros"))
    for t in TIME_FIELDS:
        text = text.replace("{text:" + t + "}", _Q["record_time_text"].replace("{t}", t))
    return text


_RECORDS = _records_query()


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


# Sleeps between two tries of BEGIN IMMEDIATE while another connection writes.
_BEGIN_FIRST_DELAY_S = 0.0002
_BEGIN_MAX_DELAY_S = 0.002
# One encoder for every JSON value written (json.dumps with options builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
# Outcomes that end the job (job_finish_many); RETRY and RELEASED have statements of their own.
_ENDINGS = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELED})
# Outcomes that add a row to the job's history (attempt_insert_endings).
_WITH_HISTORY = frozenset({Outcome.FAILED, Outcome.RETRY, Outcome.CANCELED})


def _dumps(value: Any) -> str | None:
    return None if value is None else _ENCODE(value)


def _reports_json(reports: Sequence[Completion], now: float) -> str:
    """The :reports array of the job_*_many completion statements (see sqlite_queries.sql)."""
    return _ENCODE([
        [c.job_id, c.attempt, c.outcome.value, _dumps(c.result), _dumps(c.error),
         _dumps(c.stats), _dumps(c.progress), _ts(c.retry_at) or now]
        for c in reports
    ])


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _job(row: sqlite3.Row | tuple[Any, ...],
         loads: Callable[[str | None], Any] = _loads) -> Job:
    return Job(
        id=row[0], tenant_id=row[1], app_id=row[2], seq=row[3], kind=row[4], name=row[5],
        status=JobStatus(row[6]), priority=row[7], input=loads(row[8]),
        result=loads(row[9]), error=loads(row[10]), stats=loads(row[11]) or {},
        progress=loads(row[12]) or {}, labels=loads(row[13]) or {}, parent_id=row[14],
        attempt=row[15], max_attempts=row[16], run_at=_dt(row[17]), timeout_s=row[18],
        retention_s=row[19], idempotency_key=row[20], created_at=_dt(row[21]),
        started_at=_dt(row[22]), finished_at=_dt(row[23]), updated_at=_dt(row[24]),
        expires_at=_dt(row[25]), lease_expires_at=_dt(row[26]), worker_id=row[27],
    )


class _Times(dict[float, datetime]):
    """Unix times as datetimes, each converted once: the jobs of one claim were
    often submitted together and share their created_at and run_at."""

    def __missing__(self, value: float) -> datetime:
        converted = self[value] = datetime.fromtimestamp(value, UTC)
        return converted


def _claimed_job(row: tuple[Any, ...], times: _Times, same: dict[str, str],
                 started_at: datetime, lease_expires_at: datetime, worker_id: str) -> Job:
    """A job from a row of CLAIMED_COLUMNS, as the claim left it. The claim's jobs
    share their equal times and names (`times`, `same`) and their empty dicts:
    a worker keeps each until its result is written."""
    return Job(
        id=row[0], tenant_id=same.setdefault(row[1], row[1]), app_id=row[2], seq=row[3],
        kind=same.setdefault(row[4], row[4]), name=row[5],
        status=JobStatus.RUNNING, priority=row[6], input=fast_loads(row[7]),
        result=fast_loads(row[8]), error=fast_loads(row[9]),
        stats=fast_loads(row[10]) or EMPTY, progress=fast_loads(row[11]) or EMPTY,
        labels=fast_loads(row[12]) or EMPTY, parent_id=row[13],
        attempt=row[14], max_attempts=row[15], run_at=times[row[16]], timeout_s=row[17],
        retention_s=row[18], idempotency_key=row[19], created_at=times[row[20]],
        started_at=started_at, finished_at=_dt(row[21]), updated_at=started_at,
        expires_at=_dt(row[22]), lease_expires_at=lease_expires_at, worker_id=worker_id,
    )


def _error(r: sqlite3.Row | tuple[Any, ...]) -> JobErrorRecord:
    return JobErrorRecord(
        id=r[0], tenant_id=r[1], job_id=r[2], attempt=r[3], code=r[4], message=r[5],
        source=r[6], record=_loads(r[7]), retry_data=_loads(r[8]), resolved=bool(r[9]),
        retried=bool(r[10]), created_at=_dt(r[11]))


def _path_from_url(url: str) -> str:
    if url in ("sqlite://", "sqlite:///:memory:"):
        raise ValueError("an in-memory SQLite database cannot be shared by workers; name a file")
    if not url.startswith("sqlite:///"):
        raise ValueError(f"SQLite URLs look like sqlite:///relative.db or sqlite:////abs.db: {url}")
    return url[len("sqlite:///") :]


class SQLiteStore(SQLiteAccess, Store):
    backend = "sqlite"

    def __init__(self, url: str, synchronous: str = "NORMAL", busy_timeout_s: float = 30.0,
                 **_ignored: object) -> None:
        self.path = _path_from_url(url)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._holder = f"{os.getpid()}-{new_id()}"

    # -- connections -------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with _translated():
            self._begin_immediate(conn)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, tried again every millisecond or so while another connection
        holds the write lock, for up to the busy timeout.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... up to 100 ms
        between tries. Against another worker process that takes the lock for a
        millisecond or two at a time, it kept a worker asleep for 100-700 ms at once
        (two workers draining no-op jobs), its threads idle. The handler is off
        while we try, and back for everything else (readers keep waiting as before)."""
        deadline = time.monotonic() + self._busy_timeout_s
        delay = _BEGIN_FIRST_DELAY_S
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() >= deadline:
                        raise
                # Jitter, so that two waiting processes do not keep colliding.
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, _BEGIN_MAX_DELAY_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with _translated():
            yield self._conn()

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def _now(self, now: datetime | None) -> float:
        # Whole microseconds, as datetimes hold them: a time read back from a job
        # then compares equal to the one stored (time.time() has finer digits).
        return round(time.time() if now is None else now.timestamp(), 6)

    # -- lifecycle ---------------------------------------------------------
    def migrate(self) -> list[int]:
        applied = []
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                         " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files("sqlite"):
                if version in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
                applied.append(version)
        return applied

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute("SELECT 1").fetchone()

    # -- tenants -----------------------------------------------------------
    def tenant_create(self, tenant_id: str, retention_s: int | None = None) -> Tenant:
        now = time.time()
        try:
            with self._write() as conn:
                conn.execute(_Q["tenant_insert"], (tenant_id, now, retention_s))
        except errors.StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise errors.AlreadyExists(f"tenant {tenant_id!r} already exists") from exc
            raise
        return Tenant(tenant_id, datetime.fromtimestamp(now, UTC), retention_s)

    def tenant_get(self, tenant_id: str) -> Tenant | None:
        with self._read() as conn:
            row = conn.execute(_Q["tenant_get"], (tenant_id,)).fetchone()
        return None if row is None else Tenant(row[0], datetime.fromtimestamp(row[1], UTC), row[2])

    def tenant_list(self) -> list[Tenant]:
        with self._read() as conn:
            rows = conn.execute(_Q["tenant_list"]).fetchall()
        return [Tenant(r[0], datetime.fromtimestamp(r[1], UTC), r[2]) for r in rows]

    # -- jobs: submit and read ---------------------------------------------
    def job_insert_many(self, jobs: Sequence[NewJob]) -> list[InsertResult]:
        results: list[InsertResult] = []
        rows = []  # jobs without an idempotency key, inserted together at the end
        with self._write() as conn:
            seqs = self._take_seqs(conn, jobs)
            for new in jobs:
                if new.idempotency_key is not None:
                    existing = conn.execute(_Q["job_by_idempotency_key"],
                                            (new.tenant_id, new.idempotency_key)).fetchone()
                    if existing is not None:
                        results.append(_existing_for_key(_job(existing), new))
                        continue
                seq = seqs[new.tenant_id]
                seqs[new.tenant_id] += 1
                created = _ts(new.created_at)
                row = (
                    new.id, new.tenant_id, new.app_id, seq, new.kind, new.name, new.status.value,
                    new.priority, _dumps(new.input), _dumps(new.labels or None), new.parent_id,
                    new.max_attempts, _ts(new.run_at), new.timeout_s, new.retention_s,
                    new.idempotency_key, created, created,
                )
                if new.idempotency_key is not None:
                    # Inserted at once: a later job of the batch with the same key finds it.
                    conn.execute(_Q["job_insert"], row)
                else:
                    rows.append(row)
                results.append(InsertResult(_new_job(new, seq), created=True))
            conn.executemany(_Q["job_insert"], rows)
        return results

    def _take_seqs(self, conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> dict[str, int]:
        """First seq number per tenant, reserving one per job."""
        counts: dict[str, int] = {}
        for new in jobs:
            counts[new.tenant_id] = counts.get(new.tenant_id, 0) + 1
        first = {}
        for tenant_id, n in counts.items():
            row = conn.execute(_Q["tenant_take_seq"], (n, tenant_id)).fetchone()
            if row is None:
                raise errors.TenantNotFound(tenant_id)
            first[tenant_id] = row[0] - n + 1
        return first

    def job_get(self, tenant_id: str, job_id: str, now: datetime | None = None) -> Job | None:
        with self._read() as conn:
            row = conn.execute(_Q["job_get"], (job_id, tenant_id, self._now(now))).fetchone()
        return None if row is None else _job(row, fast_loads)

    def job_list(self, query: JobQuery, now: datetime | None = None) -> list[Job]:
        sql, params = _job_list_statement(query, self._now(now))
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_job(r, fast_loads) for r in rows]

    def job_list_records(self, query: JobQuery, now: datetime | None = None) -> list[Record]:
        page, params = _job_list_statement(query, self._now(now))
        text, inexact = None, 1
        with self._read() as conn:
            try:
                text, inexact = conn.execute(_RECORDS.replace("{page}", page), params).fetchone()
            except sqlite3.OperationalError as exc:
                if "malformed JSON" not in str(exc):
                    raise
        if not inexact:
            with suppress(ValueError):
                # Sorted again: SQLite does not promise json_group_array's order.
                return sorted(records_of(text), key=_record_id, reverse=True)
        # A value SQL cannot write exactly: this page through Job (slower, same bytes).
        return [job_record(job) for job in self.job_list(query, now)]

    def job_attempts(self, tenant_id: str, job_id: str) -> list[Attempt]:
        with self._read() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ? AND tenant_id = ?",
                            (job_id, tenant_id)).fetchone() is None:
                return []
            rows = conn.execute(_Q["attempt_list"], (job_id,)).fetchall()
        return [Attempt(r[0], r[1], r[2], _loads(r[3]), _dt(r[4]), _dt(r[5]), r[6]) for r in rows]

    def job_counts(self, tenant_id: str | None = None,
                   now: datetime | None = None) -> dict[tuple[str, JobStatus], int]:
        with self._read() as conn:
            rows = conn.execute(_Q["job_counts"],
                                {"tenant_id": tenant_id, "now": self._now(now)}).fetchall()
        return {(r[0], JobStatus(r[1])): r[2] for r in rows}

    # -- jobs: the queue ---------------------------------------------------
    def job_claim_many(self, worker_id: str, kinds: Sequence[str], limit: int, lease_s: float,
                       now: datetime | None = None) -> list[Job]:
        if not kinds or limit <= 0:
            return []
        t = self._now(now)
        with self._read() as conn:
            if conn.execute(_Q["job_any_due"], (t,)).fetchone() is None:
                return []
        names = {f"k{i}": kind for i, kind in enumerate(kinds)}
        choose = _Q["job_claim_ids"].replace("{kinds}", ", ".join(f":{n}" for n in names))
        with self._write() as conn:
            ids = conn.execute(choose, {"now": t, "limit": limit, **names}).fetchone()[0]
            conn.execute(_Q["job_claim"], {"ids": ids, "now": t, "lease_until": t + lease_s,
                                           "worker_id": worker_id})
        # Read after the commit (see sqlite_queries.sql). A job deleted meanwhile is
        # simply not run; any other change (a cancel) reaches the worker as it would
        # have a moment after the claim.
        with self._read() as conn:
            rows = conn.execute(_Q["job_claimed"], {"ids": ids}).fetchall()
        place = {job_id: n for n, job_id in enumerate(json.loads(ids))}
        rows.sort(key=lambda row: place[row[0]])
        times = _Times()
        started_at, lease_expires_at = times[t], times[t + lease_s]
        same: dict[str, str] = {}  # one string per tenant and kind across the batch
        return [_claimed_job(r, times, same, started_at, lease_expires_at, worker_id)
                for r in rows]

    def job_heartbeat_many(self, claims: Sequence[tuple[str, int]], lease_s: float,
                           now: datetime | None = None) -> HeartbeatResult:
        result = HeartbeatResult()
        if not claims:
            return result
        t = self._now(now)
        params = {"claims": _ENCODE(claims), "now": t, "lease_until": t + lease_s}
        with self._write() as conn:
            held = json.loads(conn.execute(_Q["job_held"], params).fetchone()[0])
            conn.execute(_Q["job_heartbeat"], params)
        status = dict(held)
        for job_id, _ in claims:
            if job_id not in status:
                result.lost.add(job_id)
            elif status[job_id] == JobStatus.CANCELING:
                result.canceling.add(job_id)
        return result

    def job_progress_many(self, updates: Sequence[ProgressUpdate]) -> None:
        if not updates:
            return
        batch = _ENCODE([[u.job_id, u.attempt, _dumps(u.stats), _dumps(u.progress)]
                         for u in merge_progress(updates)])
        with self._write() as conn:
            conn.execute(_Q["job_progress"], {"updates": batch, "now": time.time()})

    def job_complete_many(self, completions: Sequence[Completion],
                          now: datetime | None = None) -> set[str]:
        accepted: set[str] = set()
        if not completions:
            return accepted
        t = self._now(now)
        # Encoded before taking the write lock, which the other processes wait for.
        rounds = [(reports, _reports_json(reports, t))
                  for reports in one_report_per_job(completions)]
        with self._write() as conn:
            for reports, reports_json in rounds:
                accepted.update(self._complete_round(conn, reports, reports_json, t))
        return accepted

    def _complete_round(self, conn: sqlite3.Connection, reports: list[Completion],
                        reports_json: str, t: float) -> set[str]:
        """One round of completions, every job at most once: which are accepted, their
        history, then one statement per kind of ending present (usually just one, for
        successes). Each statement takes the whole round and picks its outcomes."""
        params = {"now": t, "reports": reports_json}
        accepted = set(json.loads(conn.execute(_Q["job_reports_accepted"], params).fetchone()[0]))
        outcomes = {c.outcome for c in reports if c.job_id in accepted}
        if outcomes & _WITH_HISTORY:
            conn.execute(_Q["attempt_insert_endings"], params)
        if outcomes & _ENDINGS:
            conn.execute(_Q["job_finish_many"], params)
        if Outcome.RETRY in outcomes:
            conn.execute(_Q["job_retry_later_many"], params)
        if Outcome.RELEASED in outcomes:
            conn.execute(_Q["job_release_many"], params)
        refused = [(c.attempt, "refused",
                    _dumps({"code": "refused", "message": f"late {c.outcome.value} result"
                            " refused: the attempt had lost its lease"}), t, c.job_id)
                   for c in reports if c.job_id not in accepted]
        if refused:  # rare: one statement per report is fine here
            conn.executemany(_Q["attempt_insert_if_job"], refused)
        return accepted

    def job_rescue_expired(self, backoff_base_s: float, backoff_max_s: float,
                           now: datetime | None = None, limit: int = 1000) -> RescueResult:
        t = self._now(now)
        result = RescueResult()
        with self._write() as conn:
            rows = conn.execute(_Q["job_expired_leases"], (t, limit)).fetchall()
            for job_id, attempt, max_attempts, status, started_at, worker_id in rows:
                target, run_at, error = _rescue_decision(
                    status, attempt, max_attempts, t, backoff_base_s, backoff_max_s)
                finished = None if target is JobStatus.QUEUED else t
                changed = conn.execute(_Q["job_rescue"], {
                    "status": target.value, "run_at": run_at, "error": _dumps(error), "now": t,
                    "finished_at": finished, "id": job_id, "attempt": attempt}).rowcount
                if not changed:
                    continue
                conn.execute(_Q["attempt_insert"], (job_id, attempt, "lost", _dumps(error),
                                                    started_at, t, worker_id))
                if target is JobStatus.QUEUED:
                    result.requeued += 1
                elif target is JobStatus.FAILED:
                    result.failed += 1
                else:
                    result.canceled += 1
        return result

    def job_promote_scheduled(self, now: datetime | None = None, limit: int = 10_000) -> int:
        with self._write() as conn:
            return conn.execute(_Q["job_promote_scheduled"],
                                {"now": self._now(now), "limit": limit}).rowcount

    # -- jobs: user actions ------------------------------------------------
    def job_set_status(self, tenant_id: str, job_id: str, sources: frozenset[JobStatus],
                       target: JobStatus, now: datetime | None = None,
                       max_attempts: int | None = None) -> Job | None:
        t = self._now(now)
        with self._write() as conn:
            row = conn.execute(_Q["job_get"], (job_id, tenant_id, t)).fetchone()
            if row is None:
                return None
            job = _job(row)
            if job.status not in sources:
                return None
            changes: dict[str, Any] = {"status": target.value, "updated_at": t}
            if target in TERMINAL:
                changes.update(finished_at=t, expires_at=t + (job.retention_s or 0),
                               lease_expires_at=None)
            elif target is JobStatus.QUEUED and job.status in TERMINAL:
                conn.execute(_Q["attempt_insert_unless_recorded"], (
                    job.id, job.attempt, job.status.value, _dumps(job.error),
                    _ts(job.started_at), _ts(job.finished_at), job.worker_id))
                changes.update(result=None, error=None, finished_at=None, expires_at=None,
                               lease_expires_at=None, run_at=t, worker_id=None)
                if max_attempts is not None:
                    changes["max_attempts"] = max_attempts
            assignments = ", ".join(f"{column} = :{column}" for column in changes)
            conn.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", {**changes, "id": job_id})
            row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row)

    def job_delete(self, tenant_id: str, job_id: str) -> list[str]:
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(_Q["job_descendants"], (job_id, tenant_id))]
            _delete_jobs(conn, ids)
        return ids

    def job_purge_expired(self, now: datetime | None = None,
                          limit: int = 1000) -> list[tuple[str, str]]:
        with self._write() as conn:
            rows = [(r[0], r[1]) for r in conn.execute(_Q["job_expired"], (self._now(now), limit))]
            _delete_jobs(conn, [job_id for _, job_id in rows])
        return rows

    # -- per-record errors and artifacts -------------------------------------
    def job_errors_insert_many(self, records: Sequence[JobErrorRecord]) -> None:
        if not records:
            return
        t = time.time()
        with self._write() as conn:
            conn.executemany(_Q["job_error_insert"], [
                (r.id, r.tenant_id, r.job_id, r.attempt, r.code, r.message, r.source,
                 _dumps(r.record), _dumps(r.retry_data), int(r.resolved), int(r.retried),
                 _ts(r.created_at) or t)
                for r in records
            ])

    def job_errors_list(self, tenant_id: str, job_id: str, after_id: str | None = None,
                        limit: int = 1000) -> list[JobErrorRecord]:
        with self._read() as conn:
            rows = conn.execute(_Q["job_errors_list"],
                                (tenant_id, job_id, after_id or "", limit)).fetchall()
        return [_error(r) for r in rows]

    def job_errors_update(self, tenant_id: str, job_id: str, error_ids: Sequence[str], *,
                          resolved: bool | None = None,
                          retried: bool | None = None) -> list[JobErrorRecord]:
        changed: list[JobErrorRecord] = []
        if not error_ids:
            return changed
        flags = {"tenant_id": tenant_id, "job_id": job_id,
                 "resolved": None if resolved is None else int(resolved),
                 "retried": None if retried is None else int(retried)}
        with self._write() as conn:
            for start in range(0, len(error_ids), 500):
                chunk = error_ids[start : start + 500]
                names = {f"e{i}": error_id for i, error_id in enumerate(chunk)}
                sql = _Q["job_errors_update"].replace("{ids}", ", ".join(f":{n}" for n in names))
                changed.extend(_error(r) for r in conn.execute(sql, {**flags, **names}))
        return sorted(changed, key=lambda e: e.id)

    def artifact_put(self, artifact: Artifact) -> None:
        a = artifact
        with self._write() as conn:
            conn.execute(_Q["artifact_upsert"], (
                a.tenant_id, a.job_id, a.name, a.blob_key, a.size, a.sha256, a.content_type,
                _ts(a.created_at) or time.time()))

    def artifact_list(self, tenant_id: str, job_id: str) -> list[Artifact]:
        with self._read() as conn:
            rows = conn.execute(_Q["artifact_list"], (tenant_id, job_id)).fetchall()
        return [Artifact(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _dt(r[7])) for r in rows]

    # -- coordination ------------------------------------------------------
    @contextmanager
    def maintenance_lock(self) -> Iterator[bool]:
        # A lease row rather than an advisory lock: held for 60 s unless released,
        # so a holder that dies blocks maintenance for a minute at most.
        t = time.time()
        with self._write() as conn:
            row = conn.execute(_Q["lock_take"], ("maintenance", self._holder, t + 60, t)).fetchone()
        held = row is not None
        try:
            yield held
        finally:
            if held:
                with self._write() as conn:
                    conn.execute(_Q["lock_release"], ("maintenance", self._holder))

    def queue_waiter(self) -> QueueWaiter:
        return _DataVersionWaiter(self.path)


class _DataVersionWaiter(QueueWaiter):
    """Polls `PRAGMA data_version`, which changes whenever another connection commits.

    It costs no disk read, so it can be asked often; a change only hints that
    jobs may have been queued, and the claim decides. Every 2 ms: a job waits
    about 1 ms for an idle worker to notice it, for a few % of a core per idle
    worker (5 ms before: 2.5 ms of waiting).
    """

    def __init__(self, path: str, interval_s: float = 0.002) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._interval_s = interval_s
        self._version = self._read_version()
        self._closed = threading.Event()

    def _read_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            version = self._read_version()
            if version != self._version:
                self._version = version
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._closed.wait(min(self._interval_s, remaining))
        return False

    def close(self) -> None:
        self._closed.set()
        self._conn.close()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


@contextmanager
def _translated() -> Iterator[None]:
    """sqlite3 errors become jobdock store errors at this boundary."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise errors.StoreError("referenced row does not exist (unknown tenant?)") from exc
        raise errors.StoreError(f"constraint violated: {exc}") from exc
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise errors.StoreUnavailable(f"SQLite database is busy: {exc}") from exc
        raise errors.StoreError(f"SQLite error: {exc}") from exc
    except sqlite3.Error as exc:
        raise errors.StoreError(f"SQLite error: {exc}") from exc


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (they hold no ';' except as separators)."""
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def _existing_for_key(existing: Job, new: NewJob) -> InsertResult:
    if existing.input != new.input or existing.kind != new.kind:
        raise errors.IdempotencyConflict(new.idempotency_key or "", existing.id)
    return InsertResult(existing, created=False)


def _new_job(new: NewJob, seq: int) -> Job:
    return Job(
        id=new.id, tenant_id=new.tenant_id, kind=new.kind, status=new.status, input=new.input,
        seq=seq, app_id=new.app_id, name=new.name, priority=new.priority, labels=new.labels,
        parent_id=new.parent_id, max_attempts=new.max_attempts, run_at=new.run_at,
        timeout_s=new.timeout_s, retention_s=new.retention_s,
        idempotency_key=new.idempotency_key, created_at=new.created_at,
        updated_at=new.created_at,
    )


def _rescue_decision(status: str, attempt: int, max_attempts: int, now: float,
                     base_s: float, max_s: float) -> tuple[JobStatus, float | None, dict[str, str]]:
    """What an expired lease becomes: canceled, failed, or queued again after backoff."""
    if status == JobStatus.CANCELING:
        return JobStatus.CANCELED, None, {"code": "lease_expired",
                                          "message": "canceled: worker stopped heartbeating"}
    if attempt >= max_attempts:
        return JobStatus.FAILED, None, {
            "code": "lease_expired",
            "message": "worker stopped heartbeating (lease expired) and no attempts are left"}
    return JobStatus.QUEUED, now + backoff_s(attempt, base_s, max_s), {
        "code": "lease_expired", "message": "worker stopped heartbeating (lease expired)"}


def _job_list_statement(query: JobQuery, now: float) -> tuple[str, list[Any]]:
    """job_list's statement and parameters (tests EXPLAIN it). With a kind and a
    finished status it reads jobs_kind_status in id order (a one-value `IN (?)` is an
    `=` to SQLite); the index's WHERE clause is repeated to let SQLite use it.
    Several kinds or finished statuses: one such walk per (kind, status), merged."""
    walks = index_walks(query)
    if len(walks) > 1:
        return _merged_walks(query, now, walks)
    where, params = _list_filters(query, now)
    if query.statuses and all(s in TERMINAL for s in query.statuses):
        where.append(_FINISHED)
    sql = (f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
           " ORDER BY tenant_id, id DESC LIMIT ?")
    return sql, [*params, query.page_size]


def _merged_walks(query: JobQuery, now: float,
                  walks: list[tuple[str, JobStatus]]) -> tuple[str, list[Any]]:
    """The page's ids from one walk of jobs_kind_status per (kind, status), each
    stopping after a page (SQLite reads an index in order for one value per column
    only; with `IN` lists it walked every job of the tenant, newest first)."""
    arms, params = [], []
    for kind, status in walks:
        where, values = _list_filters(dataclasses.replace(query, kinds=[kind],
                                                          statuses=[status]), now)
        arms.append(f"SELECT id FROM (SELECT id FROM jobs WHERE {' AND '.join(where)}"
                    f" AND {_FINISHED} ORDER BY tenant_id, id DESC LIMIT ?)")
        params += [*values, query.page_size]
    sql = (f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({' UNION ALL '.join(arms)}"
           " ORDER BY id DESC LIMIT ?) ORDER BY id DESC")
    return sql, [*params, query.page_size]


_record_id = itemgetter("id")

# The WHERE clause of the partial index jobs_kind_status (migration 0003).
_FINISHED = ("(status = 'succeeded' OR status = 'failed' OR status = 'canceled'"
             " OR status = 'skipped')")


def _list_filters(q: JobQuery, now: float) -> tuple[list[str], list[Any]]:
    where = ["tenant_id = ?", "(expires_at IS NULL OR expires_at > ?)"]
    params: list[Any] = [q.tenant_id, now]

    def add(clause: str, *values: Any) -> None:
        where.append(clause)
        params.extend(values)

    if q.kinds:
        add(f"kind IN ({', '.join('?' * len(q.kinds))})", *q.kinds)
    if q.statuses:
        add(f"status IN ({', '.join('?' * len(q.statuses))})", *[s.value for s in q.statuses])
    if q.parent_id is not None:
        add("parent_id = ?", q.parent_id)
    if q.app_id is not None:
        add("app_id = ?", q.app_id)
    for name, value in q.labels.items():
        add("json_extract(labels, ?) = ?", _json_path(name), value)
    for column, op, moment in (("created_at", ">=", q.created_at_gte),
                               ("created_at", "<=", q.created_at_lte),
                               ("finished_at", ">=", q.finished_at_gte),
                               ("finished_at", "<=", q.finished_at_lte)):
        if moment is not None:
            add(f"{column} {op} ?", moment.timestamp())
    for counter, least in q.stats_gte.items():
        add("coalesce(json_extract(stats, ?), 0) >= ?", _json_path(counter), least)
    for counter, most in q.stats_lte.items():
        add("coalesce(json_extract(stats, ?), 0) <= ?", _json_path(counter), most)
    if q.after_id is not None:
        add("id < ?", q.after_id)
    return where, params


def _json_path(key: str) -> str:
    return '$."' + key.replace('"', '""') + '"'


def _delete_jobs(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for table, column in (("job_errors", "job_id"), ("job_attempts", "job_id"),
                              ("artifacts", "job_id"), ("jobs", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
