"""Recalibration: the alarm level rises when live normal scores have a heavier tail (detector/recalibration.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from detector.calibration import EmpiricalCalibrator
from detector.config import MonitorConfig
from detector.memory import NormalMemory
from detector.monitor import AssetMonitor
from detector.recalibration import RECALIBRATION_MEMORY, Recalibration, rising

CONFIG = MonitorConfig(baseline_rows=1000)


def _recalibration(baseline: np.ndarray) -> Recalibration:
    return Recalibration(baseline, NormalMemory(RECALIBRATION_MEMORY * CONFIG.baseline_rows, 1))


def test_rows_near_an_alert_are_not_learned() -> None:
    recal = _recalibration(np.zeros(10))
    scores = np.arange(20, dtype=float)
    flags = np.zeros(20, dtype=bool)
    flags[10:12] = True  # an alert on rows 10 and 11
    recal.learn(scores, flags, guard=3)
    # rows 0..9 waited for 3 newer rows; 7, 8, 9 were still waiting when the alert opened: dropped.
    # After the alert: rows 12, 13, 14 are its guard; 15..19 wait (the last 3 still pending).
    assert sorted(recal.memory.in_time_order().ravel().tolist()) == [0, 1, 2, 3, 4, 5, 6, 15, 16]
    assert recal.pending == [17.0, 18.0, 19.0]
    assert recal.since_refit == 20


def test_a_batch_with_no_alert_near_it_is_learned_as_one_row_at_a_time_would_be() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        guard, waiting = int(rng.integers(0, 8)), int(rng.integers(0, 12))  # waiting > guard: a longer guard before
        scores = rng.normal(size=int(rng.integers(0, 20)))
        scores[rng.random(scores.size) < 0.2] = np.nan
        recal = _recalibration(np.zeros(10))
        recal.pending = rng.normal(size=waiting).tolist()
        pending, learned = list(recal.pending), []
        for score in scores.tolist():  # the rule, one row at a time
            if np.isfinite(score):
                pending.append(score)
                if len(pending) > guard:
                    learned.append(pending.pop(0))
        recal.learn(scores, np.zeros(scores.size, dtype=bool), guard)
        assert recal.pending == pending and recal.memory.in_time_order().ravel().tolist() == learned
        assert recal.since_refit == scores.size


def test_learning_in_pieces_remembers_what_learning_at_once_does() -> None:
    rng = np.random.default_rng(1)
    scores = rng.exponential(size=500)
    flags = scores > 3.0
    whole, pieces = _recalibration(np.zeros(5)), _recalibration(np.zeros(5))
    whole.learn(scores, flags, guard=7)
    for part in np.array_split(np.arange(500), 13):
        pieces.learn(scores[part], flags[part], guard=7)
    assert np.array_equal(whole.memory.in_time_order(), pieces.memory.in_time_order())
    assert whole.pending == pieces.pending and whole.guard_left == pieces.guard_left


def test_a_heavier_live_tail_raises_the_level_and_a_lighter_one_leaves_it() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.exponential(size=1000)
    calibrator = EmpiricalCalibrator().fit(baseline)
    enter = 0.99999
    heavier = _recalibration(baseline)
    heavier.learn(3.0 * rng.exponential(size=5000), np.zeros(5000, dtype=bool), guard=0)
    raised = heavier.refit(CONFIG, calibrator, enter)
    assert raised > enter
    lighter = _recalibration(baseline)
    lighter.learn(0.5 * rng.exponential(size=5000), np.zeros(5000, dtype=bool), guard=0)
    assert lighter.refit(CONFIG, calibrator, enter) < enter  # the monitor keeps the higher of the two
    assert heavier.since_refit == 0


def test_climbing_scores_are_wear_not_a_heavier_tail() -> None:
    rng = np.random.default_rng(3)
    assert rising(np.linspace(0, 5, 600) + rng.normal(0, 0.3, 600))
    assert not rising(rng.normal(size=600))
    assert not rising(np.arange(3.0))  # too few to judge
    baseline = rng.exponential(size=1000)
    recal = _recalibration(baseline)
    recal.learn(np.linspace(0, 30, 3000), np.zeros(3000, dtype=bool), guard=0)
    assert recal.refit(CONFIG, EmpiricalCalibrator().fit(baseline), 0.99999) == 0.0


def _independent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(n, dtype=np.int64) * 10**9, rng.normal(size=(n, 4))


def test_the_monitor_raises_only_its_alarm_level_and_keeps_it_across_a_restart() -> None:
    ts, X = _independent(6000, seed=4)
    X[1000:, 0] *= 1.6  # live rows vary more than the baseline's: a heavier tail, the same mean
    sensors = ("a", "b", "c", "d")
    monitor = AssetMonitor("pump", CONFIG, sensors)
    monitor.process_arrays(ts[:3500], X[:3500])
    model = monitor.model_
    assert model is not None and monitor.recalibrations_ >= 2
    assert monitor.recalibration_ is not None and monitor.recalibration_.enter_ > model.alarm_enter(CONFIG)
    assert monitor.alarm_.enter == monitor.alarm_enter == monitor.recalibration_.enter_
    restored = AssetMonitor("pump", CONFIG, sensors).set_state(monitor.get_state())
    assert restored.alarm_.enter == monitor.alarm_.enter
    rest = monitor.process_arrays(ts[3500:], X[3500:])
    again = restored.process_arrays(ts[3500:], X[3500:])
    assert np.array_equal(rest.anomaly, again.anomaly) and restored.alarm_.enter == monitor.alarm_.enter
    # the calibrator (and the probabilities it reports) are the baseline's
    assert monitor.model_ is model
    off = AssetMonitor("pump", dataclasses.replace(CONFIG, recalibrate=False), sensors)
    off.process_arrays(ts, X)
    assert off.recalibration_ is None and off.alarm_.enter == model.alarm_enter(CONFIG)


def test_adaptation_turns_recalibration_off() -> None:
    assert not dataclasses.replace(CONFIG, adapt=True).recalibrates
    assert CONFIG.recalibrates
