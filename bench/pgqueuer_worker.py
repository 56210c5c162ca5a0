"""Start a PgQueuer worker the way `pgq run` does.

`pgq run` of PgQueuer 1.6.0 stops at start-up under typer 0.29 (its --log-level
option hands a str where an enum is expected), so the harness loads the factory and
calls `supervisor.run` as the command does, on uvloop as the command does.

    python -m bench.pgqueuer_worker [--batch-size N] [--drain]
"""

from __future__ import annotations

import argparse

import uvloop
from pgqueuer.adapters.cli import factories, supervisor
from pgqueuer.core import logconfig
from pgqueuer.domain import types


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--factory", default="bench.pgqueuer_app:main")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--drain", action="store_true", help="exit once the queue is empty")
    args = parser.parse_args()
    logconfig.setup_fancy_logger(logconfig.LogLevel.WARNING)
    mode = types.QueueExecutionMode.drain if args.drain else types.QueueExecutionMode.continuous
    factory = factories.load_factory(args.factory)
    uvloop.run(supervisor.run(factory, batch_size=args.batch_size, mode=mode))


if __name__ == "__main__":
    main()
