"""Health trends per operating regime: a change of operating point is not read as a change of health."""

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
from detector.regimes import OnlineRegimes
from detector.types import Verdict
from ingest.messages import Reading
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.maintenance.trends import RegimeConfig
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.wiring import _maintenance_tracker
from plantwatch.service.writer import StageHealth
from plantwatch.settings import load_settings
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_700_000_000 * S
HOUR = 3600.0
STEP_S = 60.0
NAMES = ("load", "vibration")
LOADS = (0.4, 0.9)


def regimes() -> RegimeConfig:
    return RegimeConfig(("load",), lambda: OnlineRegimes((0.05,), settle_rows=5), "operating_settings")


def tracker(with_regimes: bool) -> MaintenanceTracker:
    return MaintenanceTracker(24 * HOUR, 6 * HOUR, regimes=regimes() if with_regimes else None)


Rows = list[tuple[int, float, float]]


def shift(hours: float, high_share: np.ndarray | float, probability: tuple[np.ndarray, np.ndarray]) -> Rows:
    """(ts_ns, load, anomaly probability) per minute; the load is high in a share of each hour that
    goes from ``high_share[0]`` to ``high_share[-1]``; ``probability[k]`` per row at load k."""
    n = int(hours * HOUR / STEP_S)
    share = np.broadcast_to(np.asarray(high_share, dtype=float), (n,))
    minute_in_hour = np.arange(n) % 60
    high = minute_in_hour < np.round(share * 60)
    rng = np.random.default_rng(5)
    load = np.where(high, LOADS[1], LOADS[0]) + rng.normal(0, 0.01, n)
    p = np.where(high, probability[1], probability[0])
    return [(T0 + int(i * STEP_S * S), float(load[i]), float(p[i])) for i in range(n)]


def feed(t: MaintenanceTracker, rows: list[tuple[int, float, float]], asset: str = "mixer-3") -> list[object]:
    """Each row's regime first (as the detector stage does for a batch), then its verdict."""
    forecasts = []
    for ts, load, p in rows:
        t.observe_rows(asset, NAMES, [(ts, np.array([load, 1.0]))])
        forecasts.append(t.observe(Verdict(asset, ts, 1.0, p, False), sensors=NAMES))
    return [f for f in forecasts if f is not None]


def busier_afternoon() -> list[tuple[int, float, float]]:
    """No wear at all: the anomaly probability sits at 0.1 at low load and 0.7 at high load (the baseline saw
    mostly low load), and the plant runs more and more of each hour at high load."""
    n = int(8 * HOUR / STEP_S)
    return shift(8, np.linspace(0.0, 1.0, n), (np.full(n, 0.1), np.full(n, 0.7)))


def test_more_time_at_high_load_reads_as_wear_without_regimes_and_not_with_them() -> None:
    rows = busier_afternoon()
    mixed = tracker(with_regimes=False)
    assert feed(mixed, rows), "the one trend mixing both loads rises: a spurious maintenance forecast"
    split = tracker(with_regimes=True)
    assert feed(split, rows) == []
    [entry] = split.snapshot()
    assert [r["regime"] for r in entry["regimes"]] == [0, 1]
    for r in entry["regimes"]:
        assert r["time_to_threshold_s"] is None and abs(r["trend"]) < 0.01  # flat within each regime
    assert entry["regime"]["id"] == 1 and entry["regime"]["source"] == "operating_settings"
    assert abs(entry["regime"]["settings"]["load"] - LOADS[1]) < 0.01
    assert entry["health_index"] == entry["regimes"][1]["health_index"]  # the top level is the judged regime's


def test_wear_in_every_regime_is_still_forecast() -> None:
    n = int(8 * HOUR / STEP_S)
    wear = np.linspace(0.0, 0.8, n)
    rows = shift(8, 0.5, (0.05 + wear, 0.15 + wear))
    t = tracker(with_regimes=True)
    forecasts = feed(t, rows)
    assert forecasts and 0 < forecasts[-1].eta_s <= 24 * HOUR  # type: ignore[attr-defined]
    [entry] = t.snapshot()
    assert all(r["trend"] > 0.03 and r["time_to_threshold_s"] is not None for r in entry["regimes"])


def test_rows_between_regimes_are_counted_not_tracked() -> None:
    t = tracker(with_regimes=True)
    steady = [(T0 + i * 60 * S, 0.4, 0.1) for i in range(30)]
    # 0.5 .. 0.85 in steps of 0.05: each row is a new candidate a tolerance from the last, none settles
    ramp = [(T0 + (30 + i) * 60 * S, 0.5 + 0.05 * i, 0.9) for i in range(8)]
    feed(t, steady + ramp)
    [entry] = t.snapshot()
    assert entry["rows_between_regimes"] == 4 + 8  # the first 4 steady rows too, before load 0.4 settled
    assert [r["regime"] for r in entry["regimes"]] == [0]
    assert entry["health_index"] < 0.2  # the ramp's high probabilities judged in no regime


def test_a_restart_continues_every_regime_trend(tmp_path: Path) -> None:
    rows = busier_afternoon()
    cut = len(rows) // 2 + 7
    uninterrupted = tracker(with_regimes=True)
    feed(uninterrupted, rows)
    before = tracker(with_regimes=True)
    feed(before, rows[:cut])
    models = ModelPersistence(str(tmp_path / "models"))
    models.save_trends(before)
    after = tracker(with_regimes=True)
    models.restore_trends(after)
    assert after.snapshot() == before.snapshot()
    feed(after, rows[cut:])
    assert after.snapshot() == uninterrupted.snapshot()
    # restored without regimes configured: the regime trends start afresh rather than mixing into one
    plain = tracker(with_regimes=False)
    models.restore_trends(plain)
    assert plain.snapshot() == []


def test_an_overhaul_forgets_the_trends_but_not_the_operating_points() -> None:
    t = tracker(with_regimes=True)
    feed(t, busier_afternoon()[:200])
    t.forget("mixer-3")
    assert t.snapshot() == []
    t.observe_rows("mixer-3", NAMES, [(T0 + 10**6 * S, np.array([LOADS[1], 1.0]))])
    t.observe(Verdict("mixer-3", T0 + 10**6 * S, 1.0, 0.2, False), sensors=NAMES)
    [entry] = t.snapshot()
    assert entry["regime"]["id"] == 1  # known at once: no settling again


def test_the_service_tracks_regimes_from_the_configured_settings(tmp_path: Path) -> None:
    settings = load_settings(
        storage__kind="sqlite", maintenance__operating_settings={"load": 0.05}, maintenance__regime_settle_rows=5
    )
    t = _maintenance_tracker(settings, None)
    store = SqliteAlertStore(tmp_path / "alerts.db")
    stage = DetectorStage(
        ScoringQueue(),
        sink=type("NullSink", (), {"write_verdicts": lambda self, v: None})(),
        alerts=AlertManager(store, resolve_after_s=60, counters=Counters()),
        detector_config=lambda asset: MonitorConfig(baseline_rows=120),
        counters=Counters(),
        health=StageHealth(),
        stop=threading.Event(),
        maintenance=t,
    )
    rng = np.random.default_rng(2)
    readings = []
    for i in range(600):
        load = LOADS[(i // 40) % 2] + rng.normal(0, 0.005)
        vibration = 2.0 + 3.0 * load + rng.normal(0, 0.05)
        readings.append(Reading("mixer-3", T0 + i * S, {"load": load, "vibration": vibration}))
    for i in range(0, len(readings), 50):
        stage._process(readings[i : i + 50])
    with TestClient(
        create_app(ServiceHooks(store=store, counters=Counters(), maintenance=t.snapshot)), base_url="http://localhost"
    ) as client:
        [entry] = client.get("/maintenance").json()
    assert sorted(r["regime"] for r in entry["regimes"]) == [0, 1]
    assert entry["regime"]["source"] == "operating_settings"
    # the last reading ran at LOADS[0] (row 599 is in block 14 of 40 rows): judged in that regime
    assert abs(entry["regime"]["settings"]["load"] - LOADS[0]) < 0.01
    store.close()


def test_a_due_regime_stops_counting_once_the_machine_kept_away_from_it_a_whole_trend_window() -> None:
    """Wear shows at full load; then the plant runs at part load only, and the part-load trend is flat: the
    full-load forecast holds the alert open for one trend window (6 h), not for as long as the plant stays away."""
    n = int(8 * HOUR / STEP_S)
    t = tracker(with_regimes=True)
    rows = shift(8, 1.0, (np.zeros(n), np.linspace(0.1, 0.9, n)))  # all at full load, wearing
    assert feed(t, rows), "the full-load wear is forecast"
    end = rows[-1][0]
    later = [(end + int((i + 1) * STEP_S * S), LOADS[0], 0.1) for i in range(int(10 * HOUR / STEP_S))]
    verdicts = [Verdict("mixer-3", ts, 1.0, p, False) for ts, _, p in _labelled(t, later)]
    forecasts = [(v.ts_ns, t.observe(v, sensors=NAMES)) for v in verdicts]
    due_for = max((ts - end) / S / HOUR for ts, f in forecasts if f is not None)
    assert 5.5 < due_for <= 6.0
    assert forecasts[-1][1] is None


def _labelled(t: MaintenanceTracker, rows: Rows) -> Rows:
    """``rows`` after their regimes were handed to the tracker (one call, as for a batch)."""
    t.observe_rows("mixer-3", NAMES, [(ts, np.array([load, 1.0])) for ts, load, _ in rows])
    return rows


def test_an_asset_without_the_settings_is_named_once_and_trended_as_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = tracker(with_regimes=True)
    rows = [(T0 + i * 60 * S, np.array([1.0])) for i in range(3)]
    assert t.observe_rows("fan-2", ("vibration",), rows) == ("load",)
    assert t.observe_rows("fan-2", ("vibration",), rows) == ()  # said once
    for ts, _ in rows:
        t.observe(Verdict("fan-2", ts, 1.0, 0.2, False), sensors=("vibration",))
    [entry] = t.snapshot()
    assert entry["regime"] is None and entry["regimes"] == [] and entry["health_index"] is not None
    stage = DetectorStage(
        ScoringQueue(),
        sink=type("NullSink", (), {"write_verdicts": lambda self, v: None})(),
        alerts=AlertManager(SqliteAlertStore(tmp_path / "alerts.db"), resolve_after_s=60, counters=Counters()),
        detector_config=lambda asset: MonitorConfig(baseline_rows=20),
        counters=Counters(),
        health=StageHealth(),
        stop=threading.Event(),
        maintenance=tracker(with_regimes=True),
    )
    with caplog.at_level("WARNING", logger="plantwatch.service.detector_stage"):
        for i in range(0, 60, 10):
            stage._process([Reading("fan-3", T0 + (i + k) * S, {"vibration": 1.0 + 0.01 * k}) for k in range(10)])
    said = [r.getMessage() for r in caplog.records if "operating_settings" in r.getMessage()]
    assert said == [
        "maintenance.operating_settings: fan-3 publishes no 'load', so its health is trended as one regime"
        " (sensors: vibration)"
    ]


def test_a_regime_index_is_smoothed_over_its_own_running_time() -> None:
    """Back at full load after three hours at part load, the full-load index goes on from where it was rather
    than starting again from the first verdict (it would, smoothed over calendar time: 3 half-lives away)."""
    t = tracker(with_regimes=True)
    full = [(T0 + i * 60 * S, LOADS[1], 0.6) for i in range(120)]  # two hours at full load, probability 0.6
    part = [(full[-1][0] + (i + 1) * 60 * S, LOADS[0], 0.1) for i in range(180)]
    feed(t, full + part)
    back = part[-1][0] + 60 * S
    t.observe_rows("mixer-3", NAMES, [(back, np.array([LOADS[1], 1.0]))])
    t.observe(Verdict("mixer-3", back, 1.0, 0.0, False), sensors=NAMES)  # one quiet verdict back at full load
    [entry] = t.snapshot()
    assert entry["regime"]["id"] == 0 and entry["regimes"][0]["regime"] == 0
    assert entry["health_index"] > 0.29  # ~0.303 before (0.5 x 0.6 / 0.99); one verdict a minute in moves it little
