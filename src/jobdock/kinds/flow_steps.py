"""What both steps of a flow share: a fresh start of the counters, pages of records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jobdock.worker.context import JobContext


def reset_counters(ctx: JobContext) -> None:
    """A retried attempt starts again from nothing: the counters too."""
    stale = {name: -value for name, value in ctx.stats.items() if value}
    if stale:
        ctx.count(**stale)


def pages(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """The records in lists of `size` (the last one shorter)."""
    page: list[Any] = []
    for record in records:
        page.append(record)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def jsonable(value: Any) -> Any:
    """The JSON form of a value that json does not write itself (`default=`)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON")
