"""JobContext: what a job function gets besides its input."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from jobdock.blobs import blob_key
from jobdock.engine import Engine, SubmitRequest
from jobdock.errors import JobCanceled
from jobdock.ids import is_id, new_id
from jobdock.model import Artifact, Job, JobErrorRecord

if TYPE_CHECKING:
    from jobdock.worker.runner import Worker

T = TypeVar("T")


class JobContext:
    """The running attempt of one job, as its function sees it.

    Counters, progress and per-record errors are kept here and written by the
    worker's flusher in batches, never one database round trip per record.
    """

    def __init__(self, job: Job, worker: Worker) -> None:
        # A worker makes one of these per claimed job, on its claim loop, which is
        # the worker's busiest thread: keep this cheap. Counters and progress are
        # copied from the job on their first change, the logger is made on first
        # use, and cancellation is a flag under the worker's shared condition
        # rather than a threading.Event per job.
        self.job = job
        self._worker = worker
        self._lock = threading.Lock()  # counters and progress: job thread vs flusher
        self._stats: dict[str, int] | None = None  # None: still the job's, unchanged
        self._progress: dict[str, Any] | None = None
        self._dirty = False
        self._cancelled = False  # written under worker._cancel_cond
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self.lost = False  # the lease was lost: whatever this attempt does next is refused
        self.timed_out = False

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger of the job's kind that adds the job id and attempt to each record."""
        if self._log is None:
            self._log = logging.LoggerAdapter(logging.getLogger(f"jobdock.job.{self.job.kind}"),
                                              {"job_id": self.job.id, "attempt": self.job.attempt})
        return self._log

    @property
    def engine(self) -> Engine:
        """The engine this job runs under, for built-in kinds that read the store."""
        return self._worker.engine

    # -- cancellation ------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop (cancel, timeout, lost lease, shutdown)."""
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise JobCanceled("timed out" if self.timed_out else "job was canceled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on cancel; True when cancelled."""
        # One condition serves every job of the worker: a cancel wakes all the
        # jobs that wait, and each goes back to sleep unless it is the one.
        with self._worker._cancel_cond:
            return self._worker._cancel_cond.wait_for(lambda: self._cancelled, seconds)

    def _request_cancel(self) -> None:
        with self._worker._cancel_cond:
            self._cancelled = True
            self._worker._cancel_cond.notify_all()

    # -- counters and progress ---------------------------------------------
    def count(self, **counters: int) -> None:
        """Add to named counters (read, success, errors, ...)."""
        with self._lock:
            stats = self._stats
            if stats is None:
                stats = self._stats = dict(self.job.stats)
            for name, value in counters.items():
                stats[name] = stats.get(name, 0) + value
            self._dirty = True

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        with self._lock:
            self._progress = {"done": done, "total": total, "message": message}
            self._dirty = True

    def progress_iter(self, items: Iterable[T], total: int | None = None,
                      message: str | None = None) -> Iterator[T]:
        """Iterate, reporting progress and stopping (JobCanceled) when cancelled."""
        if total is None and isinstance(items, Sized):
            total = len(items)
        for done, item in enumerate(items, start=1):
            self.raise_if_cancelled()
            yield item
            self.progress(done, total, message)

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.job.stats if self._stats is None else self._stats)

    def _take_progress(self) -> tuple[dict[str, int], dict[str, Any]] | None:
        """Counters and progress if they changed since the last call (for the flusher)."""
        with self._lock:
            if not self._dirty:
                return None
            self._dirty = False
            return (dict(self.job.stats if self._stats is None else self._stats),
                    dict(self.job.progress if self._progress is None else self._progress))

    def _snapshot(self) -> tuple[dict[str, int] | None, dict[str, Any] | None]:
        """Counters and progress at the attempt's end, each None when it never changed."""
        with self._lock:
            stats, progress = self._stats, self._progress
            return (dict(stats) if stats is not None and stats != self.job.stats else None,
                    dict(progress) if progress is not None and progress != self.job.progress
                    else None)

    # -- per-record errors -------------------------------------------------
    def error(self, message: str, code: str | None = None, source: str | None = None,
              record: Any = None, retry_data: Any = None) -> None:
        """Record a per-record error (a row that failed, an object that could not be read)."""
        self._worker._buffer_error(JobErrorRecord(
            id=new_id(), tenant_id=self.job.tenant_id, job_id=self.job.id,
            attempt=self.job.attempt, message=message, code=code, source=source,
            record=record, retry_data=retry_data))

    # -- files -------------------------------------------------------------
    def artifact(self, name: str, data: bytes | str | Path | BinaryIO | Iterable[bytes],
                 content_type: str = "application/octet-stream") -> Artifact:
        """Store a result file of this job (bytes, a path, a binary stream or chunks)."""
        key = blob_key(self.job.tenant_id, self.job.id, "artifacts", name)
        if isinstance(data, str):
            data = Path(data)
        if isinstance(data, Path):
            with data.open("rb") as f:
                info = self._worker.engine.blobs.put(key, f)
        else:
            info = self._worker.engine.blobs.put(key, data)
        artifact = Artifact(self.job.tenant_id, self.job.id, name, key, info.size, info.sha256,
                            content_type)
        self._worker.engine.store.artifact_put(artifact)
        return artifact

    def open(self, name: str) -> BinaryIO:
        """Open an upload by id, an artifact of this job by name, or a blob of this tenant
        by key.

        An upload must be this job's tenant's (and its app's, for a job of an app):
        any other answers NotFound, as a missing one does. A 24-hex name is taken
        for an upload id, never for an artifact name.
        """
        engine = self._worker.engine
        blobs = engine.blobs
        if is_id(name):
            return blobs.open(engine.upload(self.job.tenant_id, name, self.job.app_id).blob_key)
        if "/" not in name:
            return blobs.open(blob_key(self.job.tenant_id, self.job.id, "artifacts", name))
        if not name.startswith(self.job.tenant_id + "/"):
            raise PermissionError(f"blob {name!r} belongs to another tenant")
        return blobs.open(name)

    # -- children ----------------------------------------------------------
    def spawn(self, kind: str, input: dict[str, Any], **options: Any) -> Job:
        """Submit a child job of this one (same tenant and app)."""
        request = SubmitRequest(kind=kind, input=input, parent_id=self.job.id,
                                app_id=self.job.app_id, **options)
        return self._worker.engine.submit(request, tenant=self.job.tenant_id)
