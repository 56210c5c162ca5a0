"""Signed, expiring tokens for downloading local blobs (`GET /v1/blobs/{token}`).

A token is `<payload>.<signature>`, both unpadded URL-safe base64. The payload is the
compact JSON `[key, expires_at, filename]`; the signature is HMAC-SHA256 of a fixed
context string and the payload, so a token made for anything else never verifies.
Whoever holds a token may download that one blob until `expires_at` (Unix seconds);
nothing else is needed, which is what lets the HTTP layer hand it to browsers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from contextlib import suppress
from pathlib import Path

from jobdock.blobs.base import check_key
from jobdock.errors import JobdockError

__all__ = [
    "InvalidToken",
    "load_or_create_secret",
    "resolve_secret",
    "sign_blob_token",
    "verify_blob_token",
]

MIN_SECRET_BYTES = 16
SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 4096
_CONTEXT = b"jobdock blob token v1\n"
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


class InvalidToken(JobdockError):
    """A blob token that is malformed, altered, signed with another key or expired.

    `reason` is one of "malformed", "signature", "expired"; the HTTP layer answers
    403 whatever it is.
    """

    code = "invalid_token"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


def sign_blob_token(
    secret: bytes, key: str, expires_at: int, filename: str | None = None
) -> str:
    """A token that lets its holder download `key` (as `filename`) until `expires_at`."""
    _check_secret(secret)
    check_key(key)
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise TypeError("expires_at must be an int (Unix seconds)")
    payload = json.dumps([key, expires_at, filename], separators=(",", ":"),
                         ensure_ascii=False).encode()
    return f"{_encode(payload)}.{_encode(_sign(secret, payload))}"


def verify_blob_token(
    secret: bytes, token: str, now: float | None = None
) -> tuple[str, str | None]:
    """The (key, filename) a valid token names; InvalidToken otherwise.

    The signature is checked, in constant time, before the payload is parsed.
    """
    _check_secret(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise InvalidToken("malformed", "malformed blob token")
    payload_text, signature_text = token.split(".")
    payload = _decode(payload_text)
    signature = _decode(signature_text)
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise InvalidToken("signature", "blob token signature does not match")
    try:
        key, expires_at, filename = json.loads(payload)
    except (ValueError, TypeError):
        # Signed with our key but not by sign_blob_token: still refuse, never crash.
        raise InvalidToken("malformed", "malformed blob token") from None
    if (
        not isinstance(key, str)
        or isinstance(expires_at, bool)
        or not isinstance(expires_at, int)
        or not (filename is None or isinstance(filename, str))
    ):
        raise InvalidToken("malformed", "malformed blob token")
    if (time.time() if now is None else now) >= expires_at:
        raise InvalidToken("expired", "blob token has expired")
    return key, filename


def load_or_create_secret(path: str | Path) -> bytes:
    """The 32-byte key stored at `path` (hex, mode 0600), created on first use.

    Several processes may start at once: the key is written to a private temporary
    file and linked into place, so exactly one key wins and every process reads it.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(SECRET_BYTES) + "\n")
            # If another process linked its key first, keep theirs.
            with suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"{path} does not hold a {SECRET_BYTES}-byte hex key; delete it to"
                         " make a new one (outstanding download links stop working)")
    return secret


def resolve_secret(secret_key: str | None, path: str | Path) -> bytes:
    """`secret_key` (JOBDOCK_SECRET_KEY) when set, else the key kept at `path`."""
    if secret_key:
        secret = secret_key.encode()
        _check_secret(secret)
        return secret
    return load_or_create_secret(path)


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT + payload, hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the signing key must be at least {MIN_SECRET_BYTES} bytes")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    if not _B64.match(text) or len(text) % 4 == 1:
        raise InvalidToken("malformed", "malformed blob token")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed", "malformed blob token") from None
