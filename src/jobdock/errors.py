"""Exceptions raised by jobdock.

    JobdockError
    ├── Unauthenticated             (HTTP 401: no key, or one that is unknown, expired, revoked)
    ├── Forbidden                   (HTTP 403: the key lacks the scope)
    ├── NotFound                    (HTTP 404)
    │   ├── JobNotFound
    │   ├── TenantNotFound
    │   ├── UnknownKind
    │   └── WebhookNotFound
    ├── InvalidInput                (HTTP 422: the caller must change the request)
    │   ├── InvalidParameter        (HTTP 400: a query parameter, filter or page token)
    │   └── TooLarge                (HTTP 413: a body or file over its size limit)
    ├── Conflict                    (HTTP 409)
    │   ├── IllegalTransition
    │   ├── IdempotencyConflict
    │   └── AlreadyExists
    ├── JobCanceled                 (raised inside a job function to stop it)
    └── StoreError                  (driver errors, translated at the store boundary)
        └── StoreUnavailable        (the database cannot be reached; retry later)

Store implementations translate driver exceptions into StoreError subclasses so
that nothing above the store knows sqlite3 or psycopg.
"""

from __future__ import annotations

from typing import Any


class JobdockError(Exception):
    """Root of every jobdock exception."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthenticated(JobdockError):
    code = "unauthenticated"


class Forbidden(JobdockError):
    code = "forbidden"


class NotFound(JobdockError):
    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found", job_id=job_id)


class TenantNotFound(NotFound):
    code = "tenant_not_found"

    def __init__(self, tenant: str) -> None:
        super().__init__(
            f"tenant {tenant!r} does not exist; create it first (jobdock tenants create)",
            tenant=tenant,
        )


class UnknownKind(NotFound):
    code = "unknown_kind"

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(
            f"unknown job kind {kind!r}; registered kinds: {', '.join(sorted(known)) or 'none'}",
            kind=kind,
            known=sorted(known),
        )


class WebhookNotFound(NotFound):
    code = "webhook_not_found"

    def __init__(self, webhook_id: str) -> None:
        super().__init__(f"webhook {webhook_id!r} not found", webhook_id=webhook_id)


class InvalidInput(JobdockError):
    """The request cannot be carried out as given; `errors` lists field problems."""

    code = "invalid_input"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class InvalidParameter(InvalidInput):
    """A query parameter (a filter, a page size, a page token) that cannot be used as given.

    The HTTP layer answers 400 for these and 422 for an invalid request body."""

    code = "invalid_parameter"


class TooLarge(InvalidInput):
    """A request body or uploaded file larger than its configured limit."""

    code = "too_large"

    def __init__(self, message: str, max_bytes: int) -> None:
        super().__init__(message)
        self.details["max_bytes"] = max_bytes
        self.max_bytes = max_bytes


class Conflict(JobdockError):
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        super().__init__(
            f"job {job_id!r} is {current}; it cannot become {wanted}",
            job_id=job_id,
            current=current,
            wanted=wanted,
        )


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"

    def __init__(self, key: str, job_id: str, differing: str = "input") -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for job {job_id!r} with another"
            f" {differing}; use a new key for a different job",
            idempotency_key=key,
            job_id=job_id,
        )


class AlreadyExists(Conflict):
    code = "already_exists"


class JobCanceled(JobdockError):
    """Raised by `JobContext.raise_if_cancelled()`; the worker records the job as canceled."""

    code = "canceled"

    def __init__(self, message: str = "job was canceled") -> None:
        super().__init__(message)


class StoreError(JobdockError):
    code = "store_error"


class StoreUnavailable(StoreError):
    code = "store_unavailable"
