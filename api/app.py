"""The HTTP API: app factory wiring the store, counters and lifecycle hooks into the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from alerts.store import AlertStore
from api.routes import alerts as alerts_routes
from api.routes import assets as assets_routes
from api.routes import health as health_routes
from api.routes import maintenance as maintenance_routes
from api.routes import metrics as metrics_routes
from telemetry.counters import Counters


def create_app(
    store: AlertStore,
    counters: Counters,
    *,
    health: Callable[[], dict[str, Any]] | None = None,
    on_startup: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
    maintenance: Callable[[], list[dict[str, Any]]] | None = None,
    relearn: Callable[[str, bool], bool] | None = None,
) -> FastAPI:
    """Build the app; the service passes hooks that start/stop its pipeline with the server.

    ``maintenance`` returns the per-asset entries of ``GET /maintenance`` (the maintenance tracker's
    snapshot); without it the endpoint answers an empty list. ``relearn(asset, maintenance)`` forgets
    an asset's baseline (and, after maintenance, its health trend and RUL history) for
    ``POST /assets/{asset}/relearn`` and returns False for an unknown asset; without it every asset
    is unknown.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        try:
            yield
        finally:
            # Stop the pipeline even if the server exits abnormally, so buffered alerts get flushed.
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(title="plantwatch", lifespan=lifespan)
    # Dependencies read these (api.deps) instead of closing over module globals.
    app.state.store = store
    app.state.counters = counters
    app.state.health = health
    app.state.maintenance = maintenance if maintenance is not None else list
    app.state.relearn = relearn if relearn is not None else _no_assets
    app.include_router(alerts_routes.router)
    app.include_router(assets_routes.router)
    app.include_router(health_routes.router)
    app.include_router(maintenance_routes.router)
    app.include_router(metrics_routes.router)
    return app


def _no_assets(asset: str, maintenance: bool) -> bool:
    return False
