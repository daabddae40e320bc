"""GET /: the built-in dashboard, and GET /dashboard/{file}: its script and style sheet.

Three files of package data (``api/dashboard/``) served by the app itself: no build step to run it,
nothing loaded from a CDN (plant networks are often offline). They hold no data, so they need no
key; the page asks the API for everything with the key the user enters (see dashboard.js).

The Content-Security-Policy lets the page run only its own script, talk only to this server, and be
framed by no other page (no clickjacking of its Acknowledge buttons).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Response

router = APIRouter(include_in_schema=False)

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_FILES = {name: (resources.files("api") / "dashboard" / name).read_bytes() for name in _TYPES}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # an upgraded service serves its new page at once
}


def _serve(name: str) -> Response:
    return Response(_FILES[name], media_type=_TYPES[name], headers=_HEADERS)


@router.get("/")
def dashboard() -> Response:
    return _serve("index.html")


@router.get("/dashboard/{name}")
def dashboard_file(name: str) -> Response:
    if name not in _FILES or name == "index.html":
        raise HTTPException(status_code=404, detail=f"no dashboard file {name!r}")
    return _serve(name)
