"""Blob storage: local directory (default); S3 behind the same interface later."""

from __future__ import annotations

from jobdock.blobs.base import BlobInfo, BlobStore, blob_key

__all__ = ["BlobInfo", "BlobStore", "blob_key", "open_blobs"]


def open_blobs(url: str) -> BlobStore:
    """Open the blob store a URL names: file://relative/dir or file:///absolute/dir."""
    if url.startswith("file://"):
        from jobdock.blobs.local import LocalBlobStore

        return LocalBlobStore(url[len("file://") :])
    raise ValueError(f"unsupported blob URL {url!r}: use file://directory")
