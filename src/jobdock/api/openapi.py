"""The OpenAPI document as the API behaves, for every router.

FastAPI's generated document is completed in three ways:
- error answers are `application/problem+json` bodies of the `Problem` schema;
  FastAPI's default 422 `HTTPValidationError` is never sent, so it is replaced
  (and by a 400 on routes without a body: bad parameters are 400s here);
- routes that take an API key say so (`security`), with their 401 and 403, and
  429 under /v1 where rate limits apply;
- routes that declare `security: []` (probes, signed downloads) are left alone.
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
          "403": "the key lacks the scope this route needs"}
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
    validation = responses.pop("422", None)
    if validation is not None:
        if "requestBody" in operation:
            responses["422"] = {"description": validation.get("description", "invalid body")}
        else:
            responses.setdefault("400", {"description": "a parameter is invalid"})
    if keyed and "security" not in operation:
        operation["security"] = [{"apiKey": []}]
        for status, description in _KEYED.items():
            responses.setdefault(status, {"description": description})
        if path.startswith("/v1/"):
            responses.setdefault("429", {"description": "over the key's rate limit; see"
                                         " Retry-After"})
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
