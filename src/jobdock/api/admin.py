"""Admin routes: tenants, apps and API keys (`admin` scope).

Who administers what:
- an admin key of the operator tenant (`default`, not bound to an app)
  administers every tenant, chosen by a `tenant` field or query parameter;
- an admin key of another tenant administers that tenant only;
- an admin key bound to an app administers that app only: it sees its own app
  and its keys, and creates keys for it alone.

Something an admin may not see answers exactly like something missing (404).
A key's secret is in the response that creates it and nowhere else; no
response carries a key's hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

import jobdock.errors as errors
from jobdock.access import DEFAULT_SCOPES, Access, Principal, parse_duration
from jobdock.api.deps import AccessDep, Admin, EngineDep
from jobdock.model import ApiKey, AppRecord, Tenant

router = APIRouter(prefix="/v1", tags=["admin"])

Scope = Literal["jobs:read", "jobs:write", "jobs:delete", "admin"]
# Routes that act on a tenant named in the request: an operator may name a missing one.
NO_TENANT: dict[int | str, dict[str, Any]] = {404: {"description": "no such tenant"}}
TenantQuery = Annotated[str | None, Query(
    description="tenant to act on (operator admins only); the key's own tenant when omitted")]


# -- schemas -------------------------------------------------------------------
class _Strict(BaseModel):
    # A misspelt field (`scope` for `scopes`) must fail, not fall back to a default.
    model_config = ConfigDict(extra="forbid")


class TenantCreate(_Strict):
    name: str = Field(description="tenant id: lower-case letters, digits, '-' and '_'")
    retention_s: int | None = Field(None, ge=0, description="keep finished jobs this long")


class TenantOut(BaseModel):
    id: str
    created_at: datetime
    retention_s: int | None


class AppCreate(_Strict):
    name: str
    tenant: str | None = Field(None, description="the caller's tenant when omitted")


class AppOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    created_at: datetime | None


class KeyCreate(_Strict):
    tenant: str | None = Field(None, description="the caller's tenant when omitted")
    app: str | None = Field(None, description="id or name of the app the key is bound to")
    scopes: list[Scope] = Field(default_factory=lambda: [cast(Scope, s) for s in DEFAULT_SCOPES],
                                min_length=1)
    expires_in: str | float | None = Field(
        None, description="lifetime: '30d', '12h', '15m', '90s' or seconds; never expires when"
        " omitted")
    name: str | None = Field(None, max_length=200, description="a note for people")


class KeyOut(BaseModel):
    id: str
    prefix: str = Field(description="the public start of the key, e.g. jdk_3f2a…")
    tenant_id: str
    app_id: str | None
    scopes: list[str]
    name: str | None
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: Literal["active", "expired", "revoked"]


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown here once, never stored")


class TenantList(BaseModel):
    items: list[TenantOut]


class AppList(BaseModel):
    items: list[AppOut]


class KeyList(BaseModel):
    items: list[KeyOut]


# -- who may act on what ---------------------------------------------------------
def _operator(principal: Principal) -> bool:
    """Administers every tenant: an admin of the operator tenant not bound to an app."""
    return principal.operator and principal.app_id is None


def _tenant_to_administer(principal: Principal, tenant: str | None) -> str:
    """The tenant a request acts on (the caller's own when None); Forbidden unless allowed."""
    principal.require("admin")
    target = tenant or principal.tenant_id
    if principal.app_id is not None:
        if target != principal.tenant_id:
            raise errors.Forbidden("an app's admin key administers its own app only")
    elif not _operator(principal) and target != principal.tenant_id:
        raise errors.Forbidden("an admin key administers its own tenant only")
    return target


def _visible_key(access: Access, principal: Principal, key_id: str) -> ApiKey:
    """The key, when the caller administers it; NotFound otherwise, as for a missing key."""
    tenant = None if _operator(principal) else principal.tenant_id
    for key in access.list_keys(tenant):
        if key.id == key_id and (principal.app_id is None or key.app_id == principal.app_id):
            return key
    raise errors.NotFound(f"API key {key_id!r} not found", key_id=key_id)


def _find_app(access: Access, tenant: str, ref: str) -> AppRecord | None:
    """An app of `tenant` by id, else by name."""
    found = access.store.app_get(tenant, ref)
    if found is not None:
        return found
    return next((a for a in access.list_apps(tenant) if a.name == ref), None)


# -- rendering -------------------------------------------------------------------
def _tenant_out(tenant: Tenant) -> TenantOut:
    return TenantOut(id=tenant.id, created_at=tenant.created_at, retention_s=tenant.retention_s)


def _app_out(app: AppRecord) -> AppOut:
    return AppOut(id=app.id, tenant_id=app.tenant_id, name=app.name, created_at=app.created_at)


def key_state(key: ApiKey, now: datetime | None = None) -> Literal["active", "expired",
                                                                     "revoked"]:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def _key_fields(key: ApiKey) -> dict[str, object]:
    # Field by field, so that the hash can never slip into a response.
    return {"id": key.id, "prefix": key.prefix, "tenant_id": key.tenant_id,
            "app_id": key.app_id, "scopes": key.scopes, "name": key.name,
            "created_at": key.created_at, "expires_at": key.expires_at,
            "revoked_at": key.revoked_at, "state": key_state(key)}


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut.model_validate(_key_fields(key))


# -- tenants ---------------------------------------------------------------------
@router.post("/tenants", status_code=201, response_model=TenantOut,
             summary="Create a tenant (operator admins only)",
             responses={409: {"description": "a tenant of that name exists"}})
def create_tenant(body: TenantCreate, principal: Admin, engine: EngineDep,
                  response: Response) -> TenantOut:
    if not _operator(principal):
        raise errors.Forbidden("only an admin key of the operator tenant creates tenants")
    tenant = engine.create_tenant(body.name, body.retention_s)
    response.headers["Location"] = f"/v1/tenants/{tenant.id}"
    return _tenant_out(tenant)


@router.get("/tenants", response_model=TenantList,
            summary="Tenants the key administers (every tenant for operator admins)")
def list_tenants(principal: Admin, engine: EngineDep) -> TenantList:
    if _operator(principal):
        tenants = engine.store.tenant_list()
    else:
        own = engine.store.tenant_get(principal.tenant_id)
        tenants = [own] if own is not None else []
    return TenantList(items=[_tenant_out(t) for t in tenants])


@router.get("/tenants/{name}", response_model=TenantOut, summary="One tenant")
def get_tenant(name: str, principal: Admin, engine: EngineDep) -> TenantOut:
    # Permission first: another tenant's name is refused alike whether it exists or not.
    _tenant_to_administer(principal, name)
    tenant = engine.store.tenant_get(name)
    if tenant is None:
        raise errors.TenantNotFound(name)
    return _tenant_out(tenant)


# -- apps ------------------------------------------------------------------------
@router.post("/apps", status_code=201, response_model=AppOut, summary="Create an app",
             responses={**NO_TENANT, 409: {"description": "the tenant has an app of that name"}})
def create_app(body: AppCreate, principal: Admin, access: AccessDep,
               response: Response) -> AppOut:
    tenant = _tenant_to_administer(principal, body.tenant)
    if principal.app_id is not None:
        raise errors.Forbidden("an app's admin key cannot create apps")
    app = access.create_app(tenant, body.name)
    response.headers["Location"] = f"/v1/apps/{app.id}"
    return _app_out(app)


@router.get("/apps", response_model=AppList, summary="Apps of a tenant")
def list_apps(principal: Admin, access: AccessDep, tenant: TenantQuery = None) -> AppList:
    target = _tenant_to_administer(principal, tenant)
    apps = [a for a in access.list_apps(target)
            if principal.app_id is None or a.id == principal.app_id]
    return AppList(items=[_app_out(a) for a in apps])


@router.get("/apps/{app_id}", response_model=AppOut, summary="One app")
def get_app(app_id: str, principal: Admin, access: AccessDep) -> AppOut:
    tenants = ([t.id for t in access.store.tenant_list()] if _operator(principal)
               else [principal.tenant_id])
    for tenant in tenants:
        app = access.store.app_get(tenant, app_id)
        if app is not None and principal.app_id in (None, app.id):
            return _app_out(app)
    raise errors.NotFound(f"app {app_id!r} not found", app_id=app_id)


# -- keys ------------------------------------------------------------------------
@router.post("/keys", status_code=201, response_model=KeyCreated, responses=NO_TENANT,
             summary="Create an API key; the response is the only place its secret appears")
def create_key(body: KeyCreate, principal: Admin, access: AccessDep,
               response: Response) -> KeyCreated:
    tenant = _tenant_to_administer(principal, body.tenant)
    app_id: str | None = None
    if body.app is not None:
        app = _find_app(access, tenant, body.app)
        if principal.app_id is not None and (app is None or app.id != principal.app_id):
            raise errors.Forbidden("an app's admin key creates keys for its own app only")
        if app is None:
            raise errors.InvalidInput(f"app {body.app!r} not found in tenant {tenant!r}",
                                      [{"field": "app", "message": "no such app"}])
        app_id = app.id
    elif principal.app_id is not None:
        app_id = principal.app_id  # an app's key never mints a tenant-wide key
    expires_in_s = (parse_duration(body.expires_in) if isinstance(body.expires_in, str)
                    else body.expires_in)
    presented, key = access.create_key(tenant, app_id=app_id,
                                       scopes=[str(s) for s in body.scopes],
                                       expires_in_s=expires_in_s, name=body.name)
    response.headers["Location"] = f"/v1/keys/{key.id}"
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated.model_validate({**_key_fields(key), "key": presented})


@router.get("/keys", response_model=KeyList,
            summary="API keys of a tenant (never their secrets or hashes)")
def list_keys(principal: Admin, access: AccessDep, tenant: TenantQuery = None) -> KeyList:
    target = _tenant_to_administer(principal, tenant)
    keys = [k for k in access.list_keys(target)
            if principal.app_id is None or k.app_id == principal.app_id]
    return KeyList(items=[_key_out(k) for k in keys])


@router.get("/keys/{key_id}", response_model=KeyOut, summary="One API key (without secret)")
def get_key(key_id: str, principal: Admin, access: AccessDep) -> KeyOut:
    return _key_out(_visible_key(access, principal, key_id))


@router.delete("/keys/{key_id}", response_model=KeyOut,
               summary="Revoke an API key; refused at once by this API process, by others"
                       " within JOBDOCK_KEY_CACHE_S")
def revoke_key(key_id: str, principal: Admin, access: AccessDep) -> KeyOut:
    key = _visible_key(access, principal, key_id)
    return _key_out(access.revoke_key(key.id, key.tenant_id))

