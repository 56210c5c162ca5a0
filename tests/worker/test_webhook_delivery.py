"""Webhook deliveries end to end on both stores: a worker thread posts job events to a
local receiver, signed so that an independent check in this file verifies them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobdock import App, JobContext, JobStatus
from jobdock.access import Access
from jobdock.model import Job
from tests.helpers import WorkerThreads, wait_for

FAST = {"lease_s": 2.0, "heartbeat_interval_s": 0.1, "poll_interval_s": 0.05,
        "flush_interval_s": 0.02, "maintenance_interval_s": 0.1,
        "retry_backoff_base_s": 0.01, "retry_backoff_max_s": 0.05}


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    """Records the requests it gets; answers the statuses in `answers`, then 200."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    got: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, delivery: Delivery) -> int:
        with self.lock:
            self.got.append(delivery)
            return self.answers.pop(0) if self.answers else 200

    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self.got)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            status = rec.answer(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[App]:
    the_app = App(database_url=database_url, blob_url=f"file://{tmp_path / 'blobs'}", **FAST)

    @the_app.job("ok", max_attempts=1)
    def ok(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
        ctx.count(read=2)
        return {"echo": input}

    @the_app.job("boom", max_attempts=1)
    def boom(ctx: JobContext, input: dict[str, Any]) -> None:
        raise ValueError("boom on purpose")

    yield the_app
    the_app.close()


@pytest.fixture
def running(app: App) -> Iterator[Callable[[], Callable[[], None]]]:
    """start() runs a worker thread and returns a function that stops it (also done after)."""
    workers = WorkerThreads(app)

    def start() -> Callable[[], None]:
        workers.start()
        return workers.stop_all

    yield start
    workers.stop_all()


def deliveries_of(app: App, tenant: str = "default") -> list[Job]:
    return app.list(tenant=tenant, kind="webhook", page_size=1000).items


def signature_ok(secret: str, delivery: Delivery) -> bool:
    """Standard Webhooks, computed here from the spec rather than with jobdock's code."""
    key = base64.b64decode(secret.split("_", 1)[1])
    h = delivery.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + delivery.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in h["webhook-signature"].split())


def test_events_are_delivered_signed(app: App, receiver: Receiver, running: Any) -> None:
    hook = app.webhooks.create("default", receiver.url, ["job.succeeded", "job.failed"])
    stop = running()
    good = app.submit("ok", {"x": 1}, labels={"order": "42"})
    bad = app.submit("boom", {})
    wait_for(lambda: len(receiver.deliveries()) == 2)
    wait_for(lambda: all(d.terminal for d in deliveries_of(app)))
    stop()

    by_type = {d.event["type"]: d for d in receiver.deliveries()}
    assert set(by_type) == {"job.succeeded", "job.failed"}
    succeeded, failed = by_type["job.succeeded"].event, by_type["job.failed"].event
    assert succeeded["data"]["id"] == good.id
    assert succeeded["data"]["status"] == "succeeded"
    assert succeeded["data"]["result"] == {"echo": {"x": 1}}
    assert succeeded["data"]["stats"] == {"read": 2}
    assert succeeded["data"]["labels"] == {"order": "42"}
    assert succeeded["data"]["finished_at"]
    assert succeeded["timestamp"]
    assert failed["data"]["id"] == bad.id
    assert failed["data"]["status"] == "failed"
    assert "boom on purpose" in failed["data"]["error"]["message"]

    sent = {j.labels["job_id"]: j for j in deliveries_of(app)}
    assert set(sent) == {good.id, bad.id}, "one delivery per event; deliveries emit nothing"
    for delivery in receiver.deliveries():
        job_id = delivery.event["data"]["id"]
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.headers["webhook-id"] == sent[job_id].id
        assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 600
        assert signature_ok(hook.secret, delivery)
        assert not signature_ok("whsec_" + base64.b64encode(b"0" * 24).decode(), delivery)
        assert sent[job_id].status is JobStatus.SUCCEEDED
        assert sent[job_id].result["status_code"] == 200
        assert sent[job_id].labels["webhook_id"] == hook.id


def test_a_failing_receiver_gets_retries(app: App, receiver: Receiver, running: Any) -> None:
    hook = app.webhooks.create("default", receiver.url, ["*"])
    receiver.answers = [500, 500]
    running()
    job = app.submit("ok", {})
    wait_for(lambda: any(d.terminal for d in deliveries_of(app)))

    [delivery] = deliveries_of(app)
    assert delivery.status is JobStatus.SUCCEEDED
    assert delivery.attempt == 3
    assert delivery.result["status_code"] == 200
    attempts = app.engine.store.job_attempts("default", delivery.id)
    assert [a.error["code"] for a in attempts if a.error] == ["http_500", "http_500"]
    assert all("500" in a.error["message"] for a in attempts if a.error)
    got = receiver.deliveries()
    assert len(got) == 3
    assert {d.headers["webhook-id"] for d in got} == {delivery.id}, "one message id per event"
    assert all(signature_ok(hook.secret, d) for d in got)
    assert all(d.event["data"]["id"] == job.id for d in got)


def test_an_unreachable_receiver_fails_the_attempt(app: App, running: Any) -> None:
    app.webhooks.create("default", "http://127.0.0.1:9/nobody-listens", ["*"])
    running()
    app.submit("ok", {})
    wait_for(lambda: any(d.attempt >= 2 for d in deliveries_of(app)))
    attempts = app.engine.store.job_attempts("default", deliveries_of(app)[0].id)
    assert attempts[0].error is not None
    assert attempts[0].error["code"] == "connection_error"


def test_deleting_the_subscription_stops_deliveries(app: App, receiver: Receiver,
                                                   running: Any) -> None:
    hook = app.webhooks.create("default", receiver.url, ["*"])
    app.webhooks.delete("default", hook.id)
    # A delivery already queued when its subscription goes is skipped.
    queued = app.submit("webhook", {"webhook_id": hook.id, "event": "job.succeeded",
                                    "payload": {"type": "job.succeeded"}})
    stop = running()
    job = app.submit("ok", {})
    assert app.wait(job.id, timeout_s=30).status is JobStatus.SUCCEEDED
    assert app.wait(queued.id, timeout_s=30).result == {
        "delivered": False, "skipped": "the subscription was deleted"}
    stop()
    assert [d.id for d in deliveries_of(app)] == [queued.id]
    assert receiver.deliveries() == []


def test_canceling_a_queued_job_emits_canceled(app: App, receiver: Receiver,
                                               running: Any) -> None:
    hook = app.webhooks.create("default", receiver.url, ["job.canceled"])
    job = app.submit("ok", {})
    assert app.cancel(job.id).status is JobStatus.CANCELED
    running()
    wait_for(lambda: len(receiver.deliveries()) == 1)
    [delivery] = receiver.deliveries()
    assert delivery.event["type"] == "job.canceled"
    assert delivery.event["data"]["id"] == job.id
    assert delivery.event["data"]["status"] == "canceled"
    assert signature_ok(hook.secret, delivery)


def test_events_not_subscribed_to_are_not_sent(app: App, receiver: Receiver,
                                               running: Any) -> None:
    app.webhooks.create("default", receiver.url, ["job.failed"])
    stop = running()
    ok = app.submit("ok", {})
    bad = app.submit("boom", {})
    for job_id in (ok.id, bad.id):
        app.wait(job_id, timeout_s=30)
    wait_for(lambda: len(receiver.deliveries()) == 1)
    stop()
    assert [j.labels["job_id"] for j in deliveries_of(app)] == [bad.id]
    assert receiver.deliveries()[0].event["type"] == "job.failed"


def test_app_and_tenant_subscriptions_hear_their_own_jobs(app: App, receiver: Receiver,
                                                          running: Any) -> None:
    access = Access(app.engine.store)
    app.create_tenant("acme")
    mobile = access.create_app("acme", "mobile").id
    web = access.create_app("acme", "web").id
    for_mobile = app.webhooks.create("acme", receiver.url, ["*"], app_id=mobile)
    tenant_wide = app.webhooks.create("acme", receiver.url, ["*"])
    app.webhooks.create("default", receiver.url, ["*"])  # another tenant's: hears nothing here
    stop = running()
    mobile_job = app.submit("ok", {}, tenant="acme", app_id=mobile)
    web_job = app.submit("ok", {}, tenant="acme", app_id=web)
    wait_for(lambda: len(receiver.deliveries()) == 3)
    wait_for(lambda: all(d.terminal for d in deliveries_of(app, "acme")))
    stop()

    heard = sorted((j.labels["webhook_id"], j.labels["job_id"], j.app_id)
                   for j in deliveries_of(app, "acme"))
    assert heard == sorted([(for_mobile.id, mobile_job.id, mobile),
                            (tenant_wide.id, mobile_job.id, None),
                            (tenant_wide.id, web_job.id, None)])
    assert deliveries_of(app, "default") == []
