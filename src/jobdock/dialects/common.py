"""Helpers that more than one dialect uses."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(moment: datetime | None) -> str | None:
    """UTC with milliseconds and `Z`, as Amperity and integrator.io write times:
    2024-06-01T04:02:54.433Z."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
