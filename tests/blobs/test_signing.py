"""Signed blob download tokens and the key they are signed with."""

from __future__ import annotations

import base64
import json
import stat
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from jobdock.blobs.signing import (
    InvalidToken,
    load_or_create_secret,
    resolve_secret,
    sign_blob_token,
    verify_blob_token,
)
from jobdock.config import Settings
from jobdock.errors import InvalidInput, JobdockError

SECRET = b"s" * 32
KEY = "default/0123456789abcdef01234567/artifacts/out.csv"
NOW = 1_700_000_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _reason(token: str, secret: bytes = SECRET, now: float = NOW) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify_blob_token(secret, token, now=now)
    return caught.value.reason


def test_round_trip() -> None:
    token = sign_blob_token(SECRET, KEY, NOW + 60, filename="Bericht März.csv")

    assert verify_blob_token(SECRET, token, now=NOW) == (KEY, "Bericht März.csv")
    assert verify_blob_token(SECRET, sign_blob_token(SECRET, KEY, NOW + 60), now=NOW) == (
        KEY, None)


def test_token_is_url_safe_and_compact() -> None:
    token = sign_blob_token(SECRET, KEY, NOW + 60, filename="a b/c?.csv")

    assert quote(token, safe="") == token
    assert len(token) < 200


def test_token_is_valid_until_the_second_it_expires() -> None:
    token = sign_blob_token(SECRET, KEY, NOW + 60)

    assert verify_blob_token(SECRET, token, now=NOW + 59.999)[0] == KEY
    assert _reason(token, now=NOW + 60) == "expired"
    assert _reason(token, now=NOW + 10_000) == "expired"


def test_tampered_signature() -> None:
    payload, signature = sign_blob_token(SECRET, KEY, NOW + 60).split(".")
    # The first character carries six whole bits of the signature.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    assert _reason(f"{payload}.{flipped}") == "signature"
    assert _reason(f"{payload}.{signature[:-4]}") == "signature"  # a shorter signature


@pytest.mark.parametrize(
    "fields",
    [
        ["default/other-job/artifacts/out.csv", NOW + 60, None],  # another blob
        [KEY, NOW + 10**9, None],  # a later expiry
        [KEY, NOW + 60, "evil.html"],  # another file name
    ],
)
def test_tampered_payload(fields: list[object]) -> None:
    _, signature = sign_blob_token(SECRET, KEY, NOW + 60).split(".")
    forged = _b64(json.dumps(fields, separators=(",", ":")).encode())

    assert _reason(f"{forged}.{signature}") == "signature"


def test_wrong_secret() -> None:
    token = sign_blob_token(SECRET, KEY, NOW + 60)

    assert _reason(token, secret=b"t" * 32) == "signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dot-at-all",
        "a.b.c",
        ".",
        "abc!.def",
        "abc.de+f",
        "abc=.def",
        "abcde.fgh",  # a length no base64 has
        "é.abc",
        "a" * 5000 + ".b",
    ],
)
def test_malformed(token: str) -> None:
    assert _reason(token) == "malformed"


def test_invalid_token_is_a_jobdock_error() -> None:
    with pytest.raises(JobdockError) as caught:
        verify_blob_token(SECRET, "nonsense", now=NOW)

    assert caught.value.code == "invalid_token"
    assert caught.value.details == {"reason": "malformed"}


def test_signing_refuses_bad_keys_and_weak_secrets() -> None:
    with pytest.raises(InvalidInput):
        sign_blob_token(SECRET, "t/../other/x", NOW)
    with pytest.raises(ValueError):
        sign_blob_token(b"short", KEY, NOW)
    with pytest.raises(ValueError):
        verify_blob_token(b"", "a.b")
    with pytest.raises(TypeError):
        sign_blob_token(SECRET, KEY, float(NOW))  # type: ignore[arg-type]


def test_secret_is_created_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"

    first = load_or_create_secret(path)

    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert load_or_create_secret(tmp_path / "other.key") != first
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_secret_created_by_racing_processes_is_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    seen: list[bytes] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait()
        seen.append(load_or_create_secret(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(seen) == 8
    assert set(seen) == {load_or_create_secret(path)}


def test_damaged_secret_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("not hex\n")

    with pytest.raises(ValueError, match="delete it"):
        load_or_create_secret(path)
    assert path.read_text() == "not hex\n"


def test_configured_secret_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"

    assert resolve_secret("a configured secret key", path) == b"a configured secret key"
    assert not path.exists()
    assert resolve_secret(None, path) == load_or_create_secret(path)
    with pytest.raises(ValueError):
        resolve_secret("short", path)


def test_secret_key_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBDOCK_SECRET_KEY", "a long enough secret value")

    settings = Settings()

    assert settings.secret_key == "a long enough secret value"
    assert "a long enough secret value" not in repr(settings)
