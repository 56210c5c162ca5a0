"""The `jobdock` command line, with typer (the entry point is jobdock.cli.main)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Optional

import typer

from jobdock.cli import WORKER_DEFAULTS, configure_logging, load_app, supervise, work
from jobdock.cli_admin import apps_cli, console, keys_cli
from jobdock.errors import JobdockError
from jobdock.model import Job

cli = typer.Typer(help="jobdock: durable asynchronous jobs that people can watch.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
tenants_cli = typer.Typer(help="Create and list tenants.", no_args_is_help=True)
cli.add_typer(tenants_cli, name="tenants")
cli.add_typer(apps_cli, name="apps")
cli.add_typer(keys_cli, name="keys")

AppOption = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
    "--app", envvar="JOBDOCK_APP",
    help="module:attribute of your App (e.g. mymodule:app); built-in kinds only when omitted.")]
TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="tenant that owns the job")]


def _job_json(job: Job) -> str:
    return json.dumps(asdict(job), default=_json_default, indent=2)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _fail(exc: JobdockError) -> None:
    console(stderr=True).print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(2)


@cli.command()
def migrate(app: AppOption = None) -> None:
    """Apply pending database migrations (safe to run twice and concurrently)."""
    applied = load_app(app).migrate()
    console().print(f"applied migrations: {applied}" if applied else "database is up to date")


@cli.command()
def worker(
    app: AppOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="jobs run at once per process")]
        = WORKER_DEFAULTS["concurrency"],
    processes: Annotated[int, typer.Option(min=1, help="worker processes to run")]
        = WORKER_DEFAULTS["processes"],
    burst: Annotated[bool, typer.Option(help="exit when nothing is left to do")]
        = WORKER_DEFAULTS["burst"],
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")]
        = WORKER_DEFAULTS["log_level"],
) -> None:
    """Run workers for an app's job kinds (the built-in kinds are always included)."""
    # Run from jobdock.cli without typer when every option is plain and valid; the
    # options here are the ones that path reads.
    configure_logging(log_level)
    if processes > 1:
        raise typer.Exit(supervise(app, concurrency, processes, burst, log_level))
    work(load_app(app), concurrency, burst)


@cli.command()
def serve(
    app: AppOption = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8750,
    workers: Annotated[int, typer.Option(
        min=0, help="embedded worker threads running jobs; 0 when `jobdock worker` processes"
        " run them")] = 4,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    access_log: Annotated[bool, typer.Option(
        help="log every request (uvicorn's access log; /metrics counts them either way)")]
        = False,
) -> None:
    """Serve the HTTP API (migrations are applied at start)."""
    import uvicorn

    from jobdock.api import create_api

    configure_logging(log_level)
    # The access log is off by default: a log line per request was 4-5% of a GET's CPU.
    uvicorn.run(create_api(load_app(app), workers=workers), host=host, port=port,
                log_level=log_level.lower(), access_log=access_log)


@cli.command()
def submit(
    kind: Annotated[str, typer.Argument(help="job kind, e.g. sleep")],
    input: Annotated[str, typer.Argument(help="input as JSON, e.g. '{\"seconds\": 2}'")] = "{}",
    tenant: TenantOption = "default",
    wait: Annotated[bool, typer.Option(help="wait until the job has finished")] = False,
    app: AppOption = None,
) -> None:
    """Submit a job and print it as JSON."""
    try:
        value = json.loads(input)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"input is not JSON: {exc}", param_hint="INPUT") from exc
    the_app = load_app(app)
    try:
        job = the_app.submit(kind, value, tenant=tenant)
        if wait:
            job = the_app.wait(job.id, tenant=tenant, timeout_s=86_400)
    except JobdockError as exc:
        _fail(exc)
    console().print_json(_job_json(job))


@cli.command()
def get(job_id: str, tenant: TenantOption = "default", app: AppOption = None) -> None:
    """Print one job as JSON."""
    try:
        console().print_json(_job_json(load_app(app).get(job_id, tenant=tenant)))
    except JobdockError as exc:
        _fail(exc)


@cli.command(name="list")
def list_jobs(
    tenant: TenantOption = "default",
    status: Annotated[Optional[list[str]], typer.Option(help="filter by status")] = None,  # noqa: UP045
    kind: Annotated[Optional[list[str]], typer.Option(help="filter by kind")] = None,  # noqa: UP045
    page_size: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    page_token: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    app: AppOption = None,
) -> None:
    """List jobs, newest first."""
    try:
        page = load_app(app).list(tenant=tenant, status=status, kind=kind, page_size=page_size,
                                  page_token=page_token)
    except (JobdockError, ValueError) as exc:
        _fail(exc if isinstance(exc, JobdockError) else JobdockError(str(exc)))
    from rich.table import Table

    table = Table("id", "kind", "status", "attempt", "created", "finished")
    for job in page.items:
        table.add_row(job.id, job.kind, job.status.value, str(job.attempt),
                      _short_time(job.created_at), _short_time(job.finished_at))
    console().print(table)
    if page.next_page_token:
        console().print(f"next page: --page-token {page.next_page_token}")


def _short_time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@cli.command()
def cancel(job_id: str, tenant: TenantOption = "default",
           hard: Annotated[bool, typer.Option(help="stop at once, without waiting for the job")]
           = False, app: AppOption = None) -> None:
    """Cancel a job."""
    try:
        job = load_app(app).cancel(job_id, tenant=tenant, hard=hard)
        console().print(f"{job_id}: {job.status}")
    except JobdockError as exc:
        _fail(exc)


@cli.command()
def retry(job_id: str, tenant: TenantOption = "default", app: AppOption = None) -> None:
    """Run a failed or canceled job again."""
    try:
        console().print(f"{job_id}: {load_app(app).retry(job_id, tenant=tenant).status}")
    except JobdockError as exc:
        _fail(exc)


@cli.command()
def delete(job_id: str, tenant: TenantOption = "default", app: AppOption = None) -> None:
    """Delete a job with its children, errors and files."""
    try:
        deleted = load_app(app).delete(job_id, tenant=tenant)
    except JobdockError as exc:
        _fail(exc)
    console().print(f"deleted {len(deleted)} job(s)")


@cli.command()
def maintain(app: AppOption = None) -> None:
    """Run one round of maintenance (rescue expired leases, purge expired jobs)."""
    report = load_app(app).engine.maintain()
    console().print(asdict(report))


@tenants_cli.command("create")
def tenants_create(
    name: str,
    retention_s: Annotated[Optional[int], typer.Option(  # noqa: UP045
        min=0, help="keep finished jobs this long (seconds); default 7 days")] = None,
    app: AppOption = None,
) -> None:
    """Create a tenant."""
    try:
        tenant = load_app(app).create_tenant(name, retention_s)
    except JobdockError as exc:
        _fail(exc)
    console().print(f"created tenant {tenant.id}")


@tenants_cli.command("list")
def tenants_list(app: AppOption = None) -> None:
    """List tenants."""
    for tenant in load_app(app).tenants():
        console().print(tenant.id)


@cli.command()
def demo(
    jobs: Annotated[int, typer.Option(min=1, max=50, help="how many sleep jobs")] = 6,
    serve: Annotated[bool, typer.Option(help="run them over the HTTP API, then keep serving;"
                                        " --no-serve: Python API and an in-process worker")]
    = True,
    host: Annotated[str, typer.Option(help="address the API listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8750,
    once: Annotated[bool, typer.Option(help="stop serving when the sample jobs are done")]
    = False,
    app: AppOption = None,
) -> None:
    """Run sample `sleep` jobs (one fails, one is canceled) and watch them finish."""
    from jobdock import demo as demo_module

    the_app = load_app(app)
    if serve:
        demo_module.run_served(the_app, jobs, host, port, once, console())
    else:
        demo_module.run_in_process(the_app, jobs, console())

