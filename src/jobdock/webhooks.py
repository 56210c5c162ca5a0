"""Webhook subscriptions, their signatures, and the events that become deliveries.

A subscription belongs to a tenant, or to one of its apps; an app's
subscription hears of that app's jobs only. When a job ends, the engine tells
its finish listeners; `Webhooks.emit` submits one job of the built-in
`webhook` kind per matching subscription, all of a tenant's in one batch.
Deliveries are ordinary jobs: retried with backoff, visible and listable.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com/): the
secret is `whsec_` + base64 of random bytes, and `webhook-signature` is
`v1,` + base64(HMAC-SHA256(secret bytes, f"{id}.{timestamp}.{body}")).

Emission is on the worker's completion path, so it has to be cheap when
nobody listens: subscriptions are cached per tenant for `CACHE_S`, and a
tenant without any costs one store read per `CACHE_S` per process.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jobdock.errors as errors
from jobdock.engine import Engine, SubmitRequest
from jobdock.ids import is_id, new_id
from jobdock.model import Job, JobStatus, Webhook

log = logging.getLogger("jobdock.webhooks")

KIND = "webhook"
EVENTS = ("job.succeeded", "job.failed", "job.canceled")
ALL = "*"
EVENT_OF = {JobStatus.SUCCEEDED: "job.succeeded", JobStatus.FAILED: "job.failed",
            JobStatus.CANCELED: "job.canceled"}
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
CACHE_S = 2.0
MAX_PER_TENANT = 100  # bounds the fan-out of one job's end
MAX_URL = 2048
MAX_DESCRIPTION = 500
TOLERANCE_S = 300  # how old or new a timestamp `verify` accepts


# -- signatures ------------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` header value for one message."""
    raw = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, msg_id: str, timestamp: str | int, body: bytes | str,
           signature_header: str, now: float | None = None,
           tolerance_s: int = TOLERANCE_S) -> bool:
    """True when one of the header's space-separated `v1,` signatures matches and the
    timestamp is within `tolerance_s` of now (a replayed old message is refused)."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        return False
    expected = sign(secret, msg_id, stamp, body).encode()
    return any(hmac.compare_digest(expected, candidate.encode())
               for candidate in signature_header.split() if candidate.startswith("v1,"))


# -- the job as an event sees it -----------------------------------------------------
def job_json(job: Job) -> dict[str, Any]:
    """The job in an event's `data`."""
    return {
        "id": job.id, "kind": job.kind, "name": job.name, "status": str(job.status),
        "result": job.result, "error": job.error, "stats": dict(job.stats),
        "labels": dict(job.labels), "app_id": job.app_id, "attempt": job.attempt,
        "created_at": _iso(job.created_at), "finished_at": _iso(job.finished_at),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wants(subscription: Webhook, job: Job, event: str) -> bool:
    """Whether `subscription` hears of `event` for `job`."""
    if subscription.app_id is not None and subscription.app_id != job.app_id:
        return False
    return ALL in subscription.events or event in subscription.events


# -- subscriptions and emission ---------------------------------------------------------
class Webhooks:
    """Subscriptions of tenants and apps, and the deliveries of their events."""

    def __init__(self, engine: Engine, cache_s: float = CACHE_S) -> None:
        self.engine = engine
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, builtins.list[Webhook]]] = {}
        self._lock = threading.Lock()
        engine.on_finished(self._on_finished)

    # -- subscriptions -------------------------------------------------------
    def create(self, tenant: str, url: str, events: Sequence[str],
               description: str | None = None, app_id: str | None = None) -> Webhook:
        """Subscribe `url`; the result carries the signing secret (shown to the caller once)."""
        checked_events = _checked_events(events)
        checked_url = _checked_url(url)
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise errors.InvalidInput(
                f"description is longer than {MAX_DESCRIPTION} characters",
                [{"field": "description", "message": f"at most {MAX_DESCRIPTION} characters"}])
        self.engine.tenant(tenant)
        if len(self.engine.store.webhook_list(tenant)) >= MAX_PER_TENANT:
            raise errors.Conflict(f"tenant {tenant!r} has {MAX_PER_TENANT} webhooks, the most"
                                  " allowed; delete one first")
        webhook = Webhook(id=new_id(), tenant_id=tenant, url=checked_url, events=checked_events,
                          secret=new_secret(), app_id=app_id, description=description,
                          created_at=datetime.now(UTC))
        self.engine.store.webhook_create(webhook)
        self._forget(tenant)
        return webhook

    def list(self, tenant: str, app_id: str | None = None) -> builtins.list[Webhook]:
        """A tenant's subscriptions, oldest first; with `app_id`, that app's only."""
        found = self.engine.store.webhook_list(tenant)
        return found if app_id is None else [w for w in found if w.app_id == app_id]

    def get(self, tenant: str, webhook_id: str, app_id: str | None = None) -> Webhook:
        """One subscription; WebhookNotFound when it is another tenant's or app's."""
        found = self.engine.store.webhook_get(tenant, webhook_id) if is_id(webhook_id) else None
        if found is None or (app_id is not None and found.app_id != app_id):
            raise errors.WebhookNotFound(webhook_id)
        return found

    def delete(self, tenant: str, webhook_id: str, app_id: str | None = None) -> None:
        """Unsubscribe; deliveries already queued are skipped when they run."""
        self.get(tenant, webhook_id, app_id)
        self.engine.store.webhook_delete(tenant, webhook_id)
        self._forget(tenant)

    def _subscriptions(self, tenant: str) -> builtins.list[Webhook]:
        """The tenant's subscriptions, at most `cache_s` old."""
        now = time.monotonic()
        cached = self._cache.get(tenant)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        found = self.engine.store.webhook_list(tenant)
        with self._lock:
            self._cache[tenant] = (now, found)
        return found

    def _forget(self, tenant: str) -> None:
        with self._lock:
            self._cache.pop(tenant, None)

    # -- emission ------------------------------------------------------------
    def _on_finished(self, jobs: Sequence[Job]) -> None:
        self.emit(jobs)

    def emit(self, jobs: Sequence[Job]) -> builtins.list[Job]:
        """Submit the deliveries of jobs that ended; return the delivery jobs.

        A job that is not terminal here is the worker's copy from its claim: it
        is read back, as the store decides how some attempts end (a retry of a
        job asked to cancel ends it canceled). Deliveries themselves emit nothing.
        """
        by_tenant: dict[str, builtins.list[Job]] = {}
        for job in jobs:
            if job.kind != KIND:
                by_tenant.setdefault(job.tenant_id, []).append(job)
        submitted: builtins.list[Job] = []
        for tenant, ended in by_tenant.items():
            subscriptions = self._subscriptions(tenant)
            if not subscriptions:
                continue
            requests = self._deliveries(tenant, ended, subscriptions)
            if requests:
                submitted.extend(self.engine.submit_many(requests, tenant))
        return submitted

    def _deliveries(self, tenant: str, jobs: builtins.list[Job],
                    subscriptions: builtins.list[Webhook]) -> builtins.list[SubmitRequest]:
        requests = []
        for job in jobs:
            if not any(w.app_id is None or w.app_id == job.app_id for w in subscriptions):
                continue  # read nothing back for a job no subscription hears of
            final = job if job.terminal else self.engine.store.job_get(tenant, job.id)
            event = EVENT_OF.get(final.status) if final is not None else None
            if final is None or event is None:
                continue
            payload = {"type": event, "timestamp": _iso(datetime.now(UTC)),
                       "data": job_json(final)}
            for webhook in subscriptions:
                if wants(webhook, final, event):
                    requests.append(SubmitRequest(
                        kind=KIND, app_id=webhook.app_id,
                        input={"webhook_id": webhook.id, "event": event, "payload": payload},
                        labels={"webhook_id": webhook.id, "event": event, "job_id": final.id}))
        return requests


def _checked_url(url: Any) -> str:
    problem = None
    if not isinstance(url, str) or not url:
        problem = "expected an http or https URL"
    elif len(url) > MAX_URL:
        problem = f"at most {MAX_URL} characters"
    else:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            problem = "not a valid URL"
        else:
            if parts.scheme not in ("http", "https"):
                problem = "the scheme must be http or https"
            elif not host:
                problem = "the URL needs a host"
    if problem is not None:
        raise errors.InvalidInput(f"invalid webhook url {url!r}: {problem}",
                                  [{"field": "url", "message": problem}])
    assert isinstance(url, str)
    return url


def _checked_events(events: Any) -> list[str]:
    choices = f"choose from {', '.join(EVENTS)} or '{ALL}'"
    if isinstance(events, str) or not isinstance(events, Sequence) or not events:
        raise errors.InvalidInput(f"events must be a non-empty list: {choices}",
                                  [{"field": "events", "message": "expected a non-empty list"}])
    unknown = [e for e in events if e not in EVENTS and e != ALL]
    if unknown:
        raise errors.InvalidInput(f"unknown event(s) {unknown}: {choices}",
                                  [{"field": "events", "message": f"unknown: {unknown}"}])
    return list(dict.fromkeys(events))
