"""The OpenAPI document as the API behaves, for every router.

FastAPI's generated document is completed in three ways:
- error answers are `application/problem+json` bodies of the `Problem` schema;
  FastAPI's default 422 `HTTPValidationError` is never sent, so it is replaced;
- the problems that follow from a route's shape are declared here, once for
  all routes: 400 where it has parameters (bad parameters are 400s here), 404
  where its path names something, 422 where it takes a JSON body (and 413 and
  415 under /v1, where body limits apply); a route declares the others it can
  answer (409, ...) itself;
- routes that take an API key say so (`security`), with their 401, 403 and 503
  (the key is looked up in the database), and 429 under /v1 where rate limits
  apply; routes that declare `security: []` (probes, signed downloads) are not
  keyed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from jobdock.api.deps import get_principal
from jobdock.api.schemas import Problem

__all__ = ["install"]

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_KEYED = {"401": "no valid API key (`Authorization: Bearer <key>`)",
          "403": "the key lacks the scope this route needs",
          "503": "the database cannot be reached; try again after `Retry-After`"}
_PARAMETERS = {"400": "a parameter is invalid (named in `errors`)"}
_PATH = {"404": "not found (what the caller may not see answers the same)"}
_JSON_BODY = {"422": "the body is invalid (fields named in `errors`)"}
_BODY_LIMITS = {"413": "the body is over the size limit",  # api/limits.py, under /v1
                "415": "the body is not JSON (`Content-Type: application/json`)"}
_UNUSED = ("HTTPValidationError", "ValidationError")


def install(api: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = document(api)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def document(api: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=api.title, version=api.version, description=api.description,
                      routes=api.routes, openapi_version=api.openapi_version)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    components["securitySchemes"] = {"apiKey": {
        "type": "http", "scheme": "bearer", "description": "an API key: `jdk_...`"}}
    keyed = {(path, method.lower()) for path, methods, dependant in _routes(api)
             if _needs_key(dependant) for method in methods}
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            _complete(path, operation, (path, method) in keyed)
    for name in _UNUSED:  # in this order: the first refers to the second
        if f"#/components/schemas/{name}" not in json.dumps(doc):
            schemas.pop(name, None)
    return doc


def _routes(api: FastAPI) -> Iterator[tuple[str, set[str], Dependant]]:
    """(path, methods, dependant) of every API route, those of included routers too."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:  # FastAPI before included routers were kept as such
        for route in api.routes:
            if isinstance(route, APIRoute):
                yield route.path_format, route.methods or set(), route.dependant
        return
    for context in contexts(api.routes):
        original = context.original_route
        if isinstance(original, APIRoute):
            yield context.path_format, context.methods or set(), original.dependant


def _complete(path: str, operation: dict[str, Any], keyed: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "HTTPValidationError" in json.dumps(responses.get("422", {})):
        del responses["422"]  # FastAPI's HTTPValidationError, never sent
    problems: dict[str, str] = {}
    if operation.get("parameters"):
        problems.update(_PARAMETERS)
    if "{" in path:
        problems.update(_PATH)
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        problems.update(_JSON_BODY)
        if path.startswith("/v1/"):
            problems.update(_BODY_LIMITS)
    if keyed and "security" not in operation:
        operation["security"] = [{"apiKey": []}]
        problems.update(_KEYED)
        if path.startswith("/v1/"):
            problems["429"] = "over the key's rate limit; see Retry-After"
    for status, description in problems.items():
        responses.setdefault(status, {"description": description})
    for status, response in responses.items():
        if status[0] in "45":
            response["content"] = dict(_PROBLEM)


def _needs_key(dependant: Dependant) -> bool:
    """True when the route depends on the caller's API key (directly or via a scope)."""
    for sub in dependant.dependencies:
        name = getattr(sub.call, "__name__", "")
        if sub.call is get_principal or name.startswith("require_") or _needs_key(sub):
            return True
    return False
