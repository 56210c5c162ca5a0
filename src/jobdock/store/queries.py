"""Named SQL blocks, one file per backend.

A file holds blocks like

    -- name: job_get
    -- One job of a tenant, unless expired.
    SELECT ... ;

and `load_queries("sqlite_queries.sql")` returns {"job_get": "SELECT ..."}.
Comment lines right after the name line describe the query and are dropped.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def parse_queries(text: str) -> dict[str, str]:
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _NAME.match(line)
        if match:
            name = match.group(1)
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None and (current or not line.startswith("--")):
            current.append(line)
    return {name: "\n".join(lines).strip().rstrip(";") for name, lines in queries.items()}


@cache
def load_queries(filename: str) -> dict[str, str]:
    text = resources.files("jobdock.store").joinpath(filename).read_text(encoding="utf-8")
    return parse_queries(text)


def migration_files(backend: str) -> list[tuple[int, str]]:
    """(version, sql) of the numbered migrations of a backend, in order."""
    folder = resources.files("jobdock.store").joinpath("migrations", backend)
    found = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_\w+\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)
