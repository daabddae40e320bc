"""What the API needs from the service that runs it, handed to ``create_app`` as one object.

The live service (``plantwatch.service.wiring``) fills every hook from its pipeline; tests build
their own with only the hooks they exercise. A new capability of the API is a new field here, a
getter in :mod:`api.deps`, and the router that uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alerts.model import Alert
from alerts.store import AlertStore
from api.keys import KeyFile
from telemetry.counters import Counters

# Extra /healthz fields; a "status" other than "ok" makes it answer 503.
HealthReport = Callable[[], dict[str, Any]]
# The per-asset entries of GET /maintenance (the maintenance tracker's snapshot).
MaintenanceSnapshot = Callable[[], list[dict[str, Any]]]
# The assets seen since the start, as api.schemas.AssetOut takes them (GET /assets): every one with
# None, else the one of that name (none when unknown): one asset's view costs one asset's work.
AssetList = Callable[[str | None], list[dict[str, Any]]]
# (asset, maintenance done) -> False when the service knows no such asset.
Relearn = Callable[[str, bool], bool]
# (asset, since ns or None, limit) -> the asset's recent scored rows ({ts_ns, score, probability,
# anomaly}, oldest first), or None when the service knows no such asset.
Scores = Callable[[str, int | None, int], list[dict[str, Any]] | None]
# (asset, since ns or None, limit) -> the asset's recent aligned rows ({sensors, ts_ns, values}), or
# None when the service knows no such asset.
Readings = Callable[[str, int | None, int], dict[str, Any] | None]
Hook = Callable[[], None]
# An operator resolved an open alert: the service stops tracking it and stores it resolved; the
# resolved alert, or None when the service tracks no open alert of that id.
Resolve = Callable[[int], Alert | None]
# (asset, verdict "false_alarm" | "true_fault", start ns, end ns) -> alert rows learned or dropped;
# None when the service knows no such asset; raises ValueError when the asset cannot take it (no
# baseline) and TimeoutError when the detector did not answer in time.
Feedback = Callable[[str, str, int, int], int | None]


def no_maintenance() -> list[dict[str, Any]]:
    return []


def no_assets(asset: str, maintenance: bool) -> bool:
    return False


def no_asset_list(only: str | None) -> list[dict[str, Any]]:
    return []


def no_feedback(asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
    return None


def no_resolve(alert_id: int) -> Alert | None:
    return None


def no_scores(asset: str, since_ns: int | None, limit: int) -> list[dict[str, Any]] | None:
    return None


def no_readings(asset: str, since_ns: int | None, limit: int) -> dict[str, Any] | None:
    return None


def nothing() -> None:
    return None


@dataclass(frozen=True)
class ServiceHooks:
    """The alert store and counters, plus the service's callbacks; the defaults serve an idle service.

    ``on_startup`` and ``on_shutdown`` run with the server's lifespan: the service starts its
    pipeline in the first and stops it, flushing alerts and saving models, in the second.
    """

    store: AlertStore
    counters: Counters
    health: HealthReport | None = None  # None: /healthz reports liveness only
    maintenance: MaintenanceSnapshot = no_maintenance
    assets: AssetList = no_asset_list
    relearn: Relearn = no_assets
    feedback: Feedback = no_feedback
    resolve: Resolve = no_resolve
    scores: Scores = no_scores
    readings: Readings = no_readings
    keys: KeyFile | None = None  # None: the API answers everyone (see api.auth)
    on_startup: Hook = nothing
    on_shutdown: Hook = nothing
