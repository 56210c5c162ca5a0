"""`jobdock apps …` and `jobdock keys …`: apps and API keys, straight on the store.

These commands are for whoever runs jobdock (they need no API key): they open
the store named by JOBDOCK_DATABASE_URL, or by the App that `--app-spec` names.
`--app` names a jobdock app of the tenant (its id or its name), as in the API.

`keys create` prints the new key alone on stdout, so that
`KEY=$(jobdock keys create -t acme)` works; `--json` prints its details too.
The key is shown once and never stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from jobdock.access import DEFAULT_SCOPES, Access, parse_duration
from jobdock.app import App
from jobdock.cli import load_app
from jobdock.errors import InvalidInput, JobdockError, TenantNotFound
from jobdock.model import SCOPES, ApiKey, AppRecord

if TYPE_CHECKING:
    from rich.console import Console

apps_cli = typer.Typer(help="Create and list the apps of a tenant.", no_args_is_help=True)
keys_cli = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@cache
def console(stderr: bool = False) -> Console:
    """rich's console for every command, made on first use: `jobdock worker` prints
    nothing with it, and importing rich would cost each worker process start-up time
    and memory."""
    from rich.console import Console

    return Console(stderr=stderr)


AppSpecOption = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
    "--app-spec", envvar="JOBDOCK_APP",
    help="module:attribute of your App, whose store settings to use; the JOBDOCK_* settings"
    " when omitted.")]
TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="the tenant")]
TenantFilter = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--tenant", "-t", help="only this tenant's; every tenant's when omitted")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


def _access(spec: str | None) -> tuple[App, Access]:
    app = load_app(spec)
    return app, Access(app.engine.store)


def _fail(message: str) -> NoReturn:
    console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _short(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _app_json(app: AppRecord) -> dict[str, Any]:
    return {"id": app.id, "tenant_id": app.tenant_id, "name": app.name,
            "created_at": _iso(app.created_at)}


def _state(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


def _key_json(key: ApiKey) -> dict[str, Any]:
    # Field by field: the hash is never printed.
    return {"id": key.id, "prefix": key.prefix, "tenant_id": key.tenant_id,
            "app_id": key.app_id, "scopes": key.scopes, "name": key.name,
            "created_at": _iso(key.created_at), "expires_at": _iso(key.expires_at),
            "revoked_at": _iso(key.revoked_at), "state": _state(key)}


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _find_app(access: Access, tenant: str, ref: str) -> AppRecord:
    """An app of `tenant` by id, else by name."""
    found = access.store.app_get(tenant, ref)
    if found is None:
        found = next((a for a in access.list_apps(tenant) if a.name == ref), None)
    if found is None:
        raise InvalidInput(f"app {ref!r} not found in tenant {tenant!r}"
                           f" (see: jobdock apps list --tenant {tenant})")
    return found


def _require_tenant(app: App, tenant: str) -> None:
    if app.engine.store.tenant_get(tenant) is None:
        raise TenantNotFound(tenant)


# -- apps ------------------------------------------------------------------------
@apps_cli.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="the app's name, unique in its tenant")],
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
    app_spec: AppSpecOption = None,
) -> None:
    """Create an app; print its id (its details with --json)."""
    try:
        app, access = _access(app_spec)
        _require_tenant(app, tenant)
        record = access.create_app(tenant, name)
    except JobdockError as exc:
        _fail(exc.message)
    if as_json:
        _echo_json(_app_json(record))
    else:
        typer.echo(record.id)
        console(stderr=True).print(f"created app {record.name!r} in tenant {tenant!r}",
                                    highlight=False)


@apps_cli.command("list")
def apps_list(tenant: TenantFilter = None, as_json: JsonOption = False,
              app_spec: AppSpecOption = None) -> None:
    """List apps."""
    try:
        app, access = _access(app_spec)
        if tenant is not None:
            _require_tenant(app, tenant)
        tenants = [tenant] if tenant is not None else [t.id for t in app.tenants()]
        records = [a for t in tenants for a in access.list_apps(t)]
    except JobdockError as exc:
        _fail(exc.message)
    if as_json:
        _echo_json([_app_json(a) for a in records])
        return
    from rich.table import Table

    table = Table("id", "tenant", "name", "created")
    for record in records:
        table.add_row(record.id, record.tenant_id, record.name, _short(record.created_at))
    console().print(table)


# -- keys ------------------------------------------------------------------------
@keys_cli.command("create")
def keys_create(
    tenant: TenantOption = "default",
    app_ref: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--app", help="bind the key to this app of the tenant (id or name): it then sees"
        " that app's jobs only")] = None,
    scope: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--scope", "-s", help=f"a scope to grant, repeatable or comma-separated:"
        f" {', '.join(SCOPES)}; default {' '.join(DEFAULT_SCOPES)}")] = None,
    expires_in: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="lifetime, e.g. 30d, 12h, 15m or 90s; never expires when omitted")] = None,
    name: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="a note for people, e.g. 'ci' or 'shop backend'")] = None,
    as_json: JsonOption = False,
    app_spec: AppSpecOption = None,
) -> None:
    """Create an API key and print it (alone, unless --json). It is shown only once."""
    scopes = [s.strip() for item in scope or [] for s in item.split(",") if s.strip()]
    try:
        expires_in_s = None if expires_in is None else parse_duration(expires_in)
        app, access = _access(app_spec)
        _require_tenant(app, tenant)
        app_id = None if app_ref is None else _find_app(access, tenant, app_ref).id
        presented, key = access.create_key(tenant, app_id=app_id,
                                           scopes=scopes or DEFAULT_SCOPES,
                                           expires_in_s=expires_in_s, name=name)
    except JobdockError as exc:
        _fail(exc.message)
    if as_json:
        _echo_json({**_key_json(key), "key": presented})
        return
    typer.echo(presented)
    expiry = f"expires {_short(key.expires_at)} UTC" if key.expires_at else "never expires"
    console(stderr=True).print(f"created key {key.id} ({key.prefix}) for tenant {tenant!r}"
                      f"{f', app {app_ref!r}' if app_ref else ''}; scopes"
                      f" {' '.join(key.scopes)}; {expiry}. It is shown only this once.",
                      highlight=False)


@keys_cli.command("list")
def keys_list(tenant: TenantFilter = None, as_json: JsonOption = False,
              app_spec: AppSpecOption = None) -> None:
    """List API keys (never their secrets)."""
    try:
        app, access = _access(app_spec)
        if tenant is not None:
            _require_tenant(app, tenant)
        keys = access.list_keys(tenant)
    except JobdockError as exc:
        _fail(exc.message)
    if as_json:
        _echo_json([_key_json(k) for k in keys])
        return
    from rich.table import Table

    table = Table("id", "prefix", "tenant", "app", "scopes", "name", "created", "expires",
                  "state")
    for column in table.columns[:2]:
        column.no_wrap = True  # ids and prefixes are copied from here: never split them
    for key in keys:
        table.add_row(key.id, key.prefix, key.tenant_id, key.app_id or "", " ".join(key.scopes),
                      key.name or "", _short(key.created_at), _short(key.expires_at),
                      _state(key))
    console().print(table)


@keys_cli.command("revoke")
def keys_revoke(
    key_ref: Annotated[str, typer.Argument(metavar="KEY_ID",
                                           help="the key's id or its prefix (jdk_…)")],
    tenant: TenantFilter = None,
    app_spec: AppSpecOption = None,
) -> None:
    """Revoke an API key: refused at once here, and by API processes within JOBDOCK_KEY_CACHE_S."""
    try:
        _, access = _access(app_spec)
        matches = [k for k in access.list_keys(tenant) if key_ref in (k.id, k.prefix)]
        if not matches:
            where = f" in tenant {tenant!r}" if tenant else ""
            raise JobdockError(f"API key {key_ref!r} not found{where}")
        key = access.revoke_key(matches[0].id)
    except JobdockError as exc:
        _fail(exc.message)
    console().print(f"revoked key {key.id} ({key.prefix}) of tenant {key.tenant_id!r}",
                  highlight=False)
