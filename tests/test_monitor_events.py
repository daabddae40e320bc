"""AssetMonitor.observe: verdicts plus events (what the service logs, counts and saves on)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detector.config import MonitorConfig
from detector.events import (
    BaselineFailed,
    BaselineLearned,
    Event,
    LeftOut,
    ModelRefitted,
    SensorsRediscovered,
    UnknownSensors,
)
from detector.monitor import AssetMonitor

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC
SENSORS = ("a", "b", "c")

Readings = list[tuple[int, Mapping[str, float]]]


def _frames(n: int, sensors: Sequence[str] = SENSORS, start: int = 0, seed: int = 0) -> Readings:
    """One reading per second holding every sensor, from instant ``start``."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1, (n, len(sensors))) + np.arange(len(sensors))
    return [(T0 + (start + i) * SEC, dict(zip(sensors, row.tolist(), strict=True))) for i, row in enumerate(values)]


def _of(kind: type, events: Sequence[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_a_silent_sensor_before_the_baseline_yields_one_rediscovery_event_naming_it() -> None:
    m = AssetMonitor("mixer", MonitorConfig(baseline_rows=50))  # 10 s staleness: rediscovery after 100 s
    readings = _frames(200)
    readings[1] = (readings[1][0], {**readings[1][1], "debug": 1.0})  # a one-off key in the first readings
    events = [e for start in range(0, 200, 30) for e in m.observe(readings[start : start + 30]).events]
    (rediscovered,) = _of(SensorsRediscovered, events)
    assert rediscovered.silent == ("debug",) and rediscovered.waited_ns == 100 * SEC
    assert m.sensor_names == SENSORS and m.rediscoveries_ == 1
    (learned,) = _of(BaselineLearned, events)  # learned from the sensors that report, after it
    assert m.is_warm and learned.drifting_sensors == m.drifting_sensors


def test_rows_of_the_abandoned_sensor_set_are_dropped_with_it() -> None:
    # c reports for a minute, then dies, all inside one call: the rows with c must not join the
    # baseline of the rediscovered set (two-sensor rows would not stack with three-sensor ones).
    m = AssetMonitor("mixer", MonitorConfig(baseline_rows=100))
    readings = _frames(60) + _frames(400, ("a", "b"), start=60, seed=1)
    observed = m.observe(readings)
    assert len(_of(SensorsRediscovered, observed.events)) == 1
    assert m.sensor_names == ("a", "b")
    assert observed.rows and all(row.shape == (2,) for _, row in observed.rows)
    assert len(observed.verdicts) == len(observed.rows) and m.is_warm


def test_an_unknown_sensor_is_reported_once_with_its_values_counted_every_time() -> None:
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=50), SENSORS)
    m.observe(_frames(60))
    extra = [(t, {**values, "vibration": 0.3}) for t, values in _frames(20, start=60)]
    first, second = m.observe(extra[:10]), m.observe(extra[10:])
    assert _of(UnknownSensors, first.events) == [UnknownSensors(("vibration",))]
    assert _of(UnknownSensors, second.events) == []  # named once
    assert [e.unknown_values for e in _of(LeftOut, first.events + second.events)] == [10, 10]
    assert m.unknown_sensors == {"vibration"} and len(second.verdicts) == 10


def test_left_out_counts_late_readings_incomplete_rows_and_skipped_rows() -> None:
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=50, max_staleness_ns=2 * SEC), SENSORS)
    assert not _of(LeftOut, m.observe(_frames(60)).events)  # nothing left out: no event
    later = _frames(20, start=60)
    later.insert(5, (T0 + 50 * SEC, {"a": 1.0}))  # late: before the newest instant
    later[8] = (later[8][0], {"a": float("nan"), "b": 1.0, "c": 2.0})  # a row that cannot be scored
    for i in range(12, 17):  # c silent for 5 s: its value is stale after 2 s
        later[i + 1] = (later[i + 1][0], {k: v for k, v in later[i + 1][1].items() if k != "c"})
    (left,) = _of(LeftOut, m.observe(later).events)
    assert (left.unknown_values, left.late_readings, left.skipped_rows) == (0, 1, 1)
    assert left.incomplete_rows == 3  # instants 3, 4 and 5 of the silence: c's value older than 2 s
    assert m.intake.counts().late_readings == 1 and m.skipped_rows_ == 1


def test_what_a_replaced_aligner_left_out_is_still_counted() -> None:
    # Incomplete instants before a rediscovery belong to the aligner it replaces: counted all the same.
    m = AssetMonitor("mixer", MonitorConfig(baseline_rows=50))
    readings = _frames(200)
    readings[1] = (readings[1][0], {**readings[1][1], "debug": 1.0})
    observed = m.observe(readings)
    (left,) = _of(LeftOut, observed.events)
    assert left.incomplete_rows == m.intake.counts().incomplete_rows > 100


def test_baseline_failures_and_refits_are_events() -> None:
    failing = AssetMonitor("pump", MonitorConfig(baseline_rows=12, detector="knn"), SENSORS)
    failed = _of(BaselineFailed, failing.observe(_frames(30)).events)
    assert len(failed) == 2 and failing.baseline_failures_ == 2  # rows 0-11 and 12-23
    assert "n_neighbors" in failed[0].cause and failed[-1] == failing.baseline_failure_
    assert failed[0].message.startswith("asset 'pump': learning the baseline from 12 rows failed (")
    adapting = AssetMonitor("pump", MonitorConfig(baseline_rows=50, adapt=True, adapt_every=40), SENSORS)
    events = adapting.observe(_frames(200)).events
    assert len(_of(BaselineLearned, events)) == 1
    assert [e.refits for e in _of(ModelRefitted, events)] == [1, 2, 3] == list(range(1, adapting.refits_ + 1))


def test_observe_gives_the_verdicts_of_feeding_one_reading_at_a_time() -> None:
    readings = _frames(150)
    one_by_one = AssetMonitor("pump", MonitorConfig(baseline_rows=50))
    expected = [v for ts, values in readings for v in one_by_one.feed(ts, values)]
    batched = AssetMonitor("pump", MonitorConfig(baseline_rows=50))
    assert [v for k in range(0, 150, 17) for v in batched.observe(readings[k : k + 17]).verdicts] == expected


def test_each_scored_verdict_carries_the_alarm_level_it_was_judged_by() -> None:
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=50))
    verdicts = m.observe(_frames(150)).verdicts
    warming = [v for v in verdicts if v.warming_up]
    scored = [v for v in verdicts if not v.warming_up]
    assert warming and scored
    assert {v.alarm_enter for v in warming} == {None}
    assert {v.alarm_enter for v in scored} == {m.alarm_enter} and 0.5 < m.alarm_enter < 1
