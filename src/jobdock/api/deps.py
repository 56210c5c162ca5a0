"""Dependencies shared by the routers: the app's engine, the caller's principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from jobdock.access import Access, Principal
from jobdock.app import App
from jobdock.engine import Engine
from jobdock.model import Job


def get_app(request: Request) -> App:
    app: App = request.app.state.jobdock
    return app


def get_engine(request: Request) -> Engine:
    return get_app(request).engine


async def engine_dependency(request: Request) -> Engine:
    # async: FastAPI runs a sync dependency in the thread pool, a hop for nothing here.
    return get_app(request).engine


def get_access(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


def bearer_token(request: Request) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def get_principal(request: Request) -> Principal:
    """The caller; 401 without a valid key. Cached on the request (the rate limiter
    has usually authenticated it already); the store is read in the thread pool."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is None:
        cached = await run_in_threadpool(get_access(request).authenticate, bearer_token(request))
        request.state.principal = cached
    return cached


def scope(name: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller, who must hold scope `name` (403 otherwise)."""

    async def require(request: Request) -> Principal:
        principal = await get_principal(request)
        principal.require(name)
        return principal

    require.__name__ = f"require_{name.replace(':', '_')}"
    return require


def visible_job(engine: Engine, principal: Principal, job_id: str) -> Job:
    """The caller's job. One that is missing, expired, another tenant's or (for an app's
    key) another app's is JobNotFound, all alike: nobody learns of jobs they may not see."""
    return engine.get(principal.tenant_id, job_id, app_id=principal.app_id)


EngineDep = Annotated[Engine, Depends(engine_dependency)]
AccessDep = Annotated[Access, Depends(get_access)]
Reader = Annotated[Principal, Depends(scope("jobs:read"))]
Writer = Annotated[Principal, Depends(scope("jobs:write"))]
Deleter = Annotated[Principal, Depends(scope("jobs:delete"))]
Admin = Annotated[Principal, Depends(scope("admin"))]
