"""Operator feedback: alert rows marked a false alarm are learned as normal (detector/feedback.py)."""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.alert_rate import surprise_at_probability
from detector.baseline import fit_models
from detector.config import MonitorConfig
from detector.feedback import FEEDBACK_MAX_RAISE, AlertRows
from detector.monitor import AssetMonitor

ROOT = Path(__file__).resolve().parent.parent
SENSORS = ("a", "b", "c", "d")


def test_a_marked_behaviour_stops_alerting_and_a_fault_on_another_sensor_still_alerts() -> None:
    bench: dict[str, Any] = runpy.run_path(str(ROOT / "bench" / "feedback.py"))
    behaviour, fault = bench["run"](2.0, 3, 4)  # a step of 2 noise widths, seed 3, four repeats
    assert behaviour[0] == 1  # absent from the baseline: it alerts once ...
    assert behaviour[1:] == [0, 0, 0]  # ... is marked, and does not alert again
    assert fault >= 1  # the same step on another sensor, never marked, still alerts


def _warm(seed: int = 0, rows: int = 1000) -> tuple[AssetMonitor, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rows + 600
    X = rng.normal(size=(n, len(SENSORS)))
    X[rows + 200 : rows + 400, 1] += 4.0  # a step the baseline never saw
    ts = np.arange(n, dtype=np.int64) * 10**9
    monitor = AssetMonitor("pump", MonitorConfig(baseline_rows=rows), SENSORS)
    out = monitor.process_arrays(ts, X)
    assert out.anomaly[rows + 200 : rows + 400].any()
    return monitor, ts, X


def test_true_fault_rows_are_never_learned_and_unmarked_periods_change_nothing() -> None:
    monitor, ts, _ = _warm()
    model = monitor.model_
    assert monitor.learn_false_alarm(int(ts[0]), int(ts[999])) == 0  # no alert rows there
    assert monitor.model_ is model
    dropped = monitor.mark_true_fault(int(ts[1000]), int(ts[-1]))
    assert dropped > 100
    assert monitor.learn_false_alarm(int(ts[1000]), int(ts[-1])) == 0  # gone for good
    assert monitor.model_ is model


def test_learning_a_false_alarm_refits_raises_the_level_and_survives_a_restart() -> None:
    monitor, ts, X = _warm()
    before = monitor.alarm_enter
    learned = monitor.learn_false_alarm(int(ts[1000]), int(ts[-1]))
    assert learned > 100 and monitor.refits_ == 1
    assert monitor.feedback_ is not None and monitor.feedback_.marked.shape[0] == learned
    assert monitor.alarm_enter == monitor.alarm_.enter >= before
    restored = AssetMonitor("pump", monitor.config, SENSORS).set_state(monitor.get_state())
    assert restored.alarm_.enter == monitor.alarm_.enter
    assert restored.feedback_ is not None
    assert np.array_equal(restored.feedback_.marked, monitor.feedback_.marked)
    repeat = X[1200:1400].copy()  # the same step again
    later = ts[-1] + 10**9 * (1 + np.arange(200))
    assert not monitor.process_arrays(later, repeat).anomaly.any()


def test_feedback_needs_a_learned_baseline_kept_since_feedback_existed() -> None:
    cold = AssetMonitor("pump", MonitorConfig(baseline_rows=1000), SENSORS)
    with pytest.raises(ValueError, match="no learned baseline"):
        cold.learn_false_alarm(0, 1)
    monitor, _, _ = _warm()
    state = {k: v for k, v in monitor.get_state().items() if not k.startswith("feedback/")}
    old = AssetMonitor("pump", monitor.config, SENSORS).set_state(state)
    with pytest.raises(ValueError, match="saved before feedback was kept; relearn its baseline"):
        old.learn_false_alarm(0, 1)


def test_alert_rows_keep_the_newest_and_hand_out_a_period_once() -> None:
    rows = AlertRows.empty(2)
    rows.add(np.arange(5, dtype=np.int64), np.arange(10.0).reshape(5, 2), capacity=4)
    assert rows.ts.tolist() == [1, 2, 3, 4]
    ts, F = rows.take(2, 3)
    assert ts.tolist() == [2, 3] and F.tolist() == [[4.0, 5.0], [6.0, 7.0]]
    assert rows.ts.tolist() == [1, 4] and rows.take(2, 3)[0].size == 0


def test_rows_known_normal_are_learned_by_every_model_and_never_calibrated() -> None:
    rng = np.random.default_rng(1)
    F, normal = rng.normal(size=(500, 3)), rng.normal(size=(50, 3)) + 5.0
    config = dataclasses.replace(MonitorConfig(), detector="robust_z")
    fitted = fit_models(F, config, normal=normal)
    assert fitted.calibration_scores is not None and fitted.calibration_scores.size == 500
    plain = fit_models(F, config)
    # the detector learned the shifted rows: it finds them less unusual than one that did not
    assert fitted.detector.score(normal).mean() < plain.detector.score(normal).mean()


def test_one_mistaken_mark_cannot_silence_the_asset() -> None:
    rng = np.random.default_rng(4)
    n = 1000 + 1200
    X = rng.normal(size=(n, len(SENSORS)))
    X[1200:1400, 1] += 1000.0  # a huge fault, marked a false alarm by mistake
    X[1800:2000, 2] += 3.0  # a fault of three noise widths on another sensor, later
    ts = np.arange(n, dtype=np.int64) * 10**9
    monitor = AssetMonitor("pump", MonitorConfig(baseline_rows=1000), SENSORS)
    monitor.process_arrays(ts[:1600], X[:1600])
    assert monitor.model_ is not None
    derived = monitor.model_.alarm_enter(monitor.config)
    assert monitor.learn_false_alarm(int(ts[1000]), int(ts[1599])) > 100
    # the level rose at most FEEDBACK_MAX_RAISE nats above the derived one ...
    assert surprise_at_probability(monitor.alarm_enter) <= surprise_at_probability(derived) + FEEDBACK_MAX_RAISE + 1e-6
    # ... so the later fault elsewhere still alerts
    assert monitor.process_arrays(ts[1600:], X[1600:]).anomaly[200:400].mean() > 0.5


def test_feedback_is_refused_while_the_asset_adapts() -> None:
    rng = np.random.default_rng(5)
    X, ts = rng.normal(size=(1100, len(SENSORS))), np.arange(1100, dtype=np.int64) * 10**9
    monitor = AssetMonitor("pump", MonitorConfig(baseline_rows=1000, adapt=True), SENSORS)
    monitor.process_arrays(ts, X)
    with pytest.raises(ValueError, match="feedback is learned only without adapt"):
        monitor.learn_false_alarm(0, int(ts[-1]))
