"""The blob interface: every file a job reads or writes lives under a key.

Keys are `<tenant>/<job id>/<kind of file>/<name>`; `blob_key()` builds them and
refuses names that would climb out of their prefix.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from jobdock.errors import InvalidInput

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,254}$")


def blob_key(*parts: str) -> str:
    """Join key parts, each checked so that no key can escape its tenant/job prefix."""
    for part in parts:
        if not _SAFE_PART.match(part) or ".." in part:
            raise InvalidInput(
                f"invalid file name {part!r}: use letters, digits, '.', '_', '-' or spaces,"
                " starting with a letter or digit, at most 255 characters"
            )
    return "/".join(parts)


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
