"""Request body limits of the JSON routes: size (413) and content type (415).

A body is refused before any route sees it when its `Content-Length` is over
`settings.max_body_bytes`, or, without a length (chunked), as soon as the bytes
read pass the limit; the body is read here, at most the limit, and handed on.
A body that is not JSON (`application/json` or `application/*+json`) is a 415.
Routes that stream other content, such as uploads, are left out by prefix.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobdock.api import problems

__all__ = ["BodyLimits"]

JSON_PREFIXES = ("/v1/",)
# Uploads stream files of any type, and have their own (larger) limit.
EXEMPT_PREFIXES = ("/v1/uploads",)


class BodyLimits:
    """ASGI middleware enforcing a body size limit and JSON bodies under `prefixes`."""

    def __init__(self, app: ASGIApp, max_bytes: int, prefixes: tuple[str, ...] = JSON_PREFIXES,
                 exempt: tuple[str, ...] = EXEMPT_PREFIXES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = prefixes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or not path.startswith(self.prefixes)
                or path.startswith(self.exempt)):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        declared = int(length) if length and length.isdigit() else None
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        if not declared and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if declared and not _is_json(media_type):
            await _not_json(media_type, scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if body and not _is_json(media_type):
            await _not_json(media_type, scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problems.problem(
            413, problems.title_of(413),
            f"the request body is larger than the limit of {self.max_bytes} bytes"
            " (setting max_body_bytes); send less per request", "too_large",
            headers={"Connection": "close"}, max_bytes=self.max_bytes)(scope, receive, send)


async def _not_json(media_type: str, scope: Scope, receive: Receive, send: Send) -> None:
    sent = f"got {media_type!r}" if media_type else "no Content-Type was sent"
    await problems.problem(
        415, problems.title_of(415),
        f"the body must be JSON: send it with 'Content-Type: application/json' ({sent})",
        "unsupported_media_type")(scope, receive, send)


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json"))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then whatever the client sends next
    (its disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
