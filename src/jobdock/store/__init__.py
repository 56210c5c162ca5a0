"""Persistence: one interface (`Store`), a SQLite and a PostgreSQL implementation."""

from __future__ import annotations

from jobdock.store.base import HeartbeatResult, InsertResult, QueueWaiter, Store

__all__ = ["HeartbeatResult", "InsertResult", "QueueWaiter", "Store", "open_store"]


def open_store(url: str, synchronous: str = "NORMAL", pool_max: int = 10) -> Store:
    """Open the store a URL names: sqlite:///path.db or postgresql://...

    `synchronous` is SQLite's PRAGMA synchronous; `pool_max` PostgreSQL's pool size."""
    if url.startswith("sqlite:"):
        from jobdock.store.sqlite import SQLiteStore

        return SQLiteStore(url, synchronous=synchronous)
    if url.startswith(("postgresql:", "postgres:")):
        from jobdock.store.postgres import PostgresStore

        return PostgresStore(url, pool_max=pool_max)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///file.db or postgresql://…")
