"""The alarm level derived from ``false_alerts_per_week`` (detector/alert_rate.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from detector.alarm import HysteresisAlarm
from detector.alert_rate import (
    MIN_ALERTS,
    WEEK_S,
    AlertRate,
    measure_rho,
    median_interval_s,
    probability_at_surprise,
    surprise_at_probability,
)
from detector.calibration import EmpiricalCalibrator
from detector.config import MonitorConfig
from detector.monitor import AssetMonitor


def _calibrated(scores: np.ndarray) -> EmpiricalCalibrator:
    return EmpiricalCalibrator().fit(scores)


def test_the_level_is_the_surprise_met_once_per_target_among_a_weeks_alert_starts() -> None:
    rate = AlertRate(rho=0.05, sample_s=1.0)
    level = rate.surprise_level(1.0)
    assert level == pytest.approx(math.log(0.05 * WEEK_S))
    # ten times the alerts allowed: the level is ln(10) lower; five-minute samples: ln(300) lower
    assert rate.surprise_level(10.0) == pytest.approx(level - math.log(10.0))
    assert AlertRate(0.05, 300.0).surprise_level(1.0) == pytest.approx(level - math.log(300.0))
    # as a probability: 1 - e^-level in the ordinary range
    assert rate.enter(1.0, floor=0.5) == pytest.approx(1.0 - math.exp(-level))


def test_the_level_never_falls_below_enter_nor_below_one_row() -> None:
    slow = AlertRate(rho=1.0, sample_s=86_400.0)  # daily samples: 7 rows a week
    assert slow.surprise_level(100.0) == 0.0  # more alerts allowed than rows: every row may alert
    assert slow.enter(100.0, floor=0.995) == 0.995
    assert probability_at_surprise(30.0) < 1.0  # the saturation rule: never 1.0, still increasing
    assert probability_at_surprise(30.0) > probability_at_surprise(20.0)


def test_rho_counts_alerts_per_exceeding_row_of_the_alarm_rule_itself() -> None:
    rng = np.random.default_rng(3)
    independent = rng.exponential(size=20_000)
    alarm = HysteresisAlarm(0.995, 0.9, min_duration=1, exit_duration=1)
    # independent scores, one-row alerts: nearly every exceeding row opens its own alert
    assert measure_rho(independent, _calibrated(independent), alarm) == pytest.approx(1.0, abs=0.2)
    # every score repeated 20 times in a row: one alert per run of 20 exceeding rows
    clustered = np.repeat(independent[:1_000], 20)
    rho = measure_rho(clustered, _calibrated(clustered), alarm)
    assert 1 / 40 < rho < 1 / 10
    # longer minimum durations open fewer alerts per exceeding row on scores that jump about
    longer = measure_rho(independent, _calibrated(independent), HysteresisAlarm(0.995, 0.9, min_duration=2))
    assert longer < 0.5


def test_rho_is_the_bound_when_the_baseline_is_too_short_to_count_alerts() -> None:
    few = np.arange(float(MIN_ALERTS))  # a rising ramp: one alert at most, whatever the level
    assert measure_rho(few, _calibrated(few), HysteresisAlarm()) == 1.0
    assert measure_rho(np.full(5, np.nan), _calibrated(np.arange(5.0)), HysteresisAlarm()) == 1.0


def test_the_sampling_interval_is_the_median_step_between_distinct_stamps() -> None:
    ts = np.array([0, 0, 2, 4, 6, 100], dtype=np.int64) * 10**9
    assert median_interval_s(ts) == 2.0
    assert median_interval_s(ts[:1]) == 1.0


def _monitor(config: MonitorConfig, seed: int = 0) -> tuple[AssetMonitor, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = config.baseline_rows + 200
    ts = np.arange(n, dtype=np.int64) * 10**9
    X = rng.normal(size=(n, 3))
    monitor = AssetMonitor("pump", config, ("a", "b", "c"))
    monitor.process_arrays(ts, X)
    return monitor, ts, X


def test_a_learned_monitor_alarms_at_the_derived_level_and_restores_it() -> None:
    config = MonitorConfig(baseline_rows=600)
    cold = AssetMonitor("pump", config, ("a", "b", "c"))
    assert cold.alarm_enter == config.enter  # nothing learned yet
    monitor, _, _ = _monitor(config)
    model = monitor.model_
    assert model is not None
    expected = model.alert_rate.enter(1.0, config.enter)
    assert monitor.alarm_enter == expected == monitor.alarm_.enter
    assert expected > 0.9999  # once a week at 1 Hz lies far beyond enter=0.995
    assert 0.0 < model.alert_rate.rho <= 1.0 and model.alert_rate.sample_s == 1.0
    restored = AssetMonitor("pump", config, ("a", "b", "c")).set_state(monitor.get_state())
    assert restored.alarm_.enter == expected
    # the target is not a model setting: the same saved model serves another target
    ten = AssetMonitor("pump", dataclasses.replace(config, false_alerts_per_week=10.0), ("a", "b", "c"))
    ten.set_state(monitor.get_state())
    assert ten.alarm_.enter == pytest.approx(1.0 - math.exp(-model.alert_rate.surprise_level(10.0)))
    assert ten.alarm_.enter < expected


def test_without_a_target_enter_is_the_level_as_before() -> None:
    config = MonitorConfig(baseline_rows=600, false_alerts_per_week=None)
    monitor, _, _ = _monitor(config)
    assert monitor.alarm_enter == monitor.alarm_.enter == 0.995


def test_a_model_saved_before_the_level_was_derived_takes_the_conservative_bound() -> None:
    config = MonitorConfig(baseline_rows=600)
    monitor, _, _ = _monitor(config)
    state = monitor.get_state()
    del state["alert_rate"]
    restored = AssetMonitor("pump", config, ("a", "b", "c")).set_state(state)
    assert restored.model_ is not None
    assert restored.model_.alert_rate == AlertRate(1.0, 1.0)  # window 15 s / 15 samples
    assert restored.alarm_.enter > monitor.alarm_.enter  # rho 1 is the highest level


def test_a_target_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="false_alerts_per_week must be > 0"):
        MonitorConfig(false_alerts_per_week=0.0)


def test_a_detector_whose_scores_stop_growing_keeps_a_level_it_can_reach_and_says_so() -> None:
    rng = np.random.default_rng(1)
    n = 3600 + 600
    X = rng.normal(size=(n, 8))
    X[3900:4200, 1] += 100.0  # far outside the baseline on one sensor
    ts = np.arange(n, dtype=np.int64) * 10**9
    sensors = tuple("abcdefgh")
    bounded = AssetMonitor("pump", MonitorConfig(baseline_rows=3600, detector="iforest"), sensors)
    out = bounded.process_arrays(ts, X)
    assert bounded.alarm_enter == 0.995  # the floor: far rows never reach the derived level
    assert out.anomaly[3900:4200].any()
    advice = bounded.baseline_advice()
    assert advice is not None and "'iforest' stops scoring rows higher" in advice
    growing = AssetMonitor("pump", MonitorConfig(baseline_rows=3600), sensors)
    growing.process_arrays(ts, X)
    assert growing.model_ is not None and growing.model_.alert_rate.cap(0.995) == 1.0
    assert growing.alarm_enter > 0.9999 and growing.capped_advice() is None


def test_the_surprise_of_a_probability_inverts_the_saturation_rule() -> None:
    for level in (1.0, 10.0, 13.0, 20.0, 40.0):
        assert surprise_at_probability(probability_at_surprise(level)) == pytest.approx(level, rel=1e-6)
