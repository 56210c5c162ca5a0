"""Blob storage: a local directory (default) or an S3 bucket, behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobdock.blobs.base import BlobInfo, BlobStore, blob_key, check_key, content_disposition

if TYPE_CHECKING:
    from jobdock.config import Settings

__all__ = [
    "BlobInfo",
    "BlobStore",
    "blob_key",
    "check_key",
    "content_disposition",
    "open_blobs",
]


def open_blobs(url: str, settings: Settings | None = None) -> BlobStore:
    """Open the blob store a URL names.

    `file://relative/dir` or `file:///absolute/dir`: a local directory.
    `s3://bucket` or `s3://bucket/prefix`: an S3 bucket; the endpoint comes from
    `settings` (read from the environment when not given), credentials and region
    from boto3's own configuration.
    """
    if url.startswith("file://"):
        from jobdock.blobs.local import LocalBlobStore

        return LocalBlobStore(url[len("file://") :])
    if url.startswith("s3://"):
        # Imported here so that boto3 loads only for deployments that use S3.
        from jobdock.blobs.s3 import S3BlobStore
        from jobdock.config import Settings

        settings = settings or Settings()
        return S3BlobStore.from_url(
            url,
            endpoint_url=settings.s3_endpoint_url,
            addressing_style=settings.s3_addressing_style,
        )
    raise ValueError(f"unsupported blob URL {url!r}: use file://directory or s3://bucket/prefix")
