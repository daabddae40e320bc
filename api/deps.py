"""Dependencies shared by the routers; the app factory puts the objects on `app.state`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from alerts.store import AlertStore
from telemetry.counters import Counters

HealthCheck = Callable[[], dict[str, Any]]
MaintenanceSnapshot = Callable[[], list[dict[str, Any]]]
Relearn = Callable[[str, bool], bool]  # (asset, maintenance done) -> False when the service has no such asset


def get_store(request: Request) -> AlertStore:
    store: AlertStore = request.app.state.store
    return store


def get_counters(request: Request) -> Counters:
    counters: Counters = request.app.state.counters
    return counters


def get_health(request: Request) -> HealthCheck | None:
    health: HealthCheck | None = request.app.state.health
    return health


def get_maintenance(request: Request) -> MaintenanceSnapshot:
    maintenance: MaintenanceSnapshot = request.app.state.maintenance
    return maintenance


def get_relearn(request: Request) -> Relearn:
    relearn: Relearn = request.app.state.relearn
    return relearn


StoreDep = Annotated[AlertStore, Depends(get_store)]
CountersDep = Annotated[Counters, Depends(get_counters)]
HealthDep = Annotated[HealthCheck | None, Depends(get_health)]
MaintenanceDep = Annotated[MaintenanceSnapshot, Depends(get_maintenance)]
RelearnDep = Annotated[Relearn, Depends(get_relearn)]
