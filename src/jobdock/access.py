"""Who may do what: apps, API keys, and the principal a presented key stands for.

A key looks like `jdk_<12 hex>_<48 hex>`. The first part (`jdk_` and 12 hex
digits) is its public prefix, stored as is so the key can be found; of the
whole key only a SHA-256 hash is stored, compared in constant time.

The `default` tenant is the operator's: an `admin` key of it administers every
tenant; an `admin` key of another tenant administers that tenant's apps and
keys only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jobdock.errors as errors
from jobdock.ids import new_id
from jobdock.model import SCOPES, ApiKey, AppRecord
from jobdock.store import Store

OPERATOR_TENANT = "default"
DEFAULT_SCOPES = ("jobs:read", "jobs:write", "jobs:delete")
_KEY = re.compile(r"^(jdk_[0-9a-f]{12})_([0-9a-f]{48})$")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a valid key stands for."""

    key_id: str
    tenant_id: str
    app_id: str | None
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def require(self, scope: str) -> None:
        if not self.can(scope):
            raise errors.Forbidden(f"this API key lacks the {scope!r} scope",
                                   required_scope=scope)

    @property
    def operator(self) -> bool:
        """An admin of the operator tenant: may administer every tenant."""
        return "admin" in self.scopes and self.tenant_id == OPERATOR_TENANT

    def require_admin_of(self, tenant_id: str) -> None:
        self.require("admin")
        if not self.operator and tenant_id != self.tenant_id:
            raise errors.Forbidden("an admin key administers its own tenant only")


class Access:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- apps --------------------------------------------------------------
    def create_app(self, tenant_id: str, name: str) -> AppRecord:
        if not _APP_NAME.match(name):
            raise errors.InvalidInput(
                f"invalid app name {name!r}: 1 to 100 letters, digits, spaces, '.', '_' or '-'",
                [{"field": "name", "message": "invalid app name"}])
        return self.store.app_create(AppRecord(new_id(), tenant_id, name))

    def list_apps(self, tenant_id: str) -> list[AppRecord]:
        return self.store.app_list(tenant_id)

    # -- keys --------------------------------------------------------------
    def create_key(self, tenant_id: str, app_id: str | None = None,
                   scopes: tuple[str, ...] | list[str] = DEFAULT_SCOPES,
                   expires_in_s: float | None = None, name: str | None = None,
                   now: datetime | None = None) -> tuple[str, ApiKey]:
        """Create a key; return the key itself (shown once, never stored) and its record."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise errors.InvalidInput(
                f"unknown scope(s) {unknown}: choose from {', '.join(SCOPES)}" if unknown
                else "a key needs at least one scope",
                [{"field": "scopes", "message": "invalid scopes"}])
        if expires_in_s is not None and expires_in_s <= 0:
            raise errors.InvalidInput("expires_in must be positive",
                                      [{"field": "expires_in", "message": "must be > 0"}])
        moment = now or datetime.now(UTC)
        prefix = "jdk_" + secrets.token_hex(6)
        presented = f"{prefix}_{secrets.token_hex(24)}"
        record = ApiKey(
            id=new_id(), prefix=prefix, secret_hash=_hash(presented), tenant_id=tenant_id,
            scopes=sorted(set(scopes)), app_id=app_id, name=name, created_at=moment,
            expires_at=None if expires_in_s is None else moment + timedelta(seconds=expires_in_s))
        self.store.key_create(record)
        return presented, record

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        return self.store.key_list(tenant_id)

    def revoke_key(self, key_id: str, tenant_id: str | None = None,
                   now: datetime | None = None) -> ApiKey:
        """Revoke a key at once; with `tenant_id`, only a key of that tenant."""
        existing = [k for k in self.store.key_list(tenant_id) if k.id == key_id]
        if not existing:
            raise errors.NotFound(f"API key {key_id!r} not found", key_id=key_id)
        revoked = self.store.key_revoke(key_id, now)
        assert revoked is not None
        return revoked

    # -- authentication ----------------------------------------------------
    def authenticate(self, presented: str | None, now: datetime | None = None) -> Principal:
        """The principal of a presented key; Unauthenticated unless it is valid now."""
        if not presented:
            raise errors.Unauthenticated(
                "an API key is required: send 'Authorization: Bearer <key>'")
        match = _KEY.match(presented.strip())
        record = self.store.key_by_prefix(match.group(1)) if match else None
        if record is None or not hmac.compare_digest(record.secret_hash,
                                                     _hash(presented.strip())):
            raise errors.Unauthenticated("the API key is not valid")
        moment = now or datetime.now(UTC)
        if record.revoked_at is not None:
            raise errors.Unauthenticated("the API key has been revoked")
        if record.expires_at is not None and record.expires_at <= moment:
            raise errors.Unauthenticated("the API key has expired")
        return Principal(record.id, record.tenant_id, record.app_id, frozenset(record.scopes))


def _hash(presented: str) -> str:
    return hashlib.sha256(presented.encode()).hexdigest()


def parse_duration(text: str) -> float:
    """'30d', '12h', '15m', '90s' or plain seconds, as seconds."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", text)
    if not match:
        raise errors.InvalidInput(f"invalid duration {text!r}: use e.g. 30d, 12h, 15m or 90s",
                                  [{"field": "expires_in", "message": "invalid duration"}])
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    return float(match.group(1)) * units[match.group(2)]
