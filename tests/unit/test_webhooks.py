"""Webhook signatures against the Standard Webhooks reference, and the cost of emission."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from jobdock import App, JobStatus
from jobdock.model import Job
from jobdock.webhooks import new_secret, sign, verify

# The example of the Standard Webhooks specification and its reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_specification_example() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.encode()) == SPEC_SIGNATURE


def test_verify() -> None:
    now = SPEC_TIMESTAMP + 10
    assert verify(SPEC_SECRET, SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY, SPEC_SIGNATURE, now=now)
    several = f"v1,bm9wZQ== {SPEC_SIGNATURE}"
    assert verify(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, several, now=now)
    assert not verify(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY + " ", SPEC_SIGNATURE,
                      now=now)
    assert not verify(SPEC_SECRET, "msg_other", SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE,
                      now=now)
    assert not verify(new_secret(), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE, now=now)
    too_late = SPEC_TIMESTAMP + 301
    assert not verify(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE,
                      now=too_late)
    assert not verify(SPEC_SECRET, SPEC_ID, "soon", SPEC_BODY, SPEC_SIGNATURE, now=now)


def test_secrets_are_whsec_and_24_random_bytes() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24


def test_a_bad_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="base64"):
        sign("whsec_not base64!", "id", 1, b"{}")


def test_tenants_without_subscriptions_cost_one_read_per_cache_period(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = App(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
              blob_url=f"file://{tmp_path / 'blobs'}")
    try:
        reads: list[str] = []
        store = app.engine.store
        real = store.webhook_list

        def counting(tenant_id: str) -> Any:
            reads.append(tenant_id)
            return real(tenant_id)

        monkeypatch.setattr(store, "webhook_list", counting)
        ended = Job(id="0" * 24, tenant_id="default", kind="sleep", status=JobStatus.SUCCEEDED,
                    input={})
        for _ in range(100):
            assert app.webhooks.emit([ended]) == []
        assert reads == ["default"]
    finally:
        app.close()
