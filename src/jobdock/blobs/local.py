"""Blobs as files in a directory; writes go to a temporary file, then rename.

The directory cannot sign URLs: `presigned_url()` returns None and the HTTP layer
serves these blobs through tokens from `jobdock.blobs.signing`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from jobdock.blobs.base import BlobInfo, BlobStore, check_key, iter_chunks


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # check_key refuses '..' and absolute keys; this catches a symlink placed inside.
        if self.root not in path.parents:
            raise ValueError(f"blob key {key!r} escapes the blob directory")
        return path

    def put(self, key: str, data: bytes | BinaryIO | Iterable[bytes]) -> BlobInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(data):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return BlobInfo(key, size, digest.hexdigest())

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def presigned_url(
        self, key: str, expires_in_s: int, filename: str | None = None
    ) -> str | None:
        check_key(key)
        return None
