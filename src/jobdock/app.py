"""App: the Python entry point. Register job kinds, submit and manage jobs, run workers."""

from __future__ import annotations

import builtins
import inspect
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jobdock.blobs import open_blobs
from jobdock.config import Settings
from jobdock.engine import Engine, KindSpec, SubmitRequest
from jobdock.errors import JobdockError
from jobdock.kinds import BUILTIN
from jobdock.model import Job, JobErrorRecord, JobQuery, JobStatus, Page, Tenant
from jobdock.store import open_store
from jobdock.webhooks import Webhooks
from jobdock.worker import Worker, WorkerStats
from jobdock.worker.runner import ClaimObserver, JobFunction

if TYPE_CHECKING:
    from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])
Submission = SubmitRequest | tuple[str, Any] | dict[str, Any]


class App:
    """A jobdock application: its kinds, and a connection to its store and blobs.

    Settings come from JOBDOCK_* environment variables unless given here. The
    store is opened (and migrated) on first use.
    """

    def __init__(self, database_url: str | None = None, blob_url: str | None = None,
                 settings: Settings | None = None, **overrides: Any) -> None:
        given = {"database_url": database_url, "blob_url": blob_url, **overrides}
        values = {k: v for k, v in given.items() if v is not None}
        self.settings = settings.model_copy(update=values) if settings else Settings(**values)
        self.functions: dict[str, JobFunction] = {}
        self.specs: dict[str, KindSpec] = {}
        self._engine: Engine | None = None
        self._webhooks: Webhooks | None = None
        self._engine_lock = threading.Lock()
        self._applied_at_start: builtins.list[int] = []
        self._observe_claim: ClaimObserver | None = None
        for spec, function in BUILTIN:
            self._register(spec, function)

    # -- kinds -------------------------------------------------------------
    def job(self, name: str, *, max_attempts: int = 3, timeout_s: float | None = None,
            retention_s: int | None = None, priority: int = 0,
            input_model: type[BaseModel] | None = None,
            description: str | None = None) -> Callable[[F], F]:
        """Register a function as the job kind `name`.

        The function is called as `function(ctx, input)`. When its `input`
        parameter is annotated with a pydantic model (or `input_model` is
        given), submitted input is validated against it and the function
        receives the model."""
        def register(function: F) -> F:
            model = input_model or _input_model_of(function)
            spec = KindSpec(name, max_attempts=max_attempts, timeout_s=timeout_s,
                            retention_s=retention_s, priority=priority, input_model=model,
                            description=description or (inspect.getdoc(function) or "").strip())
            self._register(spec, function)
            return function

        return register

    def _register(self, spec: KindSpec, function: JobFunction) -> None:
        if spec.max_attempts < 1:
            raise ValueError(f"kind {spec.name!r}: max_attempts must be at least 1")
        self.specs[spec.name] = spec
        self.functions[spec.name] = function
        if self._engine is not None:
            self._engine.register_kind(spec)

    # -- store -------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                store = open_store(self.settings.database_url,
                                   synchronous=self.settings.sqlite_synchronous,
                                   pool_max=self.settings.pg_pool_max)
                self._applied_at_start = store.migrate()
                blobs = open_blobs(self.settings.blob_url, self.settings)
                engine = Engine(store, blobs, self.settings)
                for spec in self.specs.values():
                    engine.register_kind(spec)
                self._webhooks = Webhooks(engine)
                self._engine = engine
            return self._engine

    @property
    def webhooks(self) -> Webhooks:
        """Webhook subscriptions; their deliveries are jobs of the `webhook` kind."""
        self.engine  # noqa: B018 - opens the store and sets up webhooks with the engine
        assert self._webhooks is not None
        return self._webhooks

    def migrate(self) -> builtins.list[int]:
        """Apply pending migrations; return the versions applied (also those applied when
        the store was opened)."""
        engine = self.engine
        applied, self._applied_at_start = self._applied_at_start, []
        return applied + engine.store.migrate()

    def close(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.store.close()
                self._engine = None
                self._webhooks = None

    # -- tenants -----------------------------------------------------------
    def create_tenant(self, name: str, retention_s: int | None = None) -> Tenant:
        return self.engine.create_tenant(name, retention_s)

    def tenants(self) -> builtins.list[Tenant]:
        return self.engine.store.tenant_list()

    # -- jobs --------------------------------------------------------------
    def submit(self, kind: str, input: Any = None, *, tenant: str = "default",
               name: str | None = None, labels: dict[str, str] | None = None,
               priority: int | None = None, run_at: datetime | None = None,
               max_attempts: int | None = None, timeout_s: float | None = None,
               retention_s: int | None = None, idempotency_key: str | None = None,
               parent_id: str | None = None, app_id: str | None = None) -> Job:
        request = SubmitRequest(
            kind=kind, input={} if input is None else input, name=name, labels=labels,
            priority=priority, run_at=run_at, max_attempts=max_attempts, timeout_s=timeout_s,
            retention_s=retention_s, idempotency_key=idempotency_key, parent_id=parent_id,
            app_id=app_id)
        return self.engine.submit(request, tenant)

    def submit_many(self, jobs: Iterable[Submission], *,
                    tenant: str = "default") -> builtins.list[Job]:
        """Submit many jobs in one transaction: all or none.

        Each item is a SubmitRequest, a (kind, input) pair, or a dict of
        SubmitRequest fields."""
        return self.engine.submit_many([_request(item) for item in jobs], tenant)

    def get(self, job_id: str, *, tenant: str = "default") -> Job:
        return self.engine.get(tenant, job_id)

    def list(self, *, tenant: str = "default", status: str | Sequence[str] | None = None,
             kind: str | Sequence[str] | None = None, parent_id: str | None = None,
             labels: dict[str, str] | None = None, page_size: int = 100,
             page_token: str | None = None) -> Page[Job]:
        query = JobQuery(tenant_id=tenant, kinds=_as_list(kind),
                         statuses=[JobStatus(s) for s in _as_list(status) or []] or None,
                         parent_id=parent_id, labels=labels or {}, page_size=page_size)
        return self.engine.list_jobs(query, page_token)

    def cancel(self, job_id: str, *, tenant: str = "default", hard: bool = False) -> Job:
        return self.engine.cancel(tenant, job_id, hard=hard)

    def retry(self, job_id: str, *, tenant: str = "default") -> Job:
        return self.engine.retry(tenant, job_id)

    def delete(self, job_id: str, *, tenant: str = "default") -> builtins.list[str]:
        return self.engine.delete(tenant, job_id)

    def children(self, job_id: str, *, tenant: str = "default") -> builtins.list[Job]:
        return self.engine.children(tenant, job_id)

    def errors(self, job_id: str, *, tenant: str = "default", after_id: str | None = None,
               limit: int = 1000) -> builtins.list[JobErrorRecord]:
        return self.engine.errors(tenant, job_id, after_id, limit)

    def wait(self, job_id: str, *, tenant: str = "default", timeout_s: float = 60.0,
             poll_s: float = 0.05) -> Job:
        """Poll until the job is terminal (or the timeout passes); return it."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id, tenant=tenant)
            if job.terminal or time.monotonic() >= deadline:
                return job
            time.sleep(poll_s)

    # -- workers -----------------------------------------------------------
    def observe_claims(self, observe: ClaimObserver) -> None:
        """Tell `observe` how long each claim of this App's workers takes (in seconds).

        The HTTP API does, for its /metrics; `jobdock worker` processes serve no
        metrics and do not."""
        self._observe_claim = observe

    def worker(self, concurrency: int = 8, burst: bool = False) -> Worker:
        return Worker(self.engine, dict(self.functions), concurrency=concurrency, burst=burst,
                      observe_claim=self._observe_claim)

    def run_worker(self, concurrency: int = 8, burst: bool = False) -> WorkerStats:
        return self.worker(concurrency, burst).run()


def _input_model_of(function: Callable[..., Any]) -> type[BaseModel] | None:
    parameters = list(inspect.signature(function).parameters.values())
    if len(parameters) < 2:
        raise TypeError("a job function takes (ctx, input)")
    try:
        hints = inspect.get_annotations(function, eval_str=True)
    except NameError:
        return None
    annotation = hints.get(parameters[1].name)
    # No class is a pydantic model unless pydantic is loaded: an app whose kinds take
    # plain input never loads it (a worker starts faster and smaller without it).
    pydantic = sys.modules.get("pydantic")
    if pydantic and inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        return cast("type[BaseModel]", annotation)
    return None


def _request(item: Submission) -> SubmitRequest:
    if isinstance(item, SubmitRequest):
        return item
    if isinstance(item, tuple):
        kind, value = item
        return SubmitRequest(kind=kind, input=value)
    if isinstance(item, dict):
        return SubmitRequest(**item)
    raise JobdockError(f"cannot submit {item!r}: give (kind, input), a dict or a SubmitRequest")


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)
