"""The `webhook` kind: delivers one signed event to one subscription.

Deliveries are submitted by `jobdock.webhooks` when jobs end. The message id
(`webhook-id`) is the delivery job's id, the same on every attempt, so a
receiver can drop duplicates; the timestamp and signature are made afresh per
attempt. A receiver that does not answer 2xx, or cannot be reached, fails the
attempt and the engine retries it with backoff.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field

from jobdock.webhooks import EVENTS, sign
from jobdock.worker.context import JobContext

TIMEOUT_S = 10.0
USER_AGENT = "jobdock-webhooks/0.1"


class WebhookInput(BaseModel):
    webhook_id: str = Field(description="the subscription to deliver to")
    event: str = Field(description=f"one of {', '.join(EVENTS)}")
    payload: dict[str, Any] = Field(description="the JSON body: {type, timestamp, data}")


class DeliveryFailed(Exception):
    """The receiver answered other than 2xx, or could not be reached; `code` says which."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def deliver(ctx: JobContext, input: WebhookInput) -> dict[str, Any]:
    # Imported here: every worker registers this kind, few deliver webhooks, and
    # httpx costs a worker process about 10 MB and 0.1 s to import.
    import httpx

    webhook = ctx.engine.store.webhook_get(ctx.job.tenant_id, input.webhook_id)
    if webhook is None:
        return {"delivered": False, "skipped": "the subscription was deleted"}
    body = json.dumps(input.payload, separators=(",", ":")).encode()
    msg_id = ctx.job.id
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(webhook.secret, msg_id, timestamp, body),
    }
    try:
        # Redirects are not followed: a moved endpoint is the subscriber's to fix.
        response = httpx.post(webhook.url, content=body, headers=headers, timeout=TIMEOUT_S,
                              follow_redirects=False)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"could not deliver to {webhook.url}: {exc!r}",
                             "connection_error") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"{webhook.url} answered HTTP {response.status_code}",
                             f"http_{response.status_code}")
    return {"delivered": True, "status_code": response.status_code, "url": webhook.url,
            "attempt": ctx.job.attempt}
