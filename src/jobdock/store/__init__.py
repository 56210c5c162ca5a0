"""Persistence: one interface (`Store`), a SQLite and a PostgreSQL implementation."""

from __future__ import annotations

from jobdock.store.base import HeartbeatResult, InsertResult, QueueWaiter, Store

__all__ = ["HeartbeatResult", "InsertResult", "QueueWaiter", "Store", "open_store"]


def open_store(url: str, **options: object) -> Store:
    """Open the store a URL names: sqlite:///path.db or postgresql://..."""
    if url.startswith("sqlite:"):
        from jobdock.store.sqlite import SQLiteStore

        return SQLiteStore(url, **options)  # type: ignore[arg-type]
    if url.startswith(("postgresql:", "postgres:")):
        from jobdock.store.postgres import PostgresStore

        return PostgresStore(url, **options)  # type: ignore[arg-type]
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///file.db or postgresql://…")
