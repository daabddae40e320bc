"""The app factory: one :class:`ServiceHooks` in, the routers mounted, the docs served offline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from api.auth import Access
from api.guard import RequestGuard
from api.hooks import ServiceHooks
from api.routes import alert_actions, alert_stream, alerts, assets, dashboard, health, kpis, maintenance, metrics

# One router per resource; a new resource is a module in api/routes and an entry here.
ROUTERS: tuple[APIRouter, ...] = (
    alert_stream.router,  # before alerts: /alerts/stream is not an /alerts/{id}
    alerts.router,
    alert_actions.router,
    kpis.router,
    assets.router,
    health.router,
    maintenance.router,
    metrics.router,
    dashboard.router,  # GET /: the page, outside the OpenAPI schema
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    hooks: ServiceHooks = app.state.hooks
    hooks.on_startup()
    try:
        yield
    finally:
        # Stop the pipeline even if the server exits abnormally, so buffered alerts get flushed.
        hooks.on_shutdown()


def create_app(hooks: ServiceHooks, cors_origins: Sequence[str] = ()) -> FastAPI:
    """Build the API over ``hooks``; the server's lifespan runs ``on_startup`` and ``on_shutdown``.

    ``/docs`` (Swagger UI) and ``/redoc`` load their JavaScript and CSS from this server, not from
    a CDN: plant networks are often offline. fastapi-offline ships those files as package data.

    ``cors_origins``: web pages of other origins (a dashboard on another host) whose scripts may call
    the API; none by default, so browsers keep every other page's scripts from reading it.
    """
    app = FastAPIOffline(title="plantwatch", lifespan=lifespan)
    app.state.hooks = hooks  # read by the dependencies in api.deps
    app.state.access = Access(hooks.keys)  # read by api.auth
    app.add_middleware(RequestGuard, access=app.state.access)
    if cors_origins:  # outermost: a browser's preflight carries no key, and is answered before the guard
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["X-Next-Cursor"],
        )
    for router in ROUTERS:
        app.include_router(router)
    return app
