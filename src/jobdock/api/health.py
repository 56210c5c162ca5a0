"""Probes and metrics: `/healthz`, `/readyz`, `/metrics`, and request latency.

None of these needs an API key: probes and Prometheus scrapers run without one.
`/metrics` shows counts by kind and status, never a tenant, a job or an input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import jobdock.errors as errors
from jobdock.api import problems
from jobdock.api.deps import EngineDep
from jobdock.metrics import REQUEST_SECONDS, job_metrics

__all__ = ["RequestMetrics", "router"]

log = logging.getLogger("jobdock.api")

router = APIRouter(tags=["probes"])
_NO_KEY: dict[str, Any] = {"security": []}


class Status(BaseModel):
    status: str


@router.get("/healthz", response_model=Status, openapi_extra=_NO_KEY)
def healthz() -> Status:
    """The process is up (it says nothing of the database)."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, openapi_extra=_NO_KEY,
            responses={503: {"description": "the database cannot be reached"}})
def readyz(engine: EngineDep) -> Any:
    """Ready to serve: the database answers."""
    try:
        engine.ping()
    except errors.StoreError as exc:
        log.warning("not ready: %s", exc)
        return problems.problem(503, problems.title_of(503), f"the database is not reachable:"
                                f" {exc.message}", "not_ready", {"Retry-After": "5"})
    return Status(status="ready")


@router.get("/metrics", response_class=Response, openapi_extra=_NO_KEY,
            responses={200: {"description": "Prometheus text exposition format",
                             "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
def metrics(engine: EngineDep) -> Response:
    """Prometheus metrics: jobs by kind and status, queue depth, claim and request latency."""
    families: list[Metric] = []
    up = GaugeMetricFamily("jobdock_store_up", "1 when the database answered this scrape")
    try:
        families = job_metrics(engine.job_counts(), engine.kinds)
        up.add_metric([], 1)
    except errors.StoreError as exc:
        log.warning("metrics without job counts: %s", exc)
        up.add_metric([], 0)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Fixed([*families, up]))
    body = generate_latest(REGISTRY) + generate_latest(scrape)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class _Fixed:
    """A collector of metric families computed for one scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class RequestMetrics:
    """ASGI middleware timing every HTTP request by method, route template and status.

    The route template (`/v1/jobs/{job_id}`), not the path, keeps the series few;
    requests no route matched are counted as `unmatched`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope.get("method", ""), template,
                                   str(status)).observe(time.perf_counter() - start)
