"""The HTTP API: `create_api(app)` builds the FastAPI application."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from jobdock.access import Access
from jobdock.api import admin, health, native, openapi, problems, ratelimit, retry_data
from jobdock.api import files as files_api
from jobdock.api import webhooks as webhooks_api
from jobdock.api.limits import BodyLimits
from jobdock.app import App
from jobdock.blobs.signing import resolve_secret
from jobdock.dialects import amperity, integrator
from jobdock.metrics import CLAIM_SECONDS
from jobdock.worker import Worker


def create_api(app: App | None = None, workers: int = 0) -> FastAPI:
    """The API for `app` (built-in kinds only when None), with `workers` embedded
    worker threads running its jobs (0 when separate `jobdock worker` processes do)."""
    the_app = app or App()
    the_app.observe_claims(CLAIM_SECONDS.observe)  # workers of this process feed /metrics
    state: dict[str, tuple[Worker, threading.Thread]] = {}

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        the_app.engine  # noqa: B018 - open the store and apply migrations at start
        if workers > 0:
            worker = the_app.worker(concurrency=workers)
            thread = threading.Thread(target=worker.run, name="jobdock-embedded", daemon=True)
            thread.start()
            state["worker"] = (worker, thread)
        yield
        if "worker" in state:
            worker, thread = state.pop("worker")
            worker.stop()
            thread.join(worker.shutdown_grace_s)

    api = FastAPI(title="jobdock", version="0.1.0", lifespan=lifespan,
                  description="Durable asynchronous jobs that people can watch.")
    api.state.jobdock = the_app
    api.state.access = Access(the_app.engine.store, key_cache_s=the_app.settings.key_cache_s)
    api.state.secret = resolve_secret(the_app.settings.secret_key,
                                      Path(the_app.settings.data_dir) / "secret.key")
    problems.install(api)
    ratelimit.install(api, the_app.settings)
    api.include_router(admin.router)
    api.include_router(webhooks_api.router)
    api.include_router(files_api.router)
    api.include_router(native.router)
    api.include_router(retry_data.router)
    api.include_router(health.router)
    api.include_router(amperity.router)
    api.include_router(integrator.router)
    api.add_middleware(BodyLimits, max_bytes=the_app.settings.max_body_bytes)
    api.add_middleware(health.RequestMetrics)  # outermost: times every answer
    openapi.install(api)
    return api
