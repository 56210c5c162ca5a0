"""Errors as RFC 9457 problem+json, mapped in one place.

Every jobdock exception class has one HTTP status; request validation errors
become 422 with field-level detail. Nothing else reaches the client: an
unexpected exception is a 500 whose body says nothing about the code.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import jobdock.errors as errors
from jobdock.blobs.signing import InvalidToken

log = logging.getLogger("jobdock.api")

PROBLEM = "application/problem+json"

STATUS: list[tuple[type[errors.JobdockError], int]] = [
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (InvalidToken, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.TooLarge, 413),
    (errors.InvalidParameter, 400),
    (errors.InvalidInput, 422),
    (errors.StoreUnavailable, 503),
]


def status_of(exc: errors.JobdockError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(status: int, title: str, detail: str, code: str,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"https://jobdock.dev/problems/{code}", "title": title, "status": status,
            "detail": detail, "code": code, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Content too large",
           415: "Unsupported media type", 422: "Invalid request", 429: "Too many requests",
           500: "Internal server error", 503: "Service unavailable"}


def title_of(status: int) -> str:
    return _TITLES.get(status, "Error")


async def _jobdock_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.JobdockError)
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.InvalidInput):
        extra["errors"] = exc.errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return problem(status, title_of(status), exc.message, exc.code, headers, **extra)


_PARAMETER_PLACES = ("query", "path", "header", "cookie")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 for an invalid body; 400 when only parameters (query, path, headers) are wrong,
    as for every InvalidParameter. Fields are named without their place."""
    assert isinstance(exc, RequestValidationError)
    fields = []
    in_body = False
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        if loc and loc[0] == "body":
            in_body = True
        if loc and loc[0] in ("body", *_PARAMETER_PLACES):
            loc = loc[1:]
        if e.get("type") == "json_invalid":
            loc = []  # a position in the text, not a field
        fields.append({"field": ".".join(str(p) for p in loc) or "body",
                       "message": e.get("msg", "invalid")})
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    if in_body:
        return problem(422, title_of(422), f"the request is invalid: {detail}",
                       "invalid_request", errors=fields)
    return problem(400, title_of(400), f"invalid parameter: {detail}", "invalid_parameter",
                   errors=fields)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI's answer to a body that it could not parse beyond a JSON syntax error
        # (not UTF-8, nested past the parser's recursion limit): as unreadable as a
        # syntax error, so the same 422 as `json_invalid`.
        return problem(422, title_of(422), "the request is invalid: body: not a JSON text"
                       " (UTF-8, not nested too deeply)", "invalid_request",
                       errors=[{"field": "body", "message": "not a JSON text"}])
    detail = exc.detail if isinstance(exc.detail, str) else title_of(exc.status_code)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem(exc.status_code, title_of(exc.status_code), detail, code,
                   dict(exc.headers) if exc.headers else None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return problem(500, title_of(500), "the server failed to handle this request; it has been"
                   " logged", "internal_error")


def install(api: FastAPI) -> None:
    api.add_exception_handler(errors.JobdockError, _jobdock_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected)
