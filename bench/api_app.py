"""The jobdock app of the API benchmark (bench/api_bench.py): four no-op kinds.

The loader submits jobs of these kinds and the server under test is started
with `--app bench.api_app:app`, so both sides know the same kinds.
"""

from __future__ import annotations

from typing import Any

from jobdock import App

KINDS = ("k0", "k1", "k2", "k3")


def make_app(**settings: Any) -> App:
    app = App(**settings)
    for kind in KINDS:
        app.job(kind, max_attempts=3)(_noop)
    return app


def _noop(ctx: Any, input: Any) -> None:
    return None


app = make_app()
