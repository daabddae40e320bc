"""The HTTP API against its own OpenAPI document: schemathesis generates requests from the schema the app
serves, sends them to the app in-process (ASGI, no network), and checks every answer: no server error
(5xx), a documented status code, a documented content type, and a body that matches the schema
documented for that status.

One test per operation and kind of case: ``positive`` (parameters and bodies as the schema describes
them) and ``negative`` (ones that break it, which must get a documented 4xx). The app has an admin key,
so every route is reachable, a SQLite store with three alerts (SQLite only: the other API tests cover
both engines, and both would double this file's time), and hooks that answer like a service with two
assets. A drawn ``target`` sends some cases to a stored alert or a known asset, over a period whose instants
parse, instead of the generated id, name and times: the routes' work behind their 404 and 422 is
reached too. Every state-changing call says ``Content-Type: application/json``, as api.auth demands
even of a call without a body (the schema cannot say so).

The calls are the ones schemathesis 4 (CI) and 3.28+ (``.ci/lowest``: every schemathesis 4 needs
hypothesis 6.108 or later, above the suite's lower bound 6.100) share; the names that differ are picked
below.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alerts.model import ACKNOWLEDGED, SHELVED, STATE_OPEN, STATE_RESOLVED, Alert, AlertAction
from alerts.store import SqliteAlertStore
from api.app import ROUTERS, create_app
from api.hooks import ServiceHooks
from api.keys import KeyFile
from detector.types import Contribution
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_714_564_800 * S  # 2024-05-01T12:00:00Z

# Operations whose answer never ends: the checks need the whole body. GET /alerts/stream sends
# Server-Sent Events until the client goes away (api/routes/alert_stream.py: `while True`).
ENDLESS = {("GET", "/alerts/stream")}
OPERATIONS = sorted(
    (method, route.path)
    for router in ROUTERS
    for route in router.routes
    if isinstance(route, APIRoute) and route.include_in_schema
    for method in route.methods or ()
    if (method, route.path) not in ENDLESS
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 25  # per operation and kind: about 20 s for the file on 2 cores

if hasattr(schemathesis, "GenerationMode"):  # schemathesis 4
    MODES: dict[str, dict[str, Any]] = {
        "positive": {"generation_mode": schemathesis.GenerationMode.POSITIVE},
        "negative": {"generation_mode": schemathesis.GenerationMode.NEGATIVE},
    }
else:  # schemathesis 3, which reads OpenAPI 3.1 (FastAPI's) only with this experiment on
    schemathesis.experimental.OPEN_API_3_1.enable()  # type: ignore[attr-defined]
    MODES = {
        "positive": {"data_generation_method": schemathesis.DataGenerationMethod.positive},  # type: ignore[attr-defined]
        "negative": {"data_generation_method": schemathesis.DataGenerationMethod.negative},  # type: ignore[attr-defined]
    }

ASSETS = ("pump-1", "fan-2")  # the service's assets: pump-1 in alarm, fan-2 still learning its baseline
CONTRIBUTION = Contribution("vibration", 0.8, "high", 9.5, 1.0, 4.0, "level")


def _asset_view(asset: str) -> dict[str, Any]:
    """One asset as plantwatch.service.asset_view shows it."""
    learned = asset == "pump-1"
    return {
        "asset": asset,
        "state": "alarm" if learned else "learning",
        "learned": learned,
        "baseline_rows": 300,
        "baseline_rows_seen": 300 if learned else 120,
        "alarm_enter": 0.998 if learned else None,
        "last_row_at_ns": T0 + 60 * S if learned else None,
        "probability": 0.9995 if learned else None,
        "anomaly": learned,
        "top_sensors": [dataclasses.asdict(CONTRIBUTION)] if learned else [],
        "unseen_operating_point": False,
        "sensors": ["flow", "pressure", "vibration"],
        "drifting_sensors": [],
        "stale_sensors": ["flow"] if learned else [],
        "detector": "iforest",
        "features": ["raw", "level"],
        "window_s": 30.0 if learned else None,
        "refits": 1 if learned else 0,
        "in_memory": learned,  # fan-2 has been idle for detector.evict_idle_after_s
    }


def _assets(only: str | None) -> list[dict[str, Any]]:
    return [_asset_view(a) for a in ASSETS if only in (None, a)]


def _relearn(asset: str, maintenance: bool) -> bool:
    return asset in ASSETS


def _feedback(asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
    if asset == "fan-2":
        raise ValueError("fan-2 has no learned baseline yet")
    return 12 if asset == "pump-1" else None


def _scores(asset: str, since_ns: int | None, limit: int) -> list[dict[str, Any]] | None:
    """A minute of pump-1's scored rows (fan-2 is still learning: none scored yet)."""
    if asset not in ASSETS:
        return None
    rows = [
        {"ts_ns": T0 + t * S, "score": 0.5 + t / 10, "probability": min(0.2 + t / 50, 0.9999), "anomaly": t >= 45}
        for t in range(60 if asset == "pump-1" else 0)
    ]
    return [r for r in rows if since_ns is None or r["ts_ns"] >= since_ns][-limit:]


def _resolver(store: SqliteAlertStore) -> Callable[[int], Alert | None]:
    """The lifecycle's side of POST /alerts/{id}/resolve: an open alert it tracks, stored resolved."""

    def resolve(alert_id: int) -> Alert | None:
        alert = store.get(alert_id)
        if alert is None or alert.state != STATE_OPEN:
            return None
        resolved = dataclasses.replace(alert, state=STATE_RESOLVED, resolved_at_ns=alert.last_anomalous_at_ns)
        store.update(resolved)
        return resolved

    return resolve


def _maintenance() -> list[dict[str, Any]]:
    return [
        {
            "asset": "pump-1",
            "health_index": 0.42,
            "trend": 0.01,
            "time_to_threshold_s": 208_800.0,
            "time_to_threshold_low_s": 150_000.0,
            "time_to_threshold_high_s": None,
            "model": "health-trend",
            "updated_at": "2024-05-01T12:01:00Z",
        }
    ]


def _health() -> dict[str, Any]:
    return {"status": "ok", "assets": {"pump-1": {"state": "scoring"}, "fan-2": {"state": "learning"}}}


def _seed(store: SqliteAlertStore) -> list[int]:
    """Three stored alerts, their ids: an open anomaly; a resolved one, acknowledged; an open sensor fault,
    shelved."""
    opened = Alert(
        id=None,
        asset="pump-1",
        kind="anomaly",
        state="open",
        started_at_ns=T0,
        last_anomalous_at_ns=T0 + 30 * S,
        resolved_at_ns=None,
        severity="critical",
        peak_score=7.5,
        peak_probability=0.9995,
        top_sensors=(CONTRIBUTION,),
        tags=(("line", "L2"), ("site", "basel")),
    )
    resolved = dataclasses.replace(
        opened, asset="fan-2", state="resolved", started_at_ns=T0 - 3600 * S, resolved_at_ns=T0 - 3400 * S
    )
    stuck = dataclasses.replace(opened, kind="sensor_fault", severity="warning", top_sensors=())
    ids = [store.insert(a).id or 0 for a in (opened, resolved, stuck)]
    now = time.time_ns()
    store.act(AlertAction(ids[1], now, "shift-a", ACKNOWLEDGED, "seen"))
    reason = "pump out for service"
    store.act(AlertAction(ids[2], now, "shift-a", SHELVED, reason, shelved_until_ns=now + 3600 * S), reason)
    return ids


@dataclasses.dataclass(frozen=True)
class Api:
    app: FastAPI
    token: str
    alert_ids: list[int]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    keys = KeyFile(tmp_path / "keys.json")
    token = keys.create("fuzzer", "admin")
    hooks = ServiceHooks(
        store=store,
        counters=Counters(),
        health=_health,
        maintenance=_maintenance,
        assets=_assets,
        relearn=_relearn,
        feedback=_feedback,
        resolve=_resolver(store),
        scores=_scores,
        keys=keys,
    )
    yield Api(create_app(hooks), token, _seed(store))
    store.close()


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_answers_as_documented(api: Api, method: str, path: str, mode: str) -> None:
    operation = schemathesis.openapi.from_asgi("/openapi.json", api.app)[path][method]
    headers = {"Authorization": f"Bearer {api.token}"}
    if method == "POST":
        headers["Content-Type"] = "application/json"
    answered: list[int] = []
    _conformance(operation.as_strategy(**MODES[mode]), api.alert_ids, headers, answered)()
    # Each case's checks raise on a failure; this says cases were sent at all (none filtered away).
    assert answered and all(100 <= status < 500 for status in answered)


def _conformance(
    cases: st.SearchStrategy[Any], alert_ids: list[int], headers: dict[str, str], answered: list[int]
) -> Callable[[], None]:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same cases every run: a failure is the app's, not the draw's
        database=None,
        deadline=None,  # SQLite writes on a busy CI machine
        # too_slow: a busy CI machine; filter_too_much: schemathesis 3 filters many of its negative cases
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=cases, target=st.none() | st.integers(0, 5))
    def check(case: Any, target: int | None) -> None:
        if target is not None:
            _point(case, alert_ids, target)
        answered.append(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

    return check


def _point(case: Any, alert_ids: list[int], target: int) -> None:
    """Send ``case`` to stored alert or known asset ``target``, its body's period a parsable hour."""
    params = case.path_parameters or {}
    if "alert_id" in params:
        params["alert_id"] = alert_ids[target % len(alert_ids)]
    if "asset" in params:
        params["asset"] = ASSETS[target % len(ASSETS)]
    if isinstance(case.body, dict) and "start" in case.body:
        start_s = T0 // S + 60 * target
        case.body.update(start=str(start_s), end=f"{start_s + 3600}")
