"""List parameters of the native API: job filters, page sizes and signed page tokens.

Every problem with a query parameter is an `InvalidParameter` (HTTP 400) that
names the parameter and says what would be accepted.

Page tokens are the engine's keyset tokens (the last id seen and a hash of the
query) with an HMAC of the server's secret appended, so a token that was altered
or made up is refused before it reaches the store, and one made for another
query (other filters, another tenant) is refused by the engine.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jobdock.errors as errors
from jobdock.engine import MAX_PAGE_SIZE
from jobdock.ids import is_id
from jobdock.model import JobQuery, JobStatus

__all__ = ["LIST_PARAMETERS", "PageTokens", "bad_parameter", "job_query", "page_size_of"]

DEFAULT_PAGE_SIZE = 100
_TOKEN_CONTEXT = b"jobdock page token v1\n"
_MAX_TOKEN = 2048
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_INTEGER = re.compile(r"^-?\d{1,18}$")
_STAT = re.compile(r"^stats\.([A-Za-z0-9_]+)_(gte|lte)$")
_LABEL = re.compile(r"^label\.([A-Za-z0-9_.:/-]{1,128})$")
_STATUSES = ", ".join(s.value for s in JobStatus)
_TIME = {"type": "string", "format": "date-time"}


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    schema: dict[str, Any]
    description: str


# The fixed list parameters, as documented in the OpenAPI description; `label.<name>`
# and `stats.<name>_gte/_lte` come in addition, any number of them.
LIST_PARAMETERS = [
    Parameter("kind", {"type": "string"}, "jobs of this kind"),
    Parameter("kind_in", {"type": "string"}, "jobs of any of these kinds, comma-separated"),
    Parameter("status", {"type": "string", "enum": [s.value for s in JobStatus]},
              "jobs in this status"),
    Parameter("status_in", {"type": "string"}, f"comma-separated statuses ({_STATUSES})"),
    Parameter("parent_id", {"type": "string", "pattern": "^[0-9a-f]{24}$"},
              "children of this job"),
    Parameter("app_id", {"type": "string"}, "jobs submitted with keys of this app"),
    Parameter("created_at_gte", _TIME, "created at or after (RFC 3339)"),
    Parameter("created_at_lte", _TIME, "created at or before (RFC 3339)"),
    Parameter("finished_at_gte", _TIME, "finished at or after (RFC 3339)"),
    Parameter("finished_at_lte", _TIME, "finished at or before (RFC 3339)"),
    Parameter("page_size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                            "default": DEFAULT_PAGE_SIZE}, "jobs per page"),
    Parameter("page_token", {"type": "string"},
              "the `next_page_token` of the previous page, with the same filters"),
]
_KNOWN = {p.name for p in LIST_PARAMETERS}
_LISTS = {"kind_in": "kind", "status_in": "status"}


def bad_parameter(name: str, message: str) -> errors.InvalidParameter:
    return errors.InvalidParameter(f"query parameter {name!r}: {message}",
                                   [{"field": name, "message": message}])


def job_query(tenant_id: str, items: Iterable[tuple[str, str]], max_page_size: int,
              allowed: Iterable[str] | None = None) -> tuple[JobQuery, str | None]:
    """The query and page token that list parameters ask for.

    `allowed` restricts the fixed parameters a route accepts (all by default);
    label and stats filters are always accepted."""
    names = _KNOWN if allowed is None else set(allowed)
    values: dict[str, str] = {}
    query = JobQuery(tenant_id=tenant_id, page_size=DEFAULT_PAGE_SIZE)
    for name, value in items:
        if name in values:
            raise bad_parameter(name, "given more than once; list several values"
                                " comma-separated in a *_in parameter")
        if "\x00" in value:
            raise bad_parameter(name, "must not contain NUL characters")
        if label := _LABEL.match(name):
            query.labels[label.group(1)] = value
            values[name] = value
            continue
        if stat := _STAT.match(name):
            bound = _integer(name, value)
            target = query.stats_gte if stat.group(2) == "gte" else query.stats_lte
            target[stat.group(1)] = bound
            values[name] = value
            continue
        if name not in names:
            raise _unknown(name, names)
        values[name] = value
    for single, multiple in (("kind", "kind_in"), ("status", "status_in")):
        if single in values and multiple in values:
            raise bad_parameter(multiple, f"give {single} or {multiple}, not both")
    if "kind" in values:
        query.kinds = [_nonempty("kind", values["kind"])]
    if "kind_in" in values:
        query.kinds = _split("kind_in", values["kind_in"])
    if "status" in values:
        query.statuses = [_status("status", values["status"])]
    if "status_in" in values:
        query.statuses = [_status("status_in", s) for s in _split("status_in",
                                                                   values["status_in"])]
    if "parent_id" in values:
        if not is_id(values["parent_id"]):
            raise bad_parameter("parent_id", "not a job id (24 lowercase hex characters)")
        query.parent_id = values["parent_id"]
    if "app_id" in values:
        query.app_id = _nonempty("app_id", values["app_id"])
    query.created_at_gte = _time(values, "created_at_gte")
    query.created_at_lte = _time(values, "created_at_lte")
    query.finished_at_gte = _time(values, "finished_at_gte")
    query.finished_at_lte = _time(values, "finished_at_lte")
    query.page_size = page_size_of(values.get("page_size"), max_page_size)
    token = values.get("page_token") or None
    return query, token


def page_size_of(value: str | None, max_page_size: int) -> int:
    if value is None:
        return min(DEFAULT_PAGE_SIZE, max_page_size)
    size = _integer("page_size", value)
    top = min(max_page_size, MAX_PAGE_SIZE)
    if not 1 <= size <= top:
        raise bad_parameter("page_size", f"must be between 1 and {top}")
    return size


class PageTokens:
    """Signs the engine's page tokens with the server's secret, and checks them."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(_TOKEN_CONTEXT + secret).digest()

    def sign(self, token: str | None) -> str | None:
        if token is None:
            return None
        return f"{token}.{self._mac(token)}"

    def open(self, signed: str | None) -> str | None:
        """The engine token inside `signed`; InvalidParameter when it was not made here."""
        if not signed:
            return None
        token, _, mac = signed.rpartition(".")
        if (not token or len(signed) > _MAX_TOKEN
                or not hmac.compare_digest(mac.encode(), self._mac(token).encode())):
            raise bad_parameter("page_token", "not a token this server issued: pass the"
                                " next_page_token of the previous page unchanged")
        return token

    def _mac(self, token: str) -> str:
        digest = hmac.new(self._key, token.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _unknown(name: str, known: Iterable[str]) -> errors.InvalidParameter:
    choices = sorted(known)
    close = difflib.get_close_matches(name, [*choices, "label.<name>", "stats.<name>_gte",
                                             "stats.<name>_lte"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return bad_parameter(name, f"unknown parameter{hint} Known: {', '.join(choices)},"
                         " label.<name>, stats.<name>_gte, stats.<name>_lte")


def _nonempty(name: str, value: str) -> str:
    if not value.strip():
        raise bad_parameter(name, "must not be empty")
    return value.strip()


def _split(name: str, value: str) -> list[str]:
    parts = [p.strip() for p in value.split(",")]
    if not all(parts):
        raise bad_parameter(name, "a comma-separated list without empty items")
    return parts


def _status(name: str, value: str) -> JobStatus:
    try:
        return JobStatus(value.strip())
    except ValueError:
        raise bad_parameter(name, f"unknown status {value!r}; one of {_STATUSES}") from None


def _integer(name: str, value: str) -> int:
    if not _INTEGER.match(value.strip()):
        raise bad_parameter(name, f"{value!r} is not an integer")
    return int(value)


def _time(values: dict[str, str], name: str) -> datetime | None:
    value = values.get(name)
    if value is None:
        return None
    text = value.strip()
    # An unencoded '+' of an offset arrives as a space: take it back.
    if re.search(r" \d{2}:\d{2}$", text):
        text = text[:-6] + "+" + text[-5:]
    if not _RFC3339.match(text):
        raise bad_parameter(name, f"{value!r} is not an RFC 3339 time with an offset,"
                            " e.g. 2026-01-02T03:04:05Z")
    try:
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_parameter(name, f"{value!r} is not a valid time") from None
