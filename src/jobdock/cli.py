"""The `jobdock` command line: its entry point, and `jobdock worker`'s work.

`jobdock worker` whose options are all plain and valid runs from here without
typer, whose import and handling of parameters (through pydantic) cost each
worker process about 60 ms of CPU and 8 MB at start. Every other command, --help, and any
worker option not read here (unknown, mistyped or out of range) go to the full
command line in jobdock.cli_commands, which answers them as before.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from jobdock.app import App
from jobdock.engine import imported
from jobdock.worker.processes import Supervisor

# `jobdock worker`'s defaults, read here and by its typer command (cli_commands), and
# the options that take a value, with their types.
WORKER_DEFAULTS: dict[str, Any] = {"concurrency": 8, "processes": 1, "burst": False,
                                   "log_level": "INFO"}
_VALUE_OPTIONS = {"--app": str, "--concurrency": int, "--processes": int, "--log-level": str}


class AppNotLoaded(Exception):
    """--app names a module that cannot be imported, or something that is not an App."""


def import_app(spec: str | None) -> App:
    """Import `module:attribute` and return the App it names (the built-in App when None)."""
    if not spec:
        return App()
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        app = imported(f"{module_name}:{attribute or 'app'}")
    except ImportError as exc:
        raise AppNotLoaded(f"cannot import {module_name!r}: {exc}") from exc
    except AttributeError:
        app = None
    if not isinstance(app, App):
        raise AppNotLoaded(f"{spec!r} is not a jobdock App (expected module:attribute)")
    return app


def load_app(spec: str | None) -> App:
    """import_app for a command: a bad --app is a usage error, told as such."""
    try:
        return import_app(spec)
    except AppNotLoaded as exc:
        import typer

        raise typer.BadParameter(str(exc), param_hint="--app") from exc.__cause__


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")


def supervise(app: str | None, concurrency: int, processes: int, burst: bool,
              log_level: str) -> int:
    """Run `processes` single-process workers under a supervisor; its exit status."""
    args = ["--concurrency", str(concurrency), "--log-level", log_level]
    if app:
        args += ["--app", app]
    return Supervisor(args, processes, burst).run()


def work(app: App, concurrency: int, burst: bool) -> None:
    """Run one worker in this process until a signal (or, with burst, until no job is left)."""
    the_worker = app.worker(concurrency=concurrency, burst=burst)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if the_worker._stopping.is_set():
            os._exit(1)  # a second signal: stop now; leases will run out and be rescued
        the_worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # What start-up made (modules, classes, the app) lives as long as the process:
    # keep it out of the garbage collector's full passes, which a busy worker
    # triggers every few thousand jobs.
    gc.freeze()
    stats = the_worker.run()
    logging.getLogger("jobdock.worker").info("worker stopped: %s", stats)


def plain_worker_options(argv: list[str]) -> dict[str, Any] | None:
    """The options of `jobdock worker ...` when each is one of its own, given a valid
    value; None for any other command line, left to the full one."""
    if not argv or argv[0] != "worker":
        return None
    options: dict[str, Any] = {"app": os.environ.get("JOBDOCK_APP") or None, **WORKER_DEFAULTS}
    rest = iter(argv[1:])
    for arg in rest:
        if arg in ("--burst", "--no-burst"):
            options["burst"] = arg == "--burst"
            continue
        name, equals, value = arg.partition("=")
        kind = _VALUE_OPTIONS.get(name)
        if not equals:
            value = next(rest, "-")
        if kind is None or value.startswith("-"):
            return None
        if kind is int:
            try:
                number = int(value)
            except ValueError:
                return None
            if number < 1:
                return None
            options[name[2:]] = number
        else:
            options[name[2:].replace("-", "_")] = value
    return options


def _plain_worker(options: dict[str, Any]) -> bool:
    """Run `jobdock worker` with these options; False when --app names no App."""
    configure_logging(options["log_level"])
    if options["processes"] > 1:
        sys.exit(supervise(**options))
    try:
        app = import_app(options["app"])
    except AppNotLoaded:
        return False  # the full command line tells what is wrong
    work(app, options["concurrency"], options["burst"])
    return True


def main() -> None:
    options = plain_worker_options(sys.argv[1:])
    if options is None or not _plain_worker(options):
        from jobdock.cli_commands import cli

        cli()
