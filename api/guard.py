"""The checks every request passes before any route sees it: body size, and who may call an open API.

* **Body size.** FastAPI reads and parses a route's whole body before its dependencies run, so a
  limit checked there comes after the memory is spent (a 200 MiB chunked POST took the service from
  62 to 651 MiB before its 422, found in review). Here a ``Content-Length`` over ``max_body`` is
  refused at once, and a body without one is read only up to ``max_body``: 413 either way, before
  authentication, and nothing beyond the limit is ever read.
* **A key, for requests with a body, while keys are required**: checked before the body is read, so
  a caller without a key never has its body parsed (its bad JSON got a 422, not a 401). The route
  still checks the scope it needs.
* **Host, while no key is required** (a loopback service, :mod:`api.auth`). A web page can make an
  operator's browser call such a service through DNS rebinding (its own name, then resolving to
  127.0.0.1): the browser then treats the API as the page's own origin, so no content-type rule
  stops it. Its requests carry the page's host name, so an open API answers only requests addressed
  to a loopback name or address. With keys required the page has no key to send, and any name the
  machine is reached by is fine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException
from fastapi.datastructures import Headers
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security.utils import get_authorization_scheme_param

from api.auth import MAX_BODY_BYTES, Access
from api.keys import KeyFileError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# The ASGI interface (what starlette.types names; spelt out here, as starlette is FastAPI's, not ours).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, access: Access, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.access = access
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self._keys_required() and not is_loopback_host(headers.get("host")):
            detail = "without API keys plantwatch answers only requests to localhost or a loopback address"
            await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS:  # no route reads the body of a GET: no limit to enforce
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._too_large(scope, receive, send)
            return
        refusal = self._unauthenticated(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    def _keys_required(self) -> bool:
        try:
            return self.access.required()
        except KeyFileError:
            return True  # fail closed: the route's key check answers 503

    def _unauthenticated(self, headers: Headers) -> JSONResponse | None:
        """The 401 (or 503) for a body-carrying request without a valid key, while keys are required:
        answered before the body is read or parsed (a keyless caller's bad JSON got a 422, not a 401).
        Which scope the route needs, the route still checks."""
        scheme, token = get_authorization_scheme_param(headers.get("authorization"))  # as HTTPBearer reads it
        bearer = scheme.lower() == "bearer" and token
        credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if bearer else None
        try:
            self.access.key_for(credentials, "read")
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return None

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body over {self.max_body} bytes"
        await JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body read already, then the client's later messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def is_loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback (``localhost``, ``127.0.0.1:8080``, ``[::1]``).
    No header at all (HTTP/1.0) passes: browsers always send one."""
    if host is None:
        return True
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.rsplit(":", 1)[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
