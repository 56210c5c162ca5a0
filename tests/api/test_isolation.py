"""The isolation matrix: every authenticated route by every kind of caller who must be refused.

Routes are read from the application at test time, so that routes added later
are covered without editing this file. Path parameters are filled with real
things of tenant `acme` and its app `a1` (a job, its error and artifact, an
upload, a webhook, a key, the app, the tenant). For each route:

- no key, a wrong key (garbage, unknown, a real prefix with a wrong secret), an
  expired key, a revoked key → 401;
- a key of the tenant without the scope the route requires → 403;
- a key of another tenant, and a key of another app of the same tenant → the
  very answer a missing id gets (status and body, the id itself aside), which
  is a 404 for everything but a tenant name (403, whether it exists or not);
  a collection answers without a trace of acme's (or a1's) things;
- after every refused request that could change something, nothing of acme's
  has changed (job status, updated_at and attempt; errors, artifacts, upload,
  webhook, keys, apps).

A vacuity guard first reads every GET route with a1's own key and expects a
success, so the 404s above are about the caller, not about a wrong fixture.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fastapi.routing
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx import Response

from jobdock import App
from jobdock.access import Access
from jobdock.ids import new_id
from jobdock.model import SCOPES, Upload, Webhook
from jobdock.worker.context import JobContext
from tests.api.conftest import bearer

A, B = "acme", "globex"
JOB_SCOPES = ("jobs:read", "jobs:write", "jobs:delete")
ARTIFACT = "a1-secret-report.txt"

# Routes that take no API key by design, each for a reason.
PUBLIC = {
    "/healthz", "/readyz", "/metrics",           # probes and Prometheus scrape
    "/docs", "/docs/oauth2-redirect", "/redoc",  # API documentation pages
    "/openapi.json",                             # the API description
    "/v1/blobs/{token}",                         # authorised by its signed, expiring token
}
# Served under their own auth headers and error bodies, as their seeds document;
# each dialect's and the dashboard's own tests check who sees what there.
OWN_AUTH_PREFIXES = ("/compat/", "/ui")


# -- the routes -------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    path: str
    method: str
    scopes: frozenset[str]  # scopes the route's dependencies require
    authenticated: bool     # some dependency checks the key

    @property
    def params(self) -> list[str]:
        return re.findall(r"{([^}:]+)(?::[^}]*)?}", self.path)

    @property
    def changes(self) -> bool:
        return self.method not in {"GET", "HEAD", "OPTIONS"}

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _dependency_names(dependant: Any) -> Iterator[str]:
    for sub in dependant.dependencies:
        yield getattr(sub.call, "__name__", "")
        yield from _dependency_names(sub)


def _route_entries(api: FastAPI) -> Iterator[tuple[Any, Any]]:
    """(original route, effective route) for every route, included routers flattened."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:  # FastAPI before lazily included routers: routes are flat
        for route in api.routes:
            yield route, route
        return
    for context in iter_contexts(api.routes):
        yield context.original_route, context


def api_routes(api: FastAPI) -> tuple[list[Route], list[str]]:
    """The API's routes under test, and the paths of routes that cannot be tested here."""
    routes: list[Route] = []
    untestable: list[str] = []
    by_name = {s.replace(":", "_"): s for s in SCOPES}
    for original, effective in _route_entries(api):
        path = str(effective.path)
        if path in PUBLIC or path.startswith(OWN_AUTH_PREFIXES):
            continue
        if not isinstance(original, APIRoute):
            untestable.append(f"{path} ({type(original).__name__}, not an API route)")
            continue
        names = set(_dependency_names(effective.dependant))
        scopes = frozenset(by_name[n.removeprefix("require_")] for n in names
                           if n.removeprefix("require_") in by_name)
        for method in sorted(effective.methods or ()):
            routes.append(Route(path, method, scopes,
                                bool(scopes) or "get_principal" in names))
    return routes, untestable


# -- the world: acme with apps a1 and a2, globex -----------------------------------
@dataclass
class World:
    jd: App
    access: Access
    app_a1: str
    app_a2: str
    failed_job: str
    queued_job: str
    error_id: str
    upload_id: str
    webhook_id: str
    target_key_id: str  # a key of a1, for /v1/keys/{id}
    keys: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    initial_keys: set[str] = field(default_factory=set)

    def a1_ids(self) -> set[str]:
        """What nobody outside app a1 may learn of."""
        return {self.app_a1, self.failed_job, self.queued_job, self.error_id, self.upload_id,
                self.webhook_id, self.target_key_id, ARTIFACT, *self.secrets}

    def acme_ids(self) -> set[str]:
        """What nobody outside tenant acme may learn of."""
        return self.a1_ids() | {self.app_a2} | {k.id for k in self.access.list_keys(A)}

    def key_without(self, scopes: frozenset[str]) -> str | None:
        """A tenant-wide acme key with every job scope but these (never admin, which
        implies them all); None when no scope is left to give."""
        granted = [s for s in JOB_SCOPES if s not in scopes]
        if not granted:
            return None
        name = "without " + " ".join(sorted(scopes))
        if name not in self.keys:
            self.keys[name], _ = self.access.create_key(A, scopes=granted)
        return self.keys[name]

    def snapshot(self) -> dict[str, Any]:
        """Everything of acme's that a refused request must leave as it was."""
        store = self.jd.engine.store
        jobs = {}
        for job_id in (self.failed_job, self.queued_job):
            job = store.job_get(A, job_id)
            jobs[job_id] = None if job is None else (job.status, job.updated_at, job.attempt,
                                                     job.max_attempts)
        return {
            "jobs": jobs,
            "errors": [(e.id, e.resolved, e.retried)
                       for e in store.job_errors_list(A, self.failed_job)],
            "artifacts": [a.name for a in store.artifact_list(A, self.failed_job)],
            "upload": store.upload_get(A, self.upload_id) is not None,
            "webhook": store.webhook_get(A, self.webhook_id),
            "keys": sorted((k.id, k.revoked_at) for k in store.key_list(A)
                           if k.id in self.initial_keys),
            "apps": sorted(a.id for a in store.app_list(A)
                           if a.id in (self.app_a1, self.app_a2)),
            "tenant": store.tenant_get(A) is not None,
        }


@pytest.fixture
def world(jd: App, client: TestClient) -> World:
    access = Access(jd.engine.store)
    for tenant in (A, B):
        jd.create_tenant(tenant)
    app_a1 = access.create_app(A, "a1").id
    app_a2 = access.create_app(A, "a2").id

    @jd.job("isolation-probe", max_attempts=1)
    def probe(ctx: JobContext, input: dict[str, Any]) -> None:
        ctx.error("row 1 is bad", code="422", record={"row": 1})
        ctx.artifact(ARTIFACT, b"only for a1", content_type="text/plain")
        raise RuntimeError("fails on purpose")

    failed = jd.submit("isolation-probe", {}, tenant=A, app_id=app_a1)
    jd.run_worker(concurrency=1, burst=True)
    failed_job = jd.get(failed.id, tenant=A)
    assert failed_job.status == "failed", failed_job
    queued_job = jd.submit("isolation-probe", {}, tenant=A, app_id=app_a1)  # no worker runs it
    (error,) = jd.errors(failed.id, tenant=A)

    upload = Upload(id=new_id(), tenant_id=A, name="a1.csv", size=3, sha256="0" * 64,
                    content_type="text/csv", blob_key=f"{A}/uploads/x/a1.csv", app_id=app_a1)
    jd.engine.store.upload_create(upload)
    webhook = Webhook(id=new_id(), tenant_id=A, url="https://a1.example/hook",
                      events=["job.succeeded"], secret="whsec_" + "a" * 32, app_id=app_a1)
    jd.engine.store.webhook_create(webhook)

    keys: dict[str, str] = {}
    keys["a1"], _ = access.create_key(A, app_id=app_a1, scopes=SCOPES)
    keys["a2"], _ = access.create_key(A, app_id=app_a2, scopes=SCOPES)
    keys["b"], _ = access.create_key(B, scopes=SCOPES)
    target, target_record = access.create_key(A, app_id=app_a1, scopes=JOB_SCOPES)
    long_ago = datetime.now(UTC) - timedelta(days=2)
    keys["expired"], _ = access.create_key(A, scopes=SCOPES, expires_in_s=3600, now=long_ago)
    keys["revoked"], revoked = access.create_key(A, scopes=SCOPES)
    access.revoke_key(revoked.id)

    w = World(jd, access, app_a1, app_a2, failed.id, queued_job.id, error.id, upload.id,
              webhook.id, target_record.id, keys, secrets=[
                  k.rsplit("_", 1)[1] for k in (*keys.values(), target)])
    w.initial_keys = {k.id for k in access.list_keys(A)}
    return w


# -- filling paths ------------------------------------------------------------------
@dataclass(frozen=True)
class Fill:
    values: dict[str, str]       # parameter -> a real thing of acme / a1
    missing: dict[str, str]      # the same with the first parameter missing
    refusal: int                 # what another tenant's / app's key gets for it
    app_owned: bool              # the first parameter belongs to app a1
    label: str


def fills(route: Route, w: World) -> list[Fill] | str:
    """The ways to fill `route`'s path, or why it cannot be filled."""
    params = route.params
    if not params:
        return [Fill({}, {}, 0, False, "collection")]
    segments = route.path.strip("/").split("/")
    values: dict[str, str] = {}
    firsts: list[tuple[str, str, int, bool, str]] = []  # (value, missing, refusal, app, label)
    for param in params:
        index = segments.index("{" + param + "}") if "{" + param + "}" in segments else -1
        owner = segments[index - 1] if index > 0 else ""
        candidates: list[tuple[str, str, int, bool, str]] = {
            "jobs": [(w.failed_job, new_id(), 404, True, "failed job"),
                     (w.queued_job, new_id(), 404, True, "queued job")],
            "artifacts": [(ARTIFACT, "missing.txt", 404, True, "artifact")],
            "errors": [(w.error_id, new_id(), 404, True, "error")],
            "uploads": [(w.upload_id, new_id(), 404, True, "upload")],
            "webhooks": [(w.webhook_id, new_id(), 404, True, "webhook")],
            "keys": [(w.target_key_id, new_id(), 404, True, "key")],
            "apps": [(w.app_a1, new_id(), 404, True, "app")],
            "tenants": [(A, "ghost-tenant", 403, False, "tenant")],
        }.get(owner, [])
        if not candidates:
            return (f"cannot fill {{{param}}}: teach test_isolation.fills() what a"
                    f" '{owner}' parameter names")
        if param == params[0]:
            firsts = candidates if len(params) == 1 else candidates[:1]
        else:
            values[param] = candidates[0][0]  # sub-things belong to the failed job
    return [Fill({params[0]: value, **values}, {params[0]: missing, **values}, refusal, app,
                 label) for value, missing, refusal, app, label in firsts]


def url(route: Route, values: dict[str, str]) -> str:
    path = route.path
    for name, value in values.items():
        path = re.sub(r"{" + re.escape(name) + r"(?::[^}]*)?}", value, path)
    return path


def normalised(response: Response, *values: str) -> str:
    text = response.text
    for value in values:
        text = text.replace(value, "<id>")
    return text


# -- the matrix -----------------------------------------------------------------------
@dataclass
class Tally:
    checks: int = 0
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def check(self, ok: bool, where: str, message: str) -> None:
        self.checks += 1
        if not ok:
            self.failures.append(f"{where}: {message}")


def call(client: TestClient, route: Route, path: str, key: str | None) -> Response:
    headers = bearer(key) if key is not None else {}
    body = {} if route.method in {"POST", "PUT", "PATCH"} else None
    return client.request(route.method, path, headers=headers, json=body)


def run_matrix(client: TestClient, w: World) -> Tally:
    tally = Tally()
    routes, untestable = api_routes(client.app)
    for path in untestable:
        tally.failures.append(f"{path}: under the API but not checkable by this matrix")
    a1_prefix = w.keys["a1"].rsplit("_", 1)[0]
    unauthenticated: dict[str, str | None] = {
        "no key": None,
        "garbage key": "not-a-key",
        "unknown key": f"jdk_{'0' * 12}_{'0' * 48}",
        "right prefix, wrong secret": f"{a1_prefix}_{'f' * 48}",
        "expired key": w.keys["expired"],
        "revoked key": w.keys["revoked"],
    }
    before = w.snapshot()

    def unchanged(route: Route, where: str) -> None:
        nonlocal before
        if route.changes:
            after = w.snapshot()
            changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            tally.check(not changed, where, f"acme's things changed (before, after): {changed}")
            before = after

    for route in routes:
        if not route.authenticated:
            tally.failures.append(f"{route}: no dependency checks the API key")
            continue
        ways = fills(route, w)
        if isinstance(ways, str):
            tally.failures.append(f"{route}: {ways}")
            continue
        for fill in ways:
            path = url(route, fill.values)
            where = f"{route} [{fill.label}]"
            # Vacuity guard: the owner reads what the refusals below are about.
            if (route.method == "GET" and fill.values and not path.endswith("/events")
                    and fill.label != "queued job"):  # an event stream of a live job never ends
                owner = call(client, route, path, w.keys["a1"])
                tally.check(owner.status_code < 400, f"{where} as a1",
                            f"the owner gets {owner.status_code} {owner.text[:200]}: the"
                            " fixture does not name a real thing")
            for case, key in unauthenticated.items():
                response = call(client, route, path, key)
                tally.check(response.status_code == 401, f"{where} {case}",
                            f"{response.status_code} {response.text[:200]}")
                text = normalised(response, *fill.values.values())
                leaked = sorted(v for v in w.acme_ids() if v in text)
                tally.check(not leaked, f"{where} {case}", f"the answer mentions {leaked}")
                unchanged(route, f"{where} {case}")
            lacking = w.key_without(route.scopes) if route.scopes else None
            if lacking is not None:
                response = call(client, route, path, lacking)
                tally.check(response.status_code == 403, f"{where} key without"
                            f" {'/'.join(sorted(route.scopes))}",
                            f"{response.status_code} {response.text[:200]}")
                unchanged(route, f"{where} key without scope")
            else:
                tally.skipped.append(f"{where}: no key lacks only the scopes it requires")
            for case, key, secret_ids, owned in (
                    ("other tenant's key", w.keys["b"], w.acme_ids(), True),
                    ("other app's key", w.keys["a2"], w.a1_ids(), fill.app_owned)):
                here = f"{where} {case}"
                if fill.values and not owned:
                    tally.skipped.append(f"{here}: {fill.label} is not an app's")
                    continue
                response = call(client, route, path, key)
                text = normalised(response, *fill.values.values())
                if fill.values:
                    missing = call(client, route, url(route, fill.missing), key)
                    tally.check(response.status_code == fill.refusal, here,
                                f"{response.status_code} (want {fill.refusal}) {text[:200]}")
                    tally.check(
                        (response.status_code, text)
                        == (missing.status_code, normalised(missing, *fill.missing.values())),
                        here, f"answers unlike a missing id: {response.status_code} {text[:200]}"
                              f" vs {missing.status_code} {missing.text[:200]}")
                else:
                    tally.check(response.status_code < 500, here,
                                f"{response.status_code} {text[:200]}")
                leaked = sorted(v for v in secret_ids if v in text)
                tally.check(not leaked, here, f"the answer mentions {leaked}: {text[:300]}")
                unchanged(route, here)
    return tally


def test_isolation_matrix(client: TestClient, world: World,
                          capsys: pytest.CaptureFixture[str]) -> None:
    tally = run_matrix(client, world)
    routes, _ = api_routes(client.app)
    with capsys.disabled():
        print(f"\nisolation matrix: {len(routes)} routes, {tally.checks} checks,"
              f" {len(tally.skipped)} not applicable, {len(tally.failures)} failures")
    assert tally.checks > 0
    assert not tally.failures, "\n".join(tally.failures)


def test_the_matrix_sees_routes_of_included_routers(client: TestClient) -> None:
    routes, _ = api_routes(client.app)
    seen = {str(r) for r in routes}
    assert {"POST /v1/keys", "DELETE /v1/keys/{key_id}", "GET /v1/tenants/{name}"} <= seen
    assert not any(r.path in PUBLIC for r in routes)

