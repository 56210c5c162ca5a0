"""Settings: JOBDOCK_* variables under values given in code, converted and checked."""

from __future__ import annotations

import pytest

from jobdock.config import DEFAULT_RETENTION_S, Settings


def test_defaults_environment_and_code(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().retention_s == DEFAULT_RETENTION_S
    monkeypatch.setenv("JOBDOCK_LEASE_S", "1.5")
    monkeypatch.setenv("jobdock_claim_batch", "12")  # names are case-insensitive
    monkeypatch.setenv("JOBDOCK_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("JOBDOCK_NOT_A_SETTING", "x")
    settings = Settings(claim_batch=7, unknown="ignored")
    assert settings.lease_s == 1.5 and settings.claim_batch == 7
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert Settings(retention_s=60.0).retention_s == 60  # a whole float is an integer


@pytest.mark.parametrize(("given", "message"), [
    ({"lease_s": 0}, "setting lease_s: must be greater than 0; got 0"),
    ({"claim_batch": 10_001}, "setting claim_batch: must be at most 10000"),
    ({"retention_s": 1.5}, "setting retention_s: expected an integer"),
    ({"database_url": 3}, "setting database_url: expected a string"),
    ({"s3_addressing_style": "up"}, "setting s3_addressing_style: must match"),
])
def test_bad_values_name_the_setting(given: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        Settings(**given)


def test_bad_environment_names_the_variable_and_never_shows_a_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBDOCK_POLL_INTERVAL_S", "soon")
    with pytest.raises(ValueError, match=r"poll_interval_s \(from JOBDOCK_POLL_INTERVAL_S\)"):
        Settings()
    monkeypatch.delenv("JOBDOCK_POLL_INTERVAL_S")
    with pytest.raises(ValueError) as short:
        Settings(secret_key="hush")
    assert "16 characters" in str(short.value) and "hush" not in str(short.value)
    assert "hush-hush-hush-hush" not in repr(Settings(secret_key="hush-hush-hush-hush"))


def test_copy_with_changes_is_checked() -> None:
    settings = Settings(lease_s=3.0)
    copy = settings.model_copy(update={"database_url": "sqlite:///other.db"})
    assert copy.database_url == "sqlite:///other.db" and copy.lease_s == 3.0
    assert settings.database_url != copy.database_url
    assert copy.model_dump()["lease_s"] == 3.0
    with pytest.raises(ValueError, match="pg_pool_max"):
        settings.model_copy(update={"pg_pool_max": 0})
