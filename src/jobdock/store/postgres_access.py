"""PostgreSQL: apps, API keys, uploads and webhook subscriptions (mixed into PostgresStore)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

import jobdock.errors as errors
from jobdock.model import ApiKey, AppRecord, Upload, Webhook

Row = dict[str, Any]
_NOW = "COALESCE(%(now)s::timestamptz, clock_timestamp())"
_KEY_COLUMNS = ("id, prefix, secret_hash, tenant_id, scopes, app_id, name, created_at,"
                " expires_at, revoked_at")
_UPLOAD_COLUMNS = ("id, tenant_id, name, size, sha256, content_type, blob_key, app_id,"
                   " created_at, expires_at")
_HOOK_COLUMNS = "id, tenant_id, url, events, secret, app_id, description, created_at"


class PostgresAccess:
    """The store provides `_conn()`: a pooled connection, errors translated."""

    def _conn(self, timeout: float | None = None
              ) -> AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError

    def _all(self, query: str, params: Mapping[str, Any] | Sequence[Any]) -> list[Row]:
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def _first(self, query: str, params: Mapping[str, Any] | Sequence[Any]) -> Row | None:
        rows = self._all(query, params)
        return rows[0] if rows else None

    # -- apps --------------------------------------------------------------
    def app_create(self, app: AppRecord) -> AppRecord:
        try:
            row = self._first(
                "INSERT INTO apps (id, tenant_id, name, created_at)"
                " VALUES (%(id)s, %(tenant_id)s, %(name)s,"
                " COALESCE(%(created_at)s::timestamptz, clock_timestamp()))"
                " RETURNING id, tenant_id, name, created_at",
                {"id": app.id, "tenant_id": app.tenant_id, "name": app.name,
                 "created_at": app.created_at})
        except errors.AlreadyExists:
            raise errors.AlreadyExists(
                f"app {app.name!r} already exists in tenant {app.tenant_id!r}") from None
        assert row is not None
        return AppRecord(**row)

    def app_get(self, tenant_id: str, app_id: str) -> AppRecord | None:
        row = self._first("SELECT id, tenant_id, name, created_at FROM apps"
                          " WHERE tenant_id = %s AND id = %s", (tenant_id, app_id))
        return None if row is None else AppRecord(**row)

    def app_list(self, tenant_id: str) -> list[AppRecord]:
        return [AppRecord(**r) for r in self._all(
            "SELECT id, tenant_id, name, created_at FROM apps WHERE tenant_id = %s ORDER BY id",
            (tenant_id,))]

    # -- keys --------------------------------------------------------------
    def key_create(self, key: ApiKey) -> None:
        if key.app_id is not None and self.app_get(key.tenant_id, key.app_id) is None:
            raise errors.NotFound(f"app {key.app_id!r} not found in tenant {key.tenant_id!r}")
        self._all(f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                  " COALESCE(%s::timestamptz, clock_timestamp()), %s, %s)",
                  (key.id, key.prefix, key.secret_hash, key.tenant_id, Jsonb(key.scopes),
                   key.app_id, key.name, key.created_at, key.expires_at, key.revoked_at))

    def key_by_prefix(self, prefix: str) -> ApiKey | None:
        row = self._first(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE prefix = %s", (prefix,))
        return None if row is None else ApiKey(**row)

    def key_list(self, tenant_id: str | None = None) -> list[ApiKey]:
        return [ApiKey(**r) for r in self._all(
            f"SELECT {_KEY_COLUMNS} FROM api_keys"
            " WHERE %(tenant)s::text IS NULL OR tenant_id = %(tenant)s ORDER BY id",
            {"tenant": tenant_id})]

    def key_revoke(self, key_id: str, now: datetime | None = None) -> ApiKey | None:
        row = self._first(f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, {_NOW})"
                          f" WHERE id = %(id)s RETURNING {_KEY_COLUMNS}",
                          {"id": key_id, "now": now})
        return None if row is None else ApiKey(**row)

    # -- uploads -----------------------------------------------------------
    def upload_create(self, upload: Upload) -> None:
        u = upload
        self._all(f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s,"
                  " %s, %s, COALESCE(%s::timestamptz, clock_timestamp()), %s)",
                  (u.id, u.tenant_id, u.name, u.size, u.sha256, u.content_type, u.blob_key,
                   u.app_id, u.created_at, u.expires_at))

    def upload_get(self, tenant_id: str, upload_id: str,
                   now: datetime | None = None) -> Upload | None:
        row = self._first(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = %(id)s"
                          f" AND tenant_id = %(tenant)s AND (expires_at IS NULL"
                          f" OR expires_at > {_NOW})",
                          {"id": upload_id, "tenant": tenant_id, "now": now})
        return None if row is None else Upload(**row)

    def upload_purge_expired(self, now: datetime | None = None,
                             limit: int = 1000) -> list[Upload]:
        return [Upload(**r) for r in self._all(
            f"DELETE FROM uploads WHERE id IN (SELECT id FROM uploads WHERE expires_at <= {_NOW}"
            f" ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING {_UPLOAD_COLUMNS}",
            {"now": now, "limit": limit})]

    # -- webhooks ----------------------------------------------------------
    def webhook_create(self, webhook: Webhook) -> None:
        w = webhook
        self._all(f"INSERT INTO webhooks ({_HOOK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                  " COALESCE(%s::timestamptz, clock_timestamp()))",
                  (w.id, w.tenant_id, w.url, Jsonb(w.events), w.secret, w.app_id,
                   w.description, w.created_at))

    def webhook_get(self, tenant_id: str, webhook_id: str) -> Webhook | None:
        row = self._first(f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE tenant_id = %s"
                          " AND id = %s", (tenant_id, webhook_id))
        return None if row is None else Webhook(**row)

    def webhook_list(self, tenant_id: str) -> list[Webhook]:
        return [Webhook(**r) for r in self._all(
            f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE tenant_id = %s ORDER BY id",
            (tenant_id,))]

    def webhook_delete(self, tenant_id: str, webhook_id: str) -> bool:
        return bool(self._all("DELETE FROM webhooks WHERE tenant_id = %s AND id = %s"
                              " RETURNING id", (tenant_id, webhook_id)))
