"""Dependencies shared by the routers: each reads one hook of the app's :class:`ServiceHooks`.

Async because they do no I/O: FastAPI runs a sync dependency in its thread pool, and each such hop
cost an alert poll CPU the ingest pipeline shares (about 0.1 ms of 1.6 ms, ``bench/polling_cost.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from alerts.store import AlertStore
from api.hooks import (
    AssetList,
    Feedback,
    HealthReport,
    MaintenanceSnapshot,
    Readings,
    Relearn,
    Resolve,
    Scores,
    ServiceHooks,
)
from telemetry.counters import Counters


async def get_hooks(request: Request) -> ServiceHooks:
    hooks: ServiceHooks = request.app.state.hooks  # put there by api.app.create_app
    return hooks


HooksDep = Annotated[ServiceHooks, Depends(get_hooks)]


async def get_store(hooks: HooksDep) -> AlertStore:
    return hooks.store


async def get_counters(hooks: HooksDep) -> Counters:
    return hooks.counters


async def get_health(hooks: HooksDep) -> HealthReport | None:
    return hooks.health


async def get_maintenance(hooks: HooksDep) -> MaintenanceSnapshot:
    return hooks.maintenance


async def get_assets(hooks: HooksDep) -> AssetList:
    return hooks.assets


async def get_relearn(hooks: HooksDep) -> Relearn:
    return hooks.relearn


async def get_feedback(hooks: HooksDep) -> Feedback:
    return hooks.feedback


async def get_resolve(hooks: HooksDep) -> Resolve:
    return hooks.resolve


async def get_scores(hooks: HooksDep) -> Scores:
    return hooks.scores


async def get_readings(hooks: HooksDep) -> Readings:
    return hooks.readings


StoreDep = Annotated[AlertStore, Depends(get_store)]
CountersDep = Annotated[Counters, Depends(get_counters)]
HealthDep = Annotated[HealthReport | None, Depends(get_health)]
MaintenanceDep = Annotated[MaintenanceSnapshot, Depends(get_maintenance)]
RelearnDep = Annotated[Relearn, Depends(get_relearn)]
AssetsDep = Annotated[AssetList, Depends(get_assets)]
FeedbackDep = Annotated[Feedback, Depends(get_feedback)]
ResolveDep = Annotated[Resolve, Depends(get_resolve)]
ScoresDep = Annotated[Scores, Depends(get_scores)]
ReadingsDep = Annotated[Readings, Depends(get_readings)]
