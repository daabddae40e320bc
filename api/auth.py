"""Who may call the API, and the request checks every state-changing call passes.

Keys (:mod:`api.keys`) are required once the key file holds an active key, and from then on for the
life of the service: revoking every key, or deleting the file, locks the API rather than opening it.
Without any key the API answers everyone, which ``plantwatch run`` allows only on a loopback address.

``GET /healthz`` stays open (Docker's healthcheck and load balancers call it without a key), but
without a read key it says only its status. Everything else needs a key of the route's scope.

State-changing requests must carry ``Content-Type: application/json``. A web page in an operator's
browser can send a cross-site POST without asking the server first only with a form or plain-text
body (a "simple" request); a JSON content type makes the browser ask (CORS preflight), which this
API never grants. So no page can relearn a baseline through a browser that reaches the port.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.keys import ApiKey, KeyFile, KeyFileError
from api.schemas import ProblemOut
from ingest.formats.base import name_problem

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # the largest request body any route takes is a few hundred bytes

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `plantwatch keys create NAME --scope read|operate|admin`.",
)


class Access:
    """Whether keys are required now, and the key file that says which keys there are.

    Decided first when the app is made, at start-up: a key file that holds a key then, or cannot be
    read, requires keys from the first request on (deciding at the first request let a file emptied
    in between open the API, found in review)."""

    def __init__(self, keys: KeyFile | None) -> None:
        self.keys = keys
        self._required = False
        try:
            self.required()
        except KeyFileError:
            self._required = True  # fail closed: each request then answers 503 until it is readable

    def required(self) -> bool:
        """True once the key file has held an active key (raises KeyFileError when it cannot be read)."""
        if not self._required and self.keys is not None and self.keys.active():
            self._required = True
        return self._required

    def key_for(self, credentials: HTTPAuthorizationCredentials | None, scope: str) -> ApiKey | None:
        """The caller's key when keys are required (HTTPException 401 / 403 / 503 when it does not do);
        None when they are not."""
        try:
            if not self.required():
                return None
            if self.keys is None:  # required() is only ever True with a key file
                raise KeyFileError("no API key file")
            key = self.keys.authenticate(credentials.credentials) if credentials is not None else None
        except KeyFileError as exc:
            log.error("%s: every request needing a key is refused until it is readable", exc)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the API key file cannot be read") from None
        if credentials is None:
            raise _unauthorized("an API key is needed: send the header 'Authorization: Bearer <token>'")
        if key is None:
            raise _unauthorized("unknown or revoked API key")
        if not key.allows(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"the key {key.name!r} has scope {key.scope}; this needs {scope}"
            )
        return key


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def get_access(request: Request) -> Access:
    access: Access = request.app.state.access  # put there by api.app.create_app
    return access


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
AccessDep = Annotated[Access, Depends(get_access)]


def _require(scope: str) -> Callable[[Access, HTTPAuthorizationCredentials | None], Awaitable[ApiKey | None]]:
    """A dependency that lets through callers with a key of ``scope`` (or anyone, without keys)."""

    async def check(access: AccessDep, credentials: Credentials) -> ApiKey | None:
        # Async (no thread-pool hop): a stat of the key file, and its read when it changed, are quick.
        return access.key_for(credentials, scope)

    check.__name__ = f"require_{scope}"
    return check


async def may_read(access: AccessDep, credentials: Credentials) -> bool:
    """Whether the caller may read (for /healthz, which answers everyone but says more to readers)."""
    try:
        access.key_for(credentials, "read")
    except HTTPException:
        return False
    return True


async def json_request(request: Request) -> None:
    """415 unless the request says its body is JSON (see the module docstring: no cross-site POST)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send 'Content-Type: application/json' (with an empty body where the call takes none)",
        )


async def asset_name(asset: str) -> str:
    """422 for an asset name MQTT would refuse (empty, over 128 characters, control characters)."""
    problem = name_problem(asset)
    if problem is not None:
        raise HTTPException(422, f"asset name {problem}")
    return asset


# What the routes that need a key, and those that change state, may answer besides their own (OpenAPI).
KEY_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ProblemOut, "description": "a parameter or body the route cannot take"},
    401: {"description": "no API key, or an unknown or revoked one (once the service has keys)"},
    403: {"description": "the API key's scope is too low for this call"},
    503: {"description": "the API key file cannot be read"},
}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = KEY_RESPONSES | {
    400: {"description": "a body that is not UTF-8 text"},
    413: {"description": f"request body over {MAX_BODY_BYTES} bytes"},
    415: {"description": "no 'Content-Type: application/json' (no cross-site simple request changes state)"},
}

READ = Depends(_require("read"))
OPERATE = Depends(_require("operate"))
ADMIN = Depends(_require("admin"))
MayRead = Annotated[bool, Depends(may_read)]
JSON_REQUEST = Depends(json_request)
