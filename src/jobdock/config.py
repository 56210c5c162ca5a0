"""Settings, read from JOBDOCK_* environment variables (and overridable in code).

The environment is read here rather than through pydantic-settings, which cost
every worker process about 14 MB of memory and 0.1 s of start-up for a few
plain values. As there: names are case-insensitive (`JOBDOCK_LEASE_S`), values
are validated as their fields' types, and values given in code win.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_RETENTION_S = 7 * 24 * 3600
ENV_PREFIX = "JOBDOCK_"


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, given: Any) -> Any:
        """JOBDOCK_<FIELD> environment variables, under the values given in code."""
        if not isinstance(given, dict):
            return given
        found = {}
        for name, value in os.environ.items():
            field = name[len(ENV_PREFIX):].lower()
            if name[:len(ENV_PREFIX)].upper() == ENV_PREFIX and field in cls.model_fields:
                found[field] = value
        return {**found, **given}

    database_url: str = Field(
        "sqlite:///.jobdock/jobdock.db",
        description="sqlite:///path/to/file.db or postgresql://user@host:port/db",
    )
    blob_url: str = Field("file://.jobdock/blobs", description="file://dir or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint for MinIO, moto and other S3-compatible stores; when"
        " unset, boto3 uses AWS_ENDPOINT_URL or AWS. Credentials and region come from boto3's"
        " own settings (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ...)")
    s3_addressing_style: str = Field("auto", pattern="^(auto|path|virtual)$",
                                     description="path for most S3-compatible stores")
    secret_key: str | None = Field(
        None, repr=False, min_length=16, description="signs blob download tokens; give every"
        " API process the same value. Unset: a random key kept in the data directory")
    retention_s: int = Field(DEFAULT_RETENTION_S, ge=0, description="keep finished jobs this long")
    lease_s: float = Field(30.0, gt=0, description="a claimed job is rescued this long after"
                           " its worker's last heartbeat")
    heartbeat_interval_s: float = Field(2.0, gt=0, description="how often a worker renews its"
                                        " leases and learns of cancel requests (at most a third"
                                        " of lease_s is used)")
    poll_interval_s: float = Field(1.0, gt=0, description="how often an idle worker looks for"
                                   " jobs when no wake-up arrives")
    claim_batch: int = Field(256, ge=1, le=10_000, description="most jobs claimed at once")
    flush_interval_s: float = Field(0.05, gt=0, description="how long completions, counters and"
                                    " errors wait before they are written together")
    maintenance_interval_s: float = Field(1.0, gt=0)
    retry_backoff_base_s: float = Field(1.0, ge=0)
    retry_backoff_max_s: float = Field(3600.0, ge=0)
    sqlite_synchronous: str = Field("NORMAL", pattern="^(OFF|NORMAL|FULL|EXTRA)$")
    pg_pool_max: int = Field(10, ge=1)
    # -- HTTP API ------------------------------------------------------------
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest JSON request body")
    max_upload_bytes: int = Field(1 << 30, ge=1024, description="largest upload")
    max_page_size: int = Field(1000, ge=1, le=10_000)
    rate_limit: str = Field("1200/minute", description="per API key, in the `limits` notation"
                            " (e.g. 100/second; several separated by ';')")
    rate_limit_url: str | None = Field(None, description="redis://host:port for rate limits"
                                       " shared by several API processes; memory when unset")
    key_cache_s: float = Field(5.0, ge=0, le=300, description="how long the API keeps a key"
                               " it has read in memory: a key revoked by another process"
                               " stops working within this time; 0: read it every request")
    data_dir: str = Field(".jobdock", description="where the embedded default keeps its"
                          " secret key")
