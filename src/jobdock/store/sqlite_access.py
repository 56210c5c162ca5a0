"""SQLite: apps, API keys, uploads and webhook subscriptions (mixed into SQLiteStore)."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import jobdock.errors as errors
from jobdock.model import ApiKey, AppRecord, Upload, Webhook


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class SQLiteAccess:
    """The store provides `_read()` and `_write()` (a connection, in a write transaction)."""

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _now(self, now: datetime | None) -> float:
        return time.time() if now is None else now.timestamp()

    # -- apps --------------------------------------------------------------
    def app_create(self, app: AppRecord) -> AppRecord:
        created = app.created_at or datetime.now(UTC)
        with _integrity(f"app {app.name!r} already exists in tenant {app.tenant_id!r}",
                        app.tenant_id), self._write() as conn:
            conn.execute("INSERT INTO apps (id, tenant_id, name, created_at) VALUES (?, ?, ?, ?)",
                         (app.id, app.tenant_id, app.name, created.timestamp()))
        return AppRecord(app.id, app.tenant_id, app.name, created)

    def app_get(self, tenant_id: str, app_id: str) -> AppRecord | None:
        with self._read() as conn:
            row = conn.execute("SELECT id, tenant_id, name, created_at FROM apps"
                               " WHERE tenant_id = ? AND id = ?", (tenant_id, app_id)).fetchone()
        return None if row is None else AppRecord(row[0], row[1], row[2], _dt(row[3]))

    def app_list(self, tenant_id: str) -> list[AppRecord]:
        with self._read() as conn:
            rows = conn.execute("SELECT id, tenant_id, name, created_at FROM apps"
                                " WHERE tenant_id = ? ORDER BY id", (tenant_id,)).fetchall()
        return [AppRecord(r[0], r[1], r[2], _dt(r[3])) for r in rows]

    # -- keys --------------------------------------------------------------
    _KEY_COLUMNS = ("id, prefix, secret_hash, tenant_id, scopes, app_id, name, created_at,"
                    " expires_at, revoked_at")

    def key_create(self, key: ApiKey) -> None:
        with _integrity("key prefix collision", key.tenant_id), self._write() as conn:
            if key.app_id is not None and conn.execute(
                    "SELECT 1 FROM apps WHERE id = ? AND tenant_id = ?",
                    (key.app_id, key.tenant_id)).fetchone() is None:
                raise errors.NotFound(f"app {key.app_id!r} not found in tenant {key.tenant_id!r}")
            conn.execute(f"INSERT INTO api_keys ({self._KEY_COLUMNS}) VALUES"
                         " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key.id, key.prefix, key.secret_hash, key.tenant_id,
                          json.dumps(key.scopes), key.app_id, key.name,
                          _ts(key.created_at) or time.time(), _ts(key.expires_at),
                          _ts(key.revoked_at)))

    def key_by_prefix(self, prefix: str) -> ApiKey | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE prefix = ?",
                               (prefix,)).fetchone()
        return None if row is None else _key(row)

    def key_list(self, tenant_id: str | None = None) -> list[ApiKey]:
        with self._read() as conn:
            if tenant_id is None:
                rows = conn.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys ORDER BY id")
            else:
                rows = conn.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys"
                                    " WHERE tenant_id = ? ORDER BY id", (tenant_id,))
            return [_key(r) for r in rows.fetchall()]

    def key_revoke(self, key_id: str, now: datetime | None = None) -> ApiKey | None:
        with self._write() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                         (self._now(now), key_id))
            row = conn.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = ?",
                               (key_id,)).fetchone()
        return None if row is None else _key(row)

    # -- uploads -----------------------------------------------------------
    _UPLOAD_COLUMNS = ("id, tenant_id, name, size, sha256, content_type, blob_key, app_id,"
                       " created_at, expires_at")

    def upload_create(self, upload: Upload) -> None:
        u = upload
        with _integrity("upload id collision", u.tenant_id), self._write() as conn:
            conn.execute(f"INSERT INTO uploads ({self._UPLOAD_COLUMNS}) VALUES"
                         " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (u.id, u.tenant_id, u.name, u.size, u.sha256, u.content_type,
                          u.blob_key, u.app_id, _ts(u.created_at) or time.time(),
                          _ts(u.expires_at)))

    def upload_get(self, tenant_id: str, upload_id: str,
                   now: datetime | None = None) -> Upload | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {self._UPLOAD_COLUMNS} FROM uploads WHERE id = ?"
                               " AND tenant_id = ? AND (expires_at IS NULL OR expires_at > ?)",
                               (upload_id, tenant_id, self._now(now))).fetchone()
        return None if row is None else _upload(row)

    def upload_purge_expired(self, now: datetime | None = None,
                             limit: int = 1000) -> list[Upload]:
        with self._write() as conn:
            rows = conn.execute(f"DELETE FROM uploads WHERE id IN (SELECT id FROM uploads"
                                " WHERE expires_at <= ? LIMIT ?)"
                                f" RETURNING {self._UPLOAD_COLUMNS}",
                                (self._now(now), limit)).fetchall()
        return [_upload(r) for r in rows]

    # -- webhooks ----------------------------------------------------------
    _HOOK_COLUMNS = "id, tenant_id, url, events, secret, app_id, description, created_at"

    def webhook_create(self, webhook: Webhook) -> None:
        w = webhook
        with _integrity("webhook id collision", w.tenant_id), self._write() as conn:
            conn.execute(f"INSERT INTO webhooks ({self._HOOK_COLUMNS}) VALUES"
                         " (?, ?, ?, ?, ?, ?, ?, ?)",
                         (w.id, w.tenant_id, w.url, json.dumps(w.events), w.secret, w.app_id,
                          w.description, _ts(w.created_at) or time.time()))

    def webhook_get(self, tenant_id: str, webhook_id: str) -> Webhook | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {self._HOOK_COLUMNS} FROM webhooks"
                               " WHERE tenant_id = ? AND id = ?",
                               (tenant_id, webhook_id)).fetchone()
        return None if row is None else _webhook(row)

    def webhook_list(self, tenant_id: str) -> list[Webhook]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT {self._HOOK_COLUMNS} FROM webhooks"
                                " WHERE tenant_id = ? ORDER BY id", (tenant_id,)).fetchall()
        return [_webhook(r) for r in rows]

    def webhook_delete(self, tenant_id: str, webhook_id: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM webhooks WHERE tenant_id = ? AND id = ?",
                                (tenant_id, webhook_id)).rowcount == 1


class _integrity:
    """Translate a constraint violation: unknown tenant, or a duplicate."""

    def __init__(self, duplicate_message: str, tenant_id: str) -> None:
        self.duplicate_message = duplicate_message
        self.tenant_id = tenant_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        cause = exc.__cause__ if isinstance(exc, errors.StoreError) else None
        if isinstance(cause, sqlite3.IntegrityError):
            if "FOREIGN KEY" in str(cause):
                raise errors.TenantNotFound(self.tenant_id) from exc
            raise errors.AlreadyExists(self.duplicate_message) from exc


def _key(r: sqlite3.Row | tuple[Any, ...]) -> ApiKey:
    return ApiKey(id=r[0], prefix=r[1], secret_hash=r[2], tenant_id=r[3],
                  scopes=json.loads(r[4]), app_id=r[5], name=r[6], created_at=_dt(r[7]),
                  expires_at=_dt(r[8]), revoked_at=_dt(r[9]))


def _upload(r: sqlite3.Row | tuple[Any, ...]) -> Upload:
    return Upload(id=r[0], tenant_id=r[1], name=r[2], size=r[3], sha256=r[4],
                  content_type=r[5], blob_key=r[6], app_id=r[7], created_at=_dt(r[8]),
                  expires_at=_dt(r[9]))


def _webhook(r: sqlite3.Row | tuple[Any, ...]) -> Webhook:
    return Webhook(id=r[0], tenant_id=r[1], url=r[2], events=json.loads(r[3]), secret=r[4],
                   app_id=r[5], description=r[6], created_at=_dt(r[7]))
