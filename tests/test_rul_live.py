"""Live RUL: a `plantwatch rul fit` model applied per asset in the detector stage, served by GET /maintenance."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_limits

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from detector.config import MonitorConfig
from detector.rul import RulModel
from detector.types import Verdict
from plantwatch.maintenance.rul_files import save_model
from plantwatch.maintenance.rul_tracker import RulTracker, load_rul_tracker
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.writer import StageHealth
from plantwatch.settings import ConfigError, load_settings
from telemetry.counters import Counters

SENSORS = ["temp", "pressure", "flow", "vib", "noise"]
SETTINGS = ["setting1", "setting2"]
REGIMES = np.array([[0.0, 0.0], [10.0, 0.25], [25.0, 0.62]])
OFFSETS = np.random.default_rng(0).normal(0, 20, size=(3, 5))
T0 = 1_700_000_000 * 10**9
UNIT_S = 10.0  # one training "cycle" = 10 s of live time


def unit(life: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One asset degrading exponentially to failure at ``life`` cycles; 4 informative sensors, 1 noise."""
    t = np.arange(1, life + 1, dtype=float)
    wear = np.exp((t - life) / 40.0)
    r = rng.integers(0, 3, size=life)
    S = REGIMES[r] + rng.normal(0, 0.002, size=(life, 2))
    X = np.stack([100 + 3 * wear, 50 - 2 * wear, 20 + 1.5 * wear, 5 + 2.5 * wear, np.zeros(life)], axis=1)
    X += OFFSETS[r] + rng.normal(0, 0.4, size=(life, 5))
    return t, X, S


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    fleet = [unit(int(rng.integers(120, 220)), rng) for _ in range(24)]
    with threadpool_limits(limits=1):
        model = RulModel(max_iter=40, learning_rate=0.1, cv_folds=3, window=15, min_samples_leaf=50).fit(fleet)
    d = tmp_path_factory.mktemp("models") / "pump-rul"
    save_model(model, d, SENSORS, SETTINGS)
    return d


class _NullSink:
    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        pass


def _rows(t: np.ndarray, X: np.ndarray, S: np.ndarray) -> list[tuple[int, dict[str, float]]]:
    return [
        (T0 + int(ti * UNIT_S * 1e9), {**dict(zip(SENSORS, x, strict=True)), **dict(zip(SETTINGS, s, strict=True))})
        for ti, x, s in zip(t, X, S, strict=True)
    ]


def _stage(store: SqliteAlertStore, tracker: MaintenanceTracker, detector_config: dict[str, Any]) -> DetectorStage:
    """The live detector stage with a maintenance tracker, storage left out."""
    return DetectorStage(
        ScoringQueue(),
        sink=_NullSink(),  # type: ignore[arg-type]
        alerts=AlertManager(store, resolve_after_s=60, counters=Counters()),
        detector_config=lambda asset: MonitorConfig(**detector_config),
        counters=Counters(),
        health=StageHealth(),
        stop=threading.Event(),
        maintenance=tracker,
    )


def test_degrading_asset_rul_served_and_decreasing(model_dir: Path, tmp_path: Path) -> None:
    rul = load_rul_tracker(model_dir, time_unit_s=UNIT_S, every_rows=20, history_rows=500)
    assert rul.model_name == "rul:pump-rul"
    tracker = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=rul)
    store = SqliteAlertStore(tmp_path / "alerts.db")
    stage = _stage(store, tracker, {"baseline_rows": 20})  # scored verdicts drive the alert check
    from ingest.messages import Reading

    t, X, S = unit(200, np.random.default_rng(7))
    cut = 190  # true remaining life at the end: 10 cycles = 100 s
    rows = _rows(t[:cut], X[:cut], S[:cut])
    seen: list[dict[str, object]] = []
    with TestClient(
        create_app(ServiceHooks(store=store, counters=Counters(), maintenance=tracker.snapshot)),
        base_url="http://localhost",
    ) as client:
        assert client.get("/maintenance").json() == []
        for i in range(0, cut, 10):
            stage._process([Reading("pump-1", ts, values) for ts, values in rows[i : i + 10]])
            [entry] = client.get("/maintenance").json() or [None]
            if entry is not None and entry["rul_s"] is not None and (not seen or entry["rul_s"] != seen[-1]["rul_s"]):
                seen.append(entry)
    assert len(seen) == cut // 20
    for e in seen:
        assert e["model"] == "rul:pump-rul" and e["asset"] == "pump-1"
        assert e["rul_low_s"] <= e["rul_s"] <= e["rul_high_s"]  # type: ignore[operator]
        assert 0 <= e["rul_s"] <= 125 * UNIT_S  # type: ignore[operator]
    ruls = [float(e["rul_s"]) for e in seen]  # type: ignore[arg-type]
    assert ruls[-1] < 0.5 * ruls[0]
    assert ruls[-1] < 400  # true: 100 s
    assert ruls[-1] <= min(ruls[: len(ruls) // 2])  # decreasing over time
    assert seen[-1]["updated_at"] == "2023-11-14T22:43:20Z"  # event time of the last row predicted on (cycle 180)
    # A predicted remaining life inside the horizon (24 h) opens the asset's maintenance alert.
    [alert] = store.list(kind="maintenance")
    assert alert.asset == "pump-1" and alert.state == "open"
    store.close()


def test_rows_missing_a_model_sensor_are_skipped(model_dir: Path) -> None:
    rul = load_rul_tracker(model_dir, every_rows=3)
    rng = np.random.default_rng(3)
    t, X, S = unit(150, rng)
    rows = _rows(t[:10], X[:10], S[:10])
    partial = [(ts, {k: v for k, v in values.items() if k != "vib"}) for ts, values in rows]
    assert rul.observe("a", partial) is None and rul.estimates() == {}
    assert rul.observe("a", rows[:3]) is not None  # settings carried: passed to the model
    no_settings = [(ts, {k: v for k, v in values.items() if k in SENSORS}) for ts, values in rows[3:6]]
    est = rul.observe("a", no_settings)  # mixed history: settings left out (None), still a prediction
    assert est is not None and est.low_s <= est.rul_s <= est.high_s
    assert rul.observe("a", rows[:3]) is None  # rows not later than the last kept one are skipped


def test_without_a_model_snapshot_has_no_rul() -> None:
    t = MaintenanceTracker(3600.0, 600.0)
    t.observe(Verdict("a", T0, 0.5, 0.1, False))
    [entry] = t.snapshot()
    assert entry["model"] == "health-trend" and entry["rul_s"] is None and entry["rul_high_s"] is None


def test_tracker_rejects_bad_parameters(model_dir: Path) -> None:
    with pytest.raises(ValueError):
        RulTracker(None, SENSORS, time_unit_s=0)  # type: ignore[arg-type]


def test_config_missing_rul_model_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"maintenance\.rul_model"):
        load_settings(storage__kind="sqlite", maintenance__rul_model=str(tmp_path / "nope"))


def test_config_accepts_an_existing_model_dir(model_dir: Path) -> None:
    s = load_settings(storage__kind="sqlite", maintenance__rul_model=str(model_dir), maintenance__rul_time_unit_s=3600)
    assert s.maintenance.rul_model == str(model_dir) and s.maintenance.rul_time_unit_s == 3600
    assert s.maintenance.rul_every_rows == 60 and s.maintenance.rul_history_rows == 2000


def test_sensors_published_one_per_message_still_reach_the_model(model_dir: Path, tmp_path: Path) -> None:
    from ingest.messages import Reading

    rul = load_rul_tracker(model_dir, time_unit_s=UNIT_S, every_rows=20, history_rows=500)
    tracker = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=rul)
    store = SqliteAlertStore(tmp_path / "alerts.db")
    stage = _stage(store, tracker, {"baseline_rows": 20, "max_staleness_ns": int(2 * UNIT_S * 1e9)})
    t, X, S = unit(200, np.random.default_rng(7))
    per_sensor = [
        Reading("pump-2", ts, {name: value})
        for ts, values in _rows(t[:190], X[:190], S[:190])
        for name, value in values.items()
    ]
    for i in range(0, len(per_sensor), 70):
        stage._process(per_sensor[i : i + 70])
    estimate = rul.estimates()["pump-2"]
    assert estimate.low_s <= estimate.rul_s <= estimate.high_s
    assert estimate.rul_s < 400  # true remaining life at the end: 100 s
    store.close()


def test_the_rul_history_survives_a_restart(model_dir: Path, tmp_path: Path) -> None:
    from plantwatch.service.persistence import ModelPersistence

    t, X, S = unit(200, np.random.default_rng(11))
    rows = _rows(t, X, S)
    rows[5][1].pop("setting1")  # one reading without the settings: kept as a row without them
    cut = 130

    def fresh() -> MaintenanceTracker:
        rul = load_rul_tracker(model_dir, time_unit_s=UNIT_S, every_rows=20, history_rows=500)
        return MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=rul)

    uninterrupted = fresh()
    assert uninterrupted.rul is not None
    uninterrupted.rul.observe("pump-1", rows)
    before = fresh()
    assert before.rul is not None
    before.rul.observe("pump-1", rows[:cut])
    models = ModelPersistence(str(tmp_path / "models"))
    models.save_trends(before)
    after = fresh()
    models.restore_trends(after)
    assert after.rul is not None
    assert after.rul.estimates() == before.rul.estimates() != {}
    after.rul.observe("pump-1", rows[cut:])
    assert after.rul.estimates() == uninterrupted.rul.estimates()


def test_a_rul_history_saved_for_another_model_is_dropped_but_the_trends_stay(model_dir: Path, tmp_path: Path) -> None:
    from plantwatch.service.persistence import ModelPersistence

    first = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=load_rul_tracker(model_dir, every_rows=20))
    assert first.rul is not None
    t, X, S = unit(100, np.random.default_rng(12))
    first.rul.observe("pump-1", _rows(t, X, S))
    first.observe(Verdict("pump-1", T0, 1.0, 0.2, False, ()))
    models = ModelPersistence(str(tmp_path))
    models.save_trends(first)
    other_rul = RulTracker(first.rul.model, SENSORS[:4], SETTINGS, name="other")
    second = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=other_rul)
    models.restore_trends(second)
    assert other_rul.estimates() == {}
    [restored], [saved] = second.snapshot(), first.snapshot()
    assert restored["health_index"] == saved["health_index"] and restored["rul_s"] is None


def test_a_failure_due_soon_is_alerted_before_the_anomaly_baseline_is_learned(model_dir: Path, tmp_path: Path) -> None:
    from ingest.messages import Reading

    rul = load_rul_tracker(model_dir, time_unit_s=UNIT_S, every_rows=20, history_rows=500)
    tracker = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=rul)
    store = SqliteAlertStore(tmp_path / "alerts.db")
    stage = _stage(store, tracker, {"baseline_rows": 5000})  # never warm within this test
    t, X, S = unit(200, np.random.default_rng(7))
    rows = _rows(t[:190], X[:190], S[:190])
    for i in range(0, 190, 10):
        stage._process([Reading("pump-1", ts, values) for ts, values in rows[i : i + 10]])
    assert not stage.monitors["pump-1"].is_warm
    [alert] = store.list(kind="maintenance")
    assert alert.asset == "pump-1" and alert.state == "open"
    store.close()


def test_trends_save_with_an_asset_that_lacks_the_rul_sensors(model_dir: Path, tmp_path: Path) -> None:
    from plantwatch.service.persistence import ModelPersistence

    rul = load_rul_tracker(model_dir, every_rows=20)
    rul.observe("fan-9", [(T0, {"rpm": 1.0})])  # not a row the model can use: an empty history
    t, X, S = unit(60, np.random.default_rng(13))
    rul.observe("pump-1", _rows(t, X, S))
    tracker = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=rul)
    models = ModelPersistence(str(tmp_path))
    models.save_trends(tracker)
    again = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=load_rul_tracker(model_dir, every_rows=20))
    models.restore_trends(again)
    assert again.rul is not None and again.rul.get_state()[0] == rul.get_state()[0]


def test_relearn_after_maintenance_starts_the_trend_and_rul_history_again(model_dir: Path, tmp_path: Path) -> None:
    from ingest.messages import Reading

    rul = load_rul_tracker(model_dir, time_unit_s=UNIT_S, every_rows=20, history_rows=500)
    tracker = MaintenanceTracker(24 * 3600.0, 6 * 3600.0, rul=rul)
    store = SqliteAlertStore(tmp_path / "alerts.db")
    stage = _stage(store, tracker, {"baseline_rows": 20})
    t, X, S = unit(200, np.random.default_rng(7))
    rows = _rows(t[:100], X[:100], S[:100])
    stage._process([Reading("pump-1", ts, values) for ts, values in rows])
    assert rul.estimates() and tracker.snapshot()
    assert stage.request_relearn("pump-1")  # a process change: the life history stays
    stage._process([])
    assert rul.estimates() and not stage.monitors["pump-1"].is_warm
    assert stage.request_relearn("pump-1", maintenance=True)  # overhauled: its life starts again
    stage._process([])
    assert rul.estimates() == {} and tracker.snapshot() == []
    store.close()


def test_maintenance_says_which_regime_the_rul_model_judged_in(model_dir: Path, tmp_path: Path) -> None:
    """The fleet runs at three operating conditions: the model's regimes are recognised per row, shown with
    the RUL (``rul_regime``) and, with no operating settings configured, used for the health trends too."""
    from ingest.messages import Reading
    from plantwatch.service.wiring import _maintenance_tracker

    settings = load_settings(
        storage__kind="sqlite",
        maintenance__rul_model=str(model_dir),
        maintenance__rul_time_unit_s=UNIT_S,
        maintenance__rul_every_rows=20,
    )
    tracker = _maintenance_tracker(settings, load_rul_tracker(model_dir, time_unit_s=UNIT_S, every_rows=20))
    assert tracker.regimes is not None and tracker.regimes.source == "rul:pump-rul"
    store = SqliteAlertStore(tmp_path / "alerts.db")
    stage = _stage(store, tracker, {"baseline_rows": 20})
    t, X, S = unit(200, np.random.default_rng(9))
    rows = _rows(t[:160], X[:160], S[:160])
    for i in range(0, 160, 10):
        stage._process([Reading("pump-3", ts, values) for ts, values in rows[i : i + 10]])
    [entry] = tracker.snapshot()
    last = S[159]  # the RUL was last predicted on row 160 (every 20 rows)
    expected = int(np.argmin(((REGIMES - last) ** 2).sum(axis=1)))
    assert entry["rul_regime"]["id"] == entry["regime"]["id"]
    centre = entry["rul_regime"]["settings"]
    assert np.allclose([centre["setting1"], centre["setting2"]], REGIMES[expected], atol=0.05)
    assert len(entry["regimes"]) == 3
    store.close()
