"""The smallest settled shift of each sensor the alarm flags (detector.detectability): what it says
holds in a backtest, and it moves the way the model does."""

from __future__ import annotations

import dataclasses

import numpy as np

from detector.config import MonitorConfig
from detector.detectability import level_columns, smallest_shifts
from detector.monitor import AssetMonitor
from ingest.logfile import SensorLog
from plantwatch.offline.backtest import run_backtest

BASELINE = 3600
SENSORS = ("a", "b", "c", "d")


def _monitor(X: np.ndarray, config: MonitorConfig | None = None) -> AssetMonitor:
    config = dataclasses.replace(config or MonitorConfig(), baseline_rows=BASELINE)
    monitor = AssetMonitor("pump", config, SENSORS)
    monitor.process_arrays(np.arange(BASELINE, dtype=np.int64) * 10**9, X[:BASELINE])
    return monitor


def _ramp_flags(X: np.ndarray, sensor: int, shift: float) -> np.ndarray:
    """Rows flagged once a slow ramp (10 minutes) has taken ``sensor`` to ``shift`` and held it there."""
    X = X.copy()
    start, ramp, hold = BASELINE + 1800, 600, 900
    X[start : start + ramp, sensor] += shift * np.arange(ramp) / ramp
    X[start + ramp : start + ramp + hold, sensor] += shift
    log = SensorLog(np.arange(X.shape[0], dtype=np.int64) * 10**9, [], SENSORS, X)
    config = dataclasses.replace(MonitorConfig(), recalibrate=False)
    result = run_backtest(log, train_rows=BASELINE, config=config)
    return result.anomaly[start + ramp + 60 : start + ramp + hold]


def test_a_slow_shift_of_the_size_it_names_is_flagged_and_half_of_it_is_not() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(BASELINE + 4000, len(SENSORS)))
    shifts = _monitor(X, dataclasses.replace(MonitorConfig(), recalibrate=False)).smallest_shifts()
    assert shifts is not None and shifts.sensors == SENSORS
    # Independent unit-noise sensors: a level of 15 readings varies by 1/sqrt(15); the alarm sits many
    # of those out, so a few noise widths, the same up and down.
    assert np.all((shifts.up > 1.0) & (shifts.up < 6.0)) and np.allclose(shifts.up, shifts.down, rtol=0.25)
    assert _ramp_flags(X, 1, 1.5 * shifts.up[1]).mean() > 0.9
    assert _ramp_flags(X, 1, 0.5 * shifts.up[1]).mean() < 0.1


def test_a_higher_alarm_level_needs_a_larger_shift() -> None:
    rng = np.random.default_rng(6)
    monitor = _monitor(rng.normal(size=(BASELINE, len(SENSORS))))
    model, feedback = monitor.model_, monitor.feedback_
    assert model is not None and feedback is not None
    columns = level_columns(len(SENSORS), monitor.config.column_features, model.columns)
    ranges = model.expected_high - model.expected_low
    low, high = (
        smallest_shifts(model.detector, model.calibrator, level, feedback.baseline, columns, ranges, SENSORS)
        for level in (8.0, 14.0)
    )
    assert low is not None and high is not None
    assert np.all(high.up > low.up) and np.all(high.down > low.down)


def test_a_sensor_judged_only_by_how_it_moves_has_no_shift() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(BASELINE, len(SENSORS)))
    X[:, 3] += np.cumsum(rng.normal(0.0, 0.3, size=BASELINE))  # wanders on its own: a drifting sensor
    monitor = _monitor(X)
    assert monitor.drifting_sensors == ("d",)
    shifts = monitor.smallest_shifts()
    assert shifts is not None
    assert shifts.as_dict()["d"] == {"up": None, "down": None}
    assert all(value is not None for name in "abc" for value in shifts.as_dict()[name].values())
    assert "d not by its level" in shifts.describe() and "a +" in shifts.describe()


def test_none_before_a_baseline_and_worked_out_once_per_model_and_level_by_the_scoring_thread() -> None:
    rng = np.random.default_rng(8)
    monitor = AssetMonitor("pump", dataclasses.replace(MonitorConfig(), baseline_rows=BASELINE), SENSORS)
    assert monitor.smallest_shifts() is None
    monitor.process_arrays(np.arange(BASELINE, dtype=np.int64) * 10**9, rng.normal(size=(BASELINE, 4)))
    assert monitor.smallest_shifts(work_out=False) is None  # /healthz never does the work itself
    first = monitor.smallest_shifts()
    assert first is not None and monitor.smallest_shifts() is first
    assert monitor.smallest_shifts(work_out=False) is first


def test_level_columns_follow_the_model_columns() -> None:
    # two sensors x (level, spread), sensor-major; the model dropped sensor 1's level column
    kept = np.array([True, True, False, True])
    assert level_columns(2, ("level", "spread"), kept) == [[0], []]
    assert level_columns(2, ("level", "spread"), None) == [[0], [2]]
    assert level_columns(3, ("raw",), None) == [[0], [1], [2]]


def test_the_searches_run_together_find_what_each_finds_alone() -> None:
    # A low alarm level: some searches reach it at the grid's first step, others are bisected, and a
    # drifting sensor has none. Run in step they must give each sensor what its own search gives.
    rng = np.random.default_rng(9)
    X = rng.normal(size=(BASELINE, len(SENSORS)))
    X[:, 3] += np.cumsum(rng.normal(0.0, 0.3, size=BASELINE))
    X[:, 1] *= 40.0
    X[:, 2] = np.round(X[:, 2] / 8.0)  # nearly always 0: no range, found at the grid's first step
    monitor = _monitor(X)
    model, feedback = monitor.model_, monitor.feedback_
    assert model is not None and feedback is not None
    columns = level_columns(len(SENSORS), monitor.config.column_features, model.columns)
    ranges = model.expected_high - model.expected_low
    for level in (0.5, 3.0, 12.0):
        together = smallest_shifts(model.detector, model.calibrator, level, feedback.baseline, columns, ranges, SENSORS)
        assert together is not None
        for j in range(len(SENSORS)):
            only = [c if k == j else [] for k, c in enumerate(columns)]
            alone = smallest_shifts(model.detector, model.calibrator, level, feedback.baseline, only, ranges, SENSORS)
            assert alone is not None
            assert (alone.up[j], alone.down[j]) == (together.up[j], together.down[j])
