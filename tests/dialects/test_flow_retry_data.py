"""Correcting a flow's failed records through their retry data, then retrying them."""

from __future__ import annotations

from fastapi.testclient import TestClient

from jobdock import App
from tests.dialects.conftest import MakeKey
from tests.kinds.flowing import BAD_TOTAL, GOOD, NO_EMAIL, flow_input, wait_flow, wait_job
from tests.kinds.ingesting import csv_bytes, running, upload


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_correct_retry_data_then_retry_the_errors(jd: App, client: TestClient,
                                                  make_key: MakeKey) -> None:
    h = bearer(make_key())
    flow = jd.submit("flow", flow_input({"upload": upload(jd, "o.csv", csv_bytes(
        [GOOD, NO_EMAIL, BAD_TOTAL]))}))
    with running(jd):
        _, _, imported = wait_flow(jd, flow.id)
        assert imported is not None
        listed = client.get(f"/v1/jobs/{imported.id}/errors", headers=h).json()["items"]
        missing, bad = (e["id"] for e in listed)
        url = f"/v1/jobs/{imported.id}/errors/{{}}/retry-data"
        record = client.get(url.format(missing), headers=h).json()
        assert str(record["id"]) == "3" and record["customer_email"] is None
        fixed = {**record, "customer_email": "c@example.com"}
        answer = client.put(url.format(missing), json=fixed, headers=h)
        assert answer.status_code == 200 and answer.json() == fixed
        assert client.get(url.format(missing), headers=h).json() == fixed
        # The other error stays as it was: resolved, it is left out of the retry.
        assert client.patch(f"/v1/jobs/{imported.id}/errors/{bad}", json={"resolved": True},
                            headers=h).status_code == 200
        answer = client.post(f"/v1/jobs/{imported.id}/errors/retry", headers=h)
        assert answer.status_code == 201, answer.text
        retry = wait_job(jd, answer.json()["id"])
    assert retry.status == "succeeded"
    assert (retry.stats.get("success"), retry.stats.get("errors", 0)) == (1, 0)
    assert retry.parent_id == flow.id and retry.labels["retry_of"] == imported.id
    shown = client.get(f"/compat/integrator/v1/jobs/{imported.id}/joberrors", headers=h).json()
    assert [(e["retry"], e["resolve"]) for e in shown] == [(True, False), (False, True)]
    job = client.get(f"/compat/integrator/v1/jobs/{imported.id}", headers=h).json()
    assert job["retriable"] is False
    # A retried error's data can no longer be changed.
    assert client.put(url.format(missing), json=fixed, headers=h).status_code == 409


def test_retry_data_refusals(jd: App, client: TestClient, make_key: MakeKey) -> None:
    h = bearer(make_key())
    flow = jd.submit("flow", flow_input({"upload": upload(jd, "o.csv", csv_bytes([NO_EMAIL]))}))
    with running(jd):
        _, _, imported = wait_flow(jd, flow.id)
    assert imported is not None
    [error] = client.get(f"/v1/jobs/{imported.id}/errors", headers=h).json()["items"]
    url = f"/v1/jobs/{imported.id}/errors/{error['id']}/retry-data"
    assert client.put(url, json=[1, 2], headers=h).status_code == 422
    assert client.put(url, content=b"{", headers={**h, "Content-Type": "application/json"}
                      ).status_code == 422
    for path in (f"/v1/jobs/{imported.id}/errors/{'0' * 24}/retry-data",
                 f"/v1/jobs/{imported.id}/errors/nonsense/retry-data",
                 f"/v1/jobs/{flow.id}/errors/{error['id']}/retry-data"):
        assert client.get(path, headers=h).status_code == 404
    other = bearer(make_key("other"))
    assert client.get(url, headers=other).status_code == 404
    assert client.put(url, json={}, headers=other).status_code == 404
    assert client.get(url).status_code == 401
    reader = bearer(make_key(scopes=("jobs:read",)))
    assert client.get(url, headers=reader).status_code == 200
    assert client.put(url, json={}, headers=reader).status_code == 403
