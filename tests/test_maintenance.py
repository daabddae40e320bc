"""Live maintenance prediction: tracker → maintenance alert → GET /alerts?kind=maintenance and GET /maintenance."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from detector.config import MonitorConfig
from detector.types import Contribution, Verdict
from plantwatch.maintenance.tracker import MaintenanceTracker, drift_from_contributions
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_700_000_000 * S
HOUR = 3600.0


def stream(probabilities: np.ndarray, step_s: float = 60.0, asset: str = "pump-7") -> list[Verdict]:
    contrib = (Contribution("vibration", 1.0, "high", 5.0, 1.0, 4.0),)
    return [
        Verdict(asset, T0 + int(i * step_s * S), 1.0, float(p), False, contrib if p > 0.5 else ())
        for i, p in enumerate(probabilities)
    ]


def degrading(hours: float = 6.0, step_s: float = 60.0) -> np.ndarray:
    n = int(hours * HOUR / step_s)
    rng = np.random.default_rng(1)
    return np.clip(np.linspace(0.05, 0.95, n) + rng.normal(0, 0.01, n), 0.0, 0.999)


def tracker() -> MaintenanceTracker:
    return MaintenanceTracker(horizon_s=24 * HOUR, window_s=6 * HOUR)


def test_drift_from_contributions_scales_to_the_expected_range() -> None:
    drift = drift_from_contributions(
        (Contribution("a", 1.0, "high", 4.0, 1.0, 3.0), Contribution("b", 0, "low", 2, 2, 2))
    )
    assert drift == {"a": pytest.approx(2 * 2.576)}  # one half-range above the edge; "b" has no range


def test_degrading_stream_projects_a_crossing_within_the_horizon() -> None:
    t = tracker()
    forecasts = [f for v in stream(degrading()) if (f := t.observe(v)) is not None]
    assert forecasts, "a steadily degrading stream must project a crossing within 24 h"
    last = forecasts[-1]
    assert last.asset == "pump-7" and 0 < last.eta_s <= 24 * HOUR
    assert last.eta_low_s <= last.eta_s <= last.eta_high_s
    assert last.drivers == ("vibration",)
    assert "service" in last.message
    [entry] = t.snapshot()
    assert entry["model"] == "health-trend" and entry["trend"] > 0
    assert entry["time_to_threshold_s"] == pytest.approx(last.eta_s)


def test_flat_stream_gives_no_projection() -> None:
    t = tracker()
    rng = np.random.default_rng(2)
    flat = np.clip(0.1 + rng.normal(0, 0.01, 360), 0, 1)
    assert all(t.observe(v) is None for v in stream(flat))
    [entry] = t.snapshot()
    assert entry["time_to_threshold_s"] is None and entry["time_to_threshold_low_s"] is None
    assert entry["time_to_threshold_high_s"] is None
    assert entry["health_index"] == pytest.approx(0.5 * 0.1 / 0.99, abs=0.01)


def test_no_projection_from_less_than_the_minimum_history() -> None:
    t = tracker()  # min_span_s defaults to window_s / 2 = 3 h
    rows = stream(degrading(hours=6.0))
    assert all(t.observe(v) is None for v in rows[:170])  # < 3 h of trend
    assert t.snapshot()[0]["time_to_threshold_s"] is None


def test_warming_up_verdicts_are_ignored() -> None:
    t = tracker()
    assert t.observe(Verdict("a", T0, 0.0, 0.0, False, warming_up=True)) is None
    assert t.snapshot() == []


def _stage(tmp_path: Path) -> tuple[DetectorStage, SqliteAlertStore, MaintenanceTracker]:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    manager = AlertManager(store, resolve_after_s=60, counters=Counters())
    t = tracker()
    stage = DetectorStage(
        ScoringQueue(),
        sink=None,  # type: ignore[arg-type]  # _track_maintenance never touches the sink
        alerts=manager,
        detector_config=lambda asset: MonitorConfig(),
        counters=Counters(),
        health=StageHealth(),
        stop=threading.Event(),
        maintenance=t,
    )
    return stage, store, t


def test_due_forecast_opens_one_maintenance_alert_visible_in_the_api(tmp_path: Path) -> None:
    stage, store, t = _stage(tmp_path)
    for verdict in stream(degrading()):
        stage.alerts.observe(verdict)
        stage._track_maintenance(verdict)
    stage.alerts.flush()
    with TestClient(
        create_app(ServiceHooks(store=store, counters=Counters(), maintenance=t.snapshot)), base_url="http://localhost"
    ) as client:
        alerts = client.get("/alerts", params={"kind": "maintenance"}).json()
        anomalies = client.get("/alerts", params={"kind": "anomaly"}).json()
        snapshot = client.get("/maintenance")
    assert anomalies == []  # anomaly behaviour unchanged: no anomalous verdict, no anomaly alert
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert["asset"], alert["kind"], alert["state"], alert["severity"]) == (
        "pump-7",
        "maintenance",
        "open",
        "warning",
    )
    assert [c["sensor"] for c in alert["top_sensors"]] == ["vibration"]
    assert alert["top_sensors"][0]["feature"] == "drift" and alert["top_sensors"][0]["direction"] == "high"
    assert snapshot.status_code == 200
    [entry] = snapshot.json()
    assert set(entry) == {
        "asset",
        "health_index",
        "trend",
        "time_to_threshold_s",
        "time_to_threshold_low_s",
        "time_to_threshold_high_s",
        "rul_s",
        "rul_low_s",
        "rul_high_s",
        "model",
        "updated_at",
        "regime",
        "regimes",
        "rows_between_regimes",
        "rul_regime",
    }
    assert entry["asset"] == "pump-7" and entry["model"] == "health-trend"
    assert (entry["regime"], entry["regimes"], entry["rul_regime"]) == (None, [], None)  # no regimes configured
    assert entry["rul_s"] is None  # no run-to-failure model configured
    assert entry["trend"] > 0 and 0 < entry["time_to_threshold_s"] <= 24 * HOUR
    assert entry["updated_at"] == alert["last_anomalous_at"]  # event time of the last row
    store.close()


def test_maintenance_alert_resolves_once_no_longer_due(tmp_path: Path) -> None:
    stage, store, _ = _stage(tmp_path)
    rows = np.concatenate([degrading(), np.full(600, 0.01)])  # repaired: back to healthy for 10 h
    for verdict in stream(rows):
        stage._track_maintenance(verdict)
    [alert] = store.list(kind="maintenance")
    assert alert.state == "resolved"
    store.close()


def test_get_maintenance_defaults_to_empty(tmp_path: Path) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    with TestClient(create_app(ServiceHooks(store=store, counters=Counters())), base_url="http://localhost") as client:
        resp = client.get("/maintenance")
    assert resp.status_code == 200 and resp.json() == []
    store.close()


def test_a_restart_continues_the_trends_where_they_stopped(tmp_path: Path) -> None:
    from plantwatch.service.persistence import ModelPersistence

    verdicts = stream(degrading(hours=6.0))
    cut = len(verdicts) * 2 // 3
    uninterrupted = tracker()
    expected = [uninterrupted.observe(v) for v in verdicts]
    before = tracker()
    for v in verdicts[:cut]:
        before.observe(v)
    models = ModelPersistence(str(tmp_path / "models"))
    models.save_trends(before)
    after = tracker()
    models.restore_trends(after)
    assert after.snapshot() == before.snapshot()
    assert [after.observe(v) for v in verdicts[cut:]] == expected[cut:]
    assert after.snapshot() == uninterrupted.snapshot()


def test_a_broken_trends_file_starts_the_trends_afresh(tmp_path: Path) -> None:
    from plantwatch.service.persistence import ModelPersistence

    models = ModelPersistence(str(tmp_path))
    first = tracker()
    for v in stream(degrading(hours=2.0)):
        first.observe(v)
    models.save_trends(first)
    for path in tmp_path.glob("*.state"):
        path.write_bytes(b"not a state file")
    fresh = tracker()
    models.restore_trends(fresh)
    assert fresh.snapshot() == []


def test_the_detector_stage_restores_the_trends_and_saves_them_at_shutdown(tmp_path: Path) -> None:
    from plantwatch.service.persistence import ModelPersistence

    models = ModelPersistence(str(tmp_path / "models"))
    seeded = tracker()
    for v in stream(degrading(hours=3.0)):
        seeded.observe(v)
    models.save_trends(seeded)

    def stage_with(t: MaintenanceTracker) -> DetectorStage:
        return DetectorStage(
            ScoringQueue(),
            sink=None,  # type: ignore[arg-type]
            alerts=AlertManager(SqliteAlertStore(tmp_path / "alerts.db"), resolve_after_s=60, counters=Counters()),
            detector_config=lambda asset: MonitorConfig(),
            counters=Counters(),
            health=StageHealth(),
            stop=threading.Event(),
            models=models,
            maintenance=t,
        )

    restored = tracker()
    stage = stage_with(restored)
    assert restored.snapshot() == seeded.snapshot()
    for v in stream(degrading(hours=1.0), asset="fan-2"):
        restored.observe(v)
    stage.save_models()
    again = tracker()
    stage_with(again)
    assert [e["asset"] for e in again.snapshot()] == ["fan-2", "pump-7"]
