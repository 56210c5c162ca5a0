"""Who may do what: apps, API keys, and the principal a presented key stands for.

A key looks like `jdk_<12 hex>_<48 hex>`. The first part (`jdk_` and 12 hex
digits) is its public prefix, stored as is so the key can be found; of the
whole key only a SHA-256 hash is stored, compared in constant time.

The `default` tenant is the operator's: an `admin` key of it administers every
tenant; an `admin` key of another tenant administers that tenant's apps and
keys only.

Key records found by `authenticate` are kept in memory for `key_cache_s`
seconds (setting `JOBDOCK_KEY_CACHE_S`, 5 by default; 0 turns the cache off),
keyed by the SHA-256 of the presented key, so a busy API does not read the key
from the database on every request. Expiry is still checked against the clock
on every request, and a key revoked through this `Access` is dropped at once;
a key revoked elsewhere (another API process, `jobdock keys revoke`) stops
working within `key_cache_s`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
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
KEY_CACHE_S = 5.0
# Past this many cached keys the cache starts again empty: a bound on memory
# that a real deployment (a few keys per tenant) never reaches.
_KEY_CACHE_MAX = 10_000


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
    def __init__(self, store: Store, key_cache_s: float = KEY_CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.key_cache_s = key_cache_s
        self._clock = clock
        # SHA-256 of a presented key -> (when it was read, its record). Only keys whose
        # hash matched are kept, so unknown keys cannot fill it.
        self._keys: dict[str, tuple[float, ApiKey]] = {}
        self._keys_lock = threading.Lock()

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
        with self._keys_lock:
            self._keys = {h: entry for h, entry in self._keys.items() if entry[1].id != key_id}
        return revoked

    # -- authentication ----------------------------------------------------
    def authenticate(self, presented: str | None, now: datetime | None = None) -> Principal:
        """The principal of a presented key; Unauthenticated unless it is valid now."""
        if not presented:
            raise errors.Unauthenticated(
                "an API key is required: send 'Authorization: Bearer <key>'")
        hashed = _hash(presented.strip())
        record = self._cached(hashed)
        if record is None:
            match = _KEY.match(presented.strip())
            record = self.store.key_by_prefix(match.group(1)) if match else None
            if record is None or not hmac.compare_digest(record.secret_hash, hashed):
                raise errors.Unauthenticated("the API key is not valid")
            self._remember(hashed, record)
        return _principal(record, now)

    def cached_principal(self, presented: str, now: datetime | None = None) -> Principal | None:
        """The principal of a key found in the cache, without reading the store (so it can
        be called on the event loop); None when the key is not cached. A cached key
        that has expired or been revoked raises Unauthenticated, as `authenticate` would."""
        record = self._cached(_hash(presented.strip()))
        return None if record is None else _principal(record, now)

    def _cached(self, hashed: str) -> ApiKey | None:
        # A dict lookup by hash is not constant-time, but what it could leak is
        # about the hash of the presented key, not about a stored secret.
        entry = self._keys.get(hashed)
        if entry is None or self._clock() - entry[0] >= self.key_cache_s:
            return None
        return entry[1]

    def _remember(self, hashed: str, record: ApiKey) -> None:
        if self.key_cache_s <= 0:
            return
        with self._keys_lock:
            if len(self._keys) >= _KEY_CACHE_MAX:
                self._keys = {}
            self._keys[hashed] = (self._clock(), record)


def _principal(record: ApiKey, now: datetime | None) -> Principal:
    """The principal of a key whose secret matched; Unauthenticated unless valid at `now`."""
    if record.revoked_at is not None:
        raise errors.Unauthenticated("the API key has been revoked")
    if record.expires_at is not None and record.expires_at <= (now or datetime.now(UTC)):
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
