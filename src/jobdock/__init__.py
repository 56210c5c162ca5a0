"""jobdock: durable asynchronous jobs that people can watch."""

from jobdock.app import App
from jobdock.config import Settings
from jobdock.engine import KindSpec, SubmitRequest
from jobdock.errors import (
    AlreadyExists,
    Conflict,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    JobCanceled,
    JobdockError,
    JobNotFound,
    NotFound,
    StoreError,
    StoreUnavailable,
    TenantNotFound,
    UnknownKind,
)
from jobdock.model import Job, JobErrorRecord, JobStatus, Page, Tenant
from jobdock.worker import JobContext, Worker

__all__ = [
    "AlreadyExists",
    "App",
    "Conflict",
    "IdempotencyConflict",
    "IllegalTransition",
    "InvalidInput",
    "Job",
    "JobCanceled",
    "JobContext",
    "JobErrorRecord",
    "JobNotFound",
    "JobStatus",
    "JobdockError",
    "KindSpec",
    "NotFound",
    "Page",
    "Settings",
    "StoreError",
    "StoreUnavailable",
    "SubmitRequest",
    "Tenant",
    "TenantNotFound",
    "UnknownKind",
    "Worker",
]
