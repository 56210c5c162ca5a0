"""Settings, read from JOBDOCK_* environment variables (and overridable in code).

The environment is read here rather than through pydantic-settings, which cost
every worker process about 14 MB of memory and 0.1 s of start-up for a few
plain values; and Settings is a plain dataclass rather than a pydantic model,
whose build (with pydantic's import and its plugin lookup) cost a process about
60 ms of CPU and 13 MB, when no job kind of a worker's app may need pydantic. As there: names
are case-insensitive (`JOBDOCK_LEASE_S`), values are converted to their fields'
types and checked against their limits (a ValueError names the setting), values
given in code win, and unknown names are ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any

DEFAULT_RETENTION_S = 7 * 24 * 3600
ENV_PREFIX = "JOBDOCK_"


def setting(default: Any, description: str = "", *, secret: bool = False,
            **limits: Any) -> Any:
    """A setting's default, description and limits: ge, gt, le, pattern, min_length."""
    return field(default=default, repr=not secret,
                 metadata={"description": description, **limits})


@dataclass(init=False)
class Settings:
    database_url: str = setting(
        "sqlite:///.jobdock/jobdock.db",
        "sqlite:///path/to/file.db or postgresql://user@host:port/db")
    blob_url: str = setting("file://.jobdock/blobs", "file://dir or s3://bucket/prefix")
    s3_endpoint_url: str | None = setting(
        None, "S3 endpoint for MinIO, moto and other S3-compatible stores; when"
        " unset, boto3 uses AWS_ENDPOINT_URL or AWS. Credentials and region come from boto3's"
        " own settings (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ...)")
    s3_addressing_style: str = setting("auto", "path for most S3-compatible stores",
                                       pattern="^(auto|path|virtual)$")
    secret_key: str | None = setting(
        None, "signs blob download tokens; give every API process the same value. Unset: a"
        " random key kept in the data directory", secret=True, min_length=16)
    retention_s: int = setting(DEFAULT_RETENTION_S, "keep finished jobs this long", ge=0)
    lease_s: float = setting(30.0, "a claimed job is rescued this long after its worker's"
                             " last heartbeat", gt=0)
    heartbeat_interval_s: float = setting(2.0, "how often a worker renews its leases and"
                                          " learns of cancel requests (at most a third of"
                                          " lease_s is used)", gt=0)
    poll_interval_s: float = setting(1.0, "how often an idle worker looks for jobs when no"
                                     " wake-up arrives", gt=0)
    claim_batch: int = setting(256, "most jobs claimed at once", ge=1, le=10_000)
    flush_interval_s: float = setting(0.05, "how long completions, counters and errors wait"
                                      " before they are written together", gt=0)
    maintenance_interval_s: float = setting(1.0, gt=0)
    retry_backoff_base_s: float = setting(1.0, ge=0)
    retry_backoff_max_s: float = setting(3600.0, ge=0)
    sqlite_synchronous: str = setting("NORMAL", pattern="^(OFF|NORMAL|FULL|EXTRA)$")
    pg_pool_max: int = setting(10, ge=1)
    # -- HTTP API ------------------------------------------------------------
    max_body_bytes: int = setting(1 << 20, "largest JSON request body", ge=1024)
    max_upload_bytes: int = setting(1 << 30, "largest upload", ge=1024)
    max_page_size: int = setting(1000, ge=1, le=10_000)
    rate_limit: str = setting("1200/minute", "per API key, in the `limits` notation"
                              " (e.g. 100/second; several separated by ';')")
    rate_limit_url: str | None = setting(None, "redis://host:port for rate limits shared by"
                                         " several API processes; memory when unset")
    key_cache_s: float = setting(5.0, "how long the API keeps a key it has read in memory: a"
                                 " key revoked by another process stops working within this"
                                 " time; 0: read it every request", ge=0, le=300)
    data_dir: str = setting(".jobdock", "where the embedded default keeps its secret key")

    def __init__(self, **given: Any) -> None:
        """Values given here, else JOBDOCK_<NAME> variables, else the defaults."""
        found = _environment()
        for f in fields(self):
            if f.name in given:
                value, source = given[f.name], ""
            elif f.name in found:
                value, source = found[f.name], f" (from {ENV_PREFIX}{f.name.upper()})"
            else:
                value, source = f.default, ""
            setattr(self, f.name, _checked(f, value, source))

    def model_copy(self, update: dict[str, Any] | None = None) -> Settings:
        """A copy with `update`'s values, checked (named after pydantic's, as before)."""
        # replace() builds through __init__: given values win, each value checked once.
        return replace(self, **(update or {}))

    def model_dump(self) -> dict[str, Any]:
        """Every setting by name (named after pydantic's, as before)."""
        return asdict(self)


def _environment() -> dict[str, str]:
    """JOBDOCK_<FIELD> variables by field name, whatever their case."""
    names = {f.name for f in fields(Settings)}
    found = {}
    for name, value in os.environ.items():
        key = name[len(ENV_PREFIX):].lower()
        if name[:len(ENV_PREFIX)].upper() == ENV_PREFIX and key in names:
            found[key] = value
    return found


def _checked(setting: Field[Any], value: Any, source: str) -> Any:
    """`value` as the setting's type, within its limits; a ValueError naming it otherwise."""
    try:
        converted = _CONVERT[str(setting.type)](value)
        _within(converted, setting.metadata)
    except (TypeError, ValueError) as exc:
        shown = f"; got {value!r}" if setting.repr else ""  # never a secret's value
        raise ValueError(f"setting {setting.name}{source}: {exc}{shown}") from None
    return converted


def _within(value: Any, limits: Mapping[str, Any]) -> None:
    if value is None:
        return
    if "ge" in limits and not value >= limits["ge"]:
        raise ValueError(f"must be at least {limits['ge']}")
    if "gt" in limits and not value > limits["gt"]:
        raise ValueError(f"must be greater than {limits['gt']}")
    if "le" in limits and not value <= limits["le"]:
        raise ValueError(f"must be at most {limits['le']}")
    if "pattern" in limits and not re.search(limits["pattern"], value):
        raise ValueError(f"must match {limits['pattern']}")
    if "min_length" in limits and len(value) < limits["min_length"]:
        raise ValueError(f"must be at least {limits['min_length']} characters long")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def _float(value: Any) -> float:
    if isinstance(value, str):
        return float(value.strip())
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError("expected a number")
    return float(value)


# By the annotation's text (dataclasses keep it as written).
_CONVERT = {
    "str": _str,
    "str | None": lambda value: None if value is None else _str(value),
    "int": _int,
    "float": _float,
}
