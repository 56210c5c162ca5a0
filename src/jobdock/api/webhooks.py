"""`/v1/webhooks`: subscriptions to job events, delivered as signed `webhook` jobs.

A tenant key manages the tenant's subscriptions, which hear of every job of
the tenant, and sees its apps' too; an app key creates subscriptions that hear
of its app's jobs only, and sees only those. The signing secret is in the
answer to the create, and never again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from jobdock.api.deps import Reader, Writer, get_app
from jobdock.model import Webhook
from jobdock.webhooks import ALL, EVENTS, Webhooks

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def get_webhooks(request: Request) -> Webhooks:
    return get_app(request).webhooks


WebhooksDep = Annotated[Webhooks, Depends(get_webhooks)]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http or https URL that receives the events (POST, JSON)")
    events: list[str] = Field(description=f"any of {', '.join(EVENTS)}, or '{ALL}' for all")
    description: str | None = Field(None, description="a note for people")


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    app_id: str | None = Field(description="set when only this app's jobs are heard of")
    created_at: datetime | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…: verifies the webhook-signature header; shown"
                        " only in this answer")


class WebhookList(BaseModel):
    items: list[WebhookOut]


def _out(webhook: Webhook) -> WebhookOut:
    return WebhookOut(id=webhook.id, url=webhook.url, events=webhook.events,
                      description=webhook.description, app_id=webhook.app_id,
                      created_at=webhook.created_at)


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(body: WebhookCreate, principal: Writer, webhooks: WebhooksDep,
                   response: Response) -> WebhookCreated:
    """Subscribe a URL to job events; the answer holds the signing secret."""
    created = webhooks.create(principal.tenant_id, body.url, body.events,
                              description=body.description, app_id=principal.app_id)
    response.headers["Location"] = f"/v1/webhooks/{created.id}"
    return WebhookCreated(**_out(created).model_dump(), secret=created.secret)


@router.get("", response_model=WebhookList)
def list_webhooks(principal: Reader, webhooks: WebhooksDep) -> WebhookList:
    """The caller's subscriptions, oldest first (without their secrets)."""
    found = webhooks.list(principal.tenant_id, app_id=principal.app_id)
    return WebhookList(items=[_out(w) for w in found])


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: str, principal: Reader, webhooks: WebhooksDep) -> WebhookOut:
    return _out(webhooks.get(principal.tenant_id, webhook_id, app_id=principal.app_id))


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, principal: Writer, webhooks: WebhooksDep) -> Response:
    """Unsubscribe; deliveries not yet sent are skipped."""
    webhooks.delete(principal.tenant_id, webhook_id, app_id=principal.app_id)
    return Response(status_code=204)
