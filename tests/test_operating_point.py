"""An anomalous row at an operating point the baseline never covered is said to be one, not a fault."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from detector.types import Explanation

SENSORS = ("flow", "pressure", "current", "speed", "vibration", "voltage")
BASELINE = 600
CHANGE = 900  # the row the plant changes at


def pump(n: int = 1500, seed: int = 3, new_load: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A pump whose load swings between 0.5 and 0.7 of full (the baseline's operating range), and from
    ``CHANGE`` on ramps to ``new_load``. Five sensors follow the load, some of them along curves
    (pressure with its square, current with its cube); the supply voltage follows nothing."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    load = 0.6 + 0.1 * np.sin(2 * np.pi * t / 200)
    if new_load is not None:
        ramp = load[CHANGE] + (new_load - load[CHANGE]) * np.clip((t[CHANGE:] - CHANGE) / 60, 0, 1)
        load[CHANGE:] = ramp
    X = np.column_stack(
        [
            120 * load + rng.normal(0, 0.8, n),
            3 * load**2 + rng.normal(0, 0.02, n),
            2 + 10 * load**3 + rng.normal(0, 0.05, n),
            1450 * load + rng.normal(0, 3, n),
            0.05 + 0.4 * load**2 + rng.normal(0, 0.005, n),
            230 + rng.normal(0, 1.0, n),
        ]
    )
    return (1_700_000_000 + t.astype(np.int64)) * 10**9, X


def explained(ts: np.ndarray, X: np.ndarray, **config: Any) -> tuple[np.ndarray, dict[int, Explanation]]:
    monitor = AssetMonitor("pump", MonitorConfig(baseline_rows=BASELINE, **config), SENSORS)
    out, explanations = monitor.process_explained(ts, X)
    assert not out.anomaly[:CHANGE].any()  # the baseline's own operating range is quiet
    return out.anomaly, explanations


def unseen_rows(explanations: dict[int, Explanation]) -> list[int]:
    return [row for row, why in sorted(explanations.items()) if why.unseen_operating_point]


def test_a_plant_moved_together_to_a_load_the_baseline_never_ran_is_an_unseen_operating_point() -> None:
    ts, X = pump(new_load=0.95)
    anomaly, explanations = explained(ts, X)
    assert anomaly[CHANGE + 120 :].all()  # the alarm still opens: only the explanation changes
    assert unseen_rows(explanations) == sorted(explanations)  # every alarmed row, from the first
    # what an operator reads: the levels of the sensors that follow the load, beyond the baseline
    why = explanations[1200].contributions
    levels = [c for c in why if c.feature == "level"]
    assert levels and all(not c.within_expected and c.direction == "high" for c in levels)


def test_a_lower_load_than_the_baseline_ever_ran_is_one_too() -> None:
    ts, X = pump(new_load=0.3)
    # the default alarm level, set for a week of running, lets this one pass: a lower one sees it
    anomaly, explanations = explained(ts, X, false_alerts_per_week=None)
    assert anomaly[CHANGE + 120 :].all()
    assert unseen_rows(explanations) == sorted(explanations)


def test_one_sensor_stepping_out_of_its_range_is_a_fault() -> None:
    ts, X = pump()
    X[CHANGE:, 0] += 15.0  # the flow meter reads high
    anomaly, explanations = explained(ts, X)
    assert anomaly[CHANGE + 20 :].mean() > 0.9
    assert unseen_rows(explanations) == []


def test_a_correlation_broken_inside_the_ranges_is_a_fault() -> None:
    ts, X = pump()
    X[CHANGE:, 0] = 120 * 1.2 - X[CHANGE:, 0]  # the flow falls as the load rises, within its range
    # the default alarm level, set for a week of running, lets this one pass: a lower one sees it
    anomaly, explanations = explained(ts, X, false_alerts_per_week=None)
    assert anomaly[CHANGE:].sum() > 200
    assert unseen_rows(explanations) == []


def test_sensors_sent_against_their_relations_beyond_their_ranges_are_a_fault() -> None:
    ts, X = pump()
    X[CHANGE:, [0, 2, 3]] *= 1.25  # flow, current and speed up by a quarter ...
    X[CHANGE:, [1, 4]] *= 0.75  # ... pressure and vibration down by one: no load does that
    anomaly, explanations = explained(ts, X)
    assert anomaly[CHANGE + 20 :].all()
    assert unseen_rows(explanations) == []


def test_other_detectors_judge_by_the_ranges_alone() -> None:
    ts, X = pump(new_load=0.95)
    _, explanations = explained(ts, X, detector="robust_z")
    settled = [row for row in explanations if row >= CHANGE + 120]
    assert settled and all(explanations[row].unseen_operating_point for row in settled)


def test_a_wandering_sensor_beyond_its_range_does_not_count() -> None:
    ts, X = pump()
    # the bearing temperature wanders with the weather in the baseline and far beyond it after
    wander = np.cumsum(np.random.default_rng(4).normal(0, 0.3, ts.size))
    wander[CHANGE:] += np.linspace(0, 40, ts.size - CHANGE)
    X = np.column_stack([X, 60 + wander])
    X[CHANGE:, 0] += 15.0  # and the flow meter reads high: two of seven beyond, one of them steady
    monitor = AssetMonitor("pump", MonitorConfig(baseline_rows=BASELINE), (*SENSORS, "bearing_temp"))
    out, explanations = monitor.process_explained(ts, X)
    assert monitor.drifting_sensors == ("bearing_temp",)
    assert out.anomaly[CHANGE + 20 :].mean() > 0.9
    assert unseen_rows(explanations) == []


def test_the_judgement_is_the_same_whatever_the_batches_and_reaches_the_verdicts() -> None:
    ts, X = pump(new_load=0.95)
    config = MonitorConfig(baseline_rows=BASELINE)
    _, whole = AssetMonitor("pump", config, SENSORS).process_explained(ts, X)
    split = AssetMonitor("pump", config, SENSORS)
    pieces: dict[int, Explanation] = {}
    for a, b in zip([0, 1, 599, 601, 950, 951, 1203], [1, 599, 601, 950, 951, 1203, ts.size], strict=True):
        pieces.update({a + row: why for row, why in split.process_explained(ts[a:b], X[a:b])[1].items()})
    assert pieces == whole and unseen_rows(whole)
    verdicts = AssetMonitor("pump", config, SENSORS).process(ts, X)
    assert {v.ts_ns for v in verdicts if v.unseen_operating_point} == {int(ts[row]) for row in unseen_rows(whole)}
    assert not any(v.unseen_operating_point for v in verdicts if not v.anomaly)


def test_the_alert_line_says_unseen_operating_point_before_its_sensors(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from alerts.model import Alert
    from detector.types import Contribution
    from plantwatch.service.alert_log import log_alert_event

    top = (Contribution("flow", 0.6, "high", 140.0, 60.0, 120.0, "level"),)
    alert = Alert.opened("pump-1", "anomaly", 0, "warning", 9.0, 0.99999, top, unseen_operating_point=True)
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        log_alert_event(SimpleNamespace(kind="opened", alert=alert))
        log_alert_event(SimpleNamespace(kind="opened", alert=dataclasses.replace(alert, unseen_operating_point=False)))
    first, second = caplog.messages
    assert "an operating point the baseline never saw; top sensors: flow level=140" in first
    assert "never saw" not in second
