"""Health index and time-to-threshold projection (pure, event-time)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.health import HealthIndex, MaintenanceMonitor, TimeToThreshold, theil_sen


def test_theil_sen_ignores_outliers():
    t = np.arange(100, dtype=float)
    y = 0.5 * t + 3.0
    y[::10] += 50.0  # 10 % gross outliers
    slope, intercept = theil_sen(t, y)
    assert slope == pytest.approx(0.5, abs=0.01) and intercept == pytest.approx(3.0, abs=0.5)


def test_linear_degradation_crossing_projected_within_tolerance():
    rng = np.random.default_rng(0)
    ttt = TimeToThreshold(window_s=200 * 3600.0, threshold=1.0, horizon_s=48 * 3600.0, confidence=0.95)
    slope = 0.005 / 3600.0  # per second: reaches 1.0 at t = 200 h
    proj = None
    for h in range(0, 121):
        ts = 1_700_000_000.0 + h * 3600.0
        proj = ttt.update(ts, slope * h * 3600.0 + rng.normal(0, 0.01))
    assert proj is not None
    eta_h = proj.eta / 3600.0
    assert eta_h == pytest.approx(80.0, rel=0.05)
    assert proj.eta_low <= proj.eta <= proj.eta_high
    assert proj.eta_low / 3600.0 <= 80.0 <= proj.eta_high / 3600.0
    assert not proj.due  # 80 h > 48 h horizon
    for h in range(121, 161):
        proj = ttt.update(1_700_000_000.0 + h * 3600.0, slope * h * 3600.0 + rng.normal(0, 0.01))
    assert proj is not None and proj.due and proj.eta / 3600.0 == pytest.approx(40.0, rel=0.1)


def test_flat_and_improving_series_give_none():
    rng = np.random.default_rng(1)
    flat = TimeToThreshold(window_s=1e6, threshold=1.0)
    improving = TimeToThreshold(window_s=1e6, threshold=1.0)
    for i in range(200):
        p_flat = flat.update(i * 60.0, 0.3 + rng.normal(0, 0.05))
        p_imp = improving.update(i * 60.0, 0.8 - 0.002 * i + rng.normal(0, 0.01))
    assert p_flat is None and p_imp is None


def test_above_threshold_is_due_now_and_window_forgets():
    ttt = TimeToThreshold(window_s=10.0, threshold=1.0, min_points=3)
    for i in range(20):
        proj = ttt.update(float(i), 1.5)
    assert proj is not None and proj.eta == 0.0 and proj.due
    assert len(ttt.points_) == 11  # t in [9, 19]
    with pytest.raises(ValueError):
        ttt.update(5.0, 1.0)


def test_log_trend_projects_exponential_growth():
    t = np.arange(0, 100, dtype=float)
    y = 0.05 * np.exp(t / 25.0) - 0.1 + 0.1  # crosses 1.0 at t = 25 ln(20) ≈ 74.9
    ttt = TimeToThreshold(window_s=1e9, threshold=1.0, log_trend=True, log_offset=1e-6, min_points=5)
    proj = ttt.extend(t[:50], y[:50])
    assert proj is not None and proj.eta == pytest.approx(25 * math.log(20) - 49, rel=0.02)


def test_health_index_scale_and_drivers():
    hi = HealthIndex(["temp", "vib", "flow"], p_at_threshold=0.99, drift_at_threshold=4.0, half_life_s=0.0)
    assert hi.update(0.0, 0.0, {"temp": 0.0, "vib": 0.0, "flow": 0.0}) == 0.0
    v = hi.update(1.0, 0.99, [4.0 * math.sqrt(3), 0.0, 0.0])  # p at threshold, rms drift at threshold
    assert v == pytest.approx(1.0)
    assert hi.drivers(1) == ("temp",)
    smooth = HealthIndex(["a"], half_life_s=10.0, prob_weight=0.0, drift_at_threshold=1.0)
    smooth.update(0.0, 0.0, [0.0])
    assert smooth.update(10.0, 0.0, [1.0]) == pytest.approx(0.5)  # one half-life later


def test_maintenance_monitor_raises_forecast_with_drivers():
    sensors = ["bearing_temp", "vibration", "current"]
    mon = MaintenanceMonitor(
        "pump-7",
        HealthIndex(sensors, half_life_s=1800.0),
        TimeToThreshold(window_s=72 * 3600.0, threshold=1.0, horizon_s=24 * 3600.0),
    )
    forecast = None
    for i in range(0, 48 * 6):  # every 10 min for 48 h; drift grows on two sensors
        ts = i * 600.0
        drift = i / (48 * 6)
        f = mon.update(ts, min(0.99, 0.6 * drift), {"bearing_temp": 5.0 * drift, "vibration": -4.0 * drift})
        forecast = f or forecast
    assert forecast is not None
    assert forecast.drivers == ("bearing_temp", "vibration")
    assert (
        forecast.message.startswith("service within ~")
        and "driven by sensors bearing_temp, vibration" in forecast.message
    )
    assert forecast.eta_low_s <= forecast.eta_s <= forecast.eta_high_s


def test_a_row_naming_no_sensor_moves_the_index_as_zero_drift_does_bit_for_bit() -> None:
    """Most scored rows name no sensor: their shortcut gives what all-zero drift values give."""
    rng = np.random.default_rng(3)
    sensors = ("a", "b", "c")
    shortcut, general = HealthIndex(sensors, half_life_s=30.0), HealthIndex(sensors, half_life_s=30.0)
    ts = 0.0
    for i in range(400):
        ts += float(rng.choice([0.0, 0.5, 1.0, 7.0]))
        p = float(rng.random())
        if i % 5 == 0:  # now and then a row that names sensors, so the smoothed z has something to decay
            drift = {"a": float(rng.normal(0, 3)), "c": -float(rng.random())}
            assert shortcut.update(ts, p, drift) == general.update(ts, p, drift)
        else:
            assert shortcut.update(ts, p, {}) == general.update(ts, p, [0.0, 0.0, 0.0])
        assert shortcut.z_.tobytes() == general.z_.tobytes() and shortcut.n_ == general.n_
    with pytest.raises(ValueError, match="go back"):
        shortcut.update(ts - 1.0, 0.5, {})


def test_a_row_naming_no_sensor_starts_an_index_restored_without_its_time() -> None:
    """A saved trend holding a value but no time (hand-edited, or cut short) starts again at its next
    row, whichever row that is, as it did before rows naming no sensor took a shorter path."""
    index = HealthIndex(("a", "b"), half_life_s=30.0)
    index.value_ = 5.0  # as plantwatch.maintenance.trends restores {"value": 5.0, "ts": null}
    assert index.update(10.0, 0.5, {}) == index.raw(0.5, np.zeros(2))
    assert index.ts_ == 10.0 and index.z_.tolist() == [0.0, 0.0] and index.n_ == 1
