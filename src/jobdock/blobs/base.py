"""The blob interface: every file a job reads or writes lives under a key.

Keys are `<tenant>/<job id>/<kind of file>/<name>`; `blob_key()` builds them and
refuses names that would climb out of their prefix, and every store checks each key it
is given with `check_key()` so that a key read from a request cannot either.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

from jobdock.errors import InvalidInput

_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,254}")
# Longest S3 key is 1024 bytes; a configured S3 prefix takes part of that.
MAX_KEY_LENGTH = 900
CHUNK = 1 << 20


def blob_key(*parts: str) -> str:
    """Join key parts, each checked so that no key can escape its tenant/job prefix."""
    for part in parts:
        if not _SAFE_PART.fullmatch(part) or ".." in part:
            raise InvalidInput(
                f"invalid file name {part!r}: use letters, digits, '.', '_', '-' or spaces,"
                " starting with a letter or digit, at most 255 characters"
            )
    return "/".join(parts)


def check_key(key: str) -> str:
    """Return `key` if every `/`-separated part passes blob_key's checks; else InvalidInput.

    This refuses absolute keys, empty parts (`a//b`, a trailing `/`), `.` and `..`,
    so a key always names something under its store's root or prefix.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"invalid blob key {key!r}: 1 to {MAX_KEY_LENGTH} characters")
    try:
        blob_key(*key.split("/"))
    except InvalidInput:
        raise InvalidInput(
            f"invalid blob key {key!r}: parts separated by '/', each starting with a letter"
            " or digit and made of letters, digits, '.', '_', '-' or spaces, without '..'"
        ) from None
    return key


def content_disposition(filename: str) -> str:
    """A Content-Disposition header that downloads as `filename` (RFC 6266).

    Quotes, backslashes and control characters never reach the quoted form, so
    the name cannot break out of the header; non-ASCII names go in `filename*`.
    """
    fallback = "".join(
        c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename
    ) or "download"
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def iter_chunks(data: bytes | BinaryIO | Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Chunks of bytes, a binary file object (read `size` at a time) or an iterable."""
    if isinstance(data, bytes):
        if data:
            yield data
    elif isinstance(data, bytearray | memoryview):
        if data:
            yield bytes(data)
    elif hasattr(data, "read"):
        while chunk := data.read(size):
            yield chunk
    else:
        for chunk in data:
            if chunk:
                yield bytes(chunk)


@dataclass(slots=True)
class BlobInfo:
    key: str
    size: int
    sha256: str


class BlobStore(abc.ABC):
    @abc.abstractmethod
    def put(self, key: str, data: bytes | BinaryIO | Iterable[bytes]) -> BlobInfo:
        """Store data (bytes, a binary file object, or an iterable of chunks), streaming."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A binary file object to read; FileNotFoundError when missing."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix/`; return how many."""

    @abc.abstractmethod
    def presigned_url(
        self, key: str, expires_in_s: int, filename: str | None = None
    ) -> str | None:
        """A URL anyone can GET the blob from until it expires, or None.

        None means the store cannot sign URLs itself (the local directory): the HTTP
        layer then hands out `/v1/blobs/{token}` with a token from `blobs.signing`.
        With `filename`, the download carries a Content-Disposition for that name.
        The key is checked but its existence is not.
        """
