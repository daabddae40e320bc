"""Detector math: alignment, robust scores, calibration, alarm rule, contributions, the monitor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.align import FrameAligner
from detector.config import MonitorConfig
from detector.detectors.robust import RobustZScore
from detector.monitor import SCORED, SKIPPED, WARMING_UP, AssetMonitor

SENSORS = tuple(f"s{i}" for i in range(8))
SEC = 1_000_000_000


def synthetic(n: int = 1200, *, seed: int = 0, fault: tuple[int, int, int, float] | None = None):
    """8 Gaussian sensors with different offsets/scales; optional step fault (sensor, start, stop, sigmas)."""
    rng = np.random.default_rng(seed)
    offsets = np.linspace(-50, 300, 8)
    scales = np.array([0.1, 1.0, 5.0, 0.02, 2.0, 10.0, 0.5, 3.0])
    X = offsets + scales * rng.standard_normal((n, 8))
    labels = np.zeros(n, dtype=bool)
    if fault is not None:
        sensor, start, stop, sigmas = fault
        X[start:stop, sensor] += sigmas * scales[sensor]
        labels[start:stop] = True
    ts = np.arange(n, dtype=np.int64) * SEC
    return ts, X, labels


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count half); local so the tests need not import scikit-learn (slow)."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


# -- FrameAligner ---------------------------------------------------------------------------


def test_aligner_emits_only_complete_fresh_rows() -> None:
    al = FrameAligner(["a", "b"], max_staleness_ns=5 * SEC)
    assert al.update(0, {"a": 1.0}) == []  # b never seen
    assert al.update(1 * SEC, {"b": 2.0}) == []  # closes t=0 (incomplete); a is not stamped at 1 s
    assert al.incomplete_rows_ == 1
    # t=10 s closes t=1 s: a carried forward (1 s old) is fresh enough.
    rows = al.update(10 * SEC, {"b": 3.0})
    assert [(t, r.tolist()) for t, r in rows] == [(1 * SEC, [1.0, 2.0])]
    # t=11 s closes t=10 s: a is 10 s old there, too stale.
    assert al.update(11 * SEC, {"a": 4.0}) == []
    assert al.incomplete_rows_ == 2
    rows = al.flush()
    assert [(t, r.tolist()) for t, r in rows] == [(11 * SEC, [4.0, 3.0])]
    assert al.rows_emitted_ == 2 and al.flush() == []


def test_aligner_staleness_bound_is_inclusive() -> None:
    al = FrameAligner(["a", "b"], max_staleness_ns=5)
    al.update(0, {"a": 1.0})
    al.update(5, {"b": 1.0})
    assert len(al.update(6, {"b": 1.0})) == 1  # closes t=5: a exactly max_staleness old, usable
    assert al.flush() == []  # t=6: a is 6 ns old
    assert al.incomplete_rows_ == 2  # t=0 and t=6


def test_aligner_drops_late_readings_without_crashing() -> None:
    al = FrameAligner(["a"], max_staleness_ns=SEC)
    assert len(al.update(10, {"a": 1.0})) == 1  # complete at its own instant: immediate
    assert al.update(5, {"a": 99.0}) == []
    assert al.late_readings_ == 1
    # The late value was not stored: the next row carries a fresh value, not 99.
    rows = al.update(11, {"a": 2.0})
    assert len(rows) == 1 and rows[0][1].tolist() == [2.0]
    # Same instant as the last row: merged, no second row for that timestamp.
    assert al.update(11, {"a": 3.0}) == []
    assert al.merged_readings_ == 1 and al.late_readings_ == 1


def test_aligner_discovers_sensors_and_ignores_new_ones_afterwards() -> None:
    al = FrameAligner(max_staleness_ns=SEC, discovery_ns=0)
    assert al.update(0, {"z": 1.0, "a": 2.0}) == []  # discovery: buffered
    assert al.discovering
    rows = al.update(1, {"a": 3.0, "z": 4.0, "new": 7.0})  # ends discovery, replays t=0
    assert al.sensors_ == ("a", "z")  # sorted: independent of payload key order
    assert [(t, r.tolist()) for t, r in rows] == [(0, [2.0, 1.0]), (1, [3.0, 4.0])]
    assert al.unknown_values_ == 1


def test_aligner_rows_are_copies() -> None:
    al = FrameAligner(["a"], max_staleness_ns=SEC)
    first = al.update(0, {"a": 1.0})
    al.update(1, {"a": 2.0})
    assert first[0][1][0] == 1.0


# -- RobustZScore ---------------------------------------------------------------------------


def test_robust_scale_fallbacks() -> None:
    n = 101
    mostly_constant = np.zeros(n)
    mostly_constant[:30] = 1.0  # MAD = 0; a real step that 30 % of the rows take
    rare_spike = np.zeros(n)
    rare_spike[0] = 10.0  # MAD = 0, winsorised std = 0, IQR = 0, std > 0
    X = np.column_stack([np.arange(n, dtype=float), mostly_constant, rare_spike, np.full(n, 5.0)])
    det = RobustZScore(eps=1e-6).fit(X)
    assert det.scale_[0] == pytest.approx(np.median(np.abs(np.arange(n) - 50)) * 1.4826)
    assert det.scale_[1] == pytest.approx(np.std(mostly_constant))
    assert det.scale_[2] == pytest.approx(np.std(rare_spike))
    assert det.scale_[3] == 1e-6
    assert det.median_.tolist() == [50.0, 0.0, 0.0, 5.0]


def test_robust_scale_of_a_quantised_sensor_is_its_step_not_its_jitter() -> None:
    # A flow meter that reads whole l/min with 1e-3 jitter, 60 % of the time on 32: MAD ~ jitter.
    rng = np.random.default_rng(3)
    steps = rng.choice([31.0, 32.0, 33.0], size=600, p=[0.2, 0.6, 0.2])
    flow = steps + rng.normal(0.0, 1e-3, size=600)
    det = RobustZScore().fit(flow[:, None])
    assert det.scale_[0] == pytest.approx(np.std(steps), rel=0.05)  # ~0.63, not ~1e-3
    z = det.contributions(np.array([[31.0]]))[0, 0]
    assert -3.0 < z < -1.0  # an ordinary step down is an ordinary deviation


def test_robust_scale_ignores_a_few_spikes() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 1.0, size=1000)
    x[::200] = 1e6  # five spikes, 0.5 % of the rows
    det = RobustZScore().fit(x[:, None])
    assert 0.9 < det.scale_[0] < 1.2


def test_robust_score_is_rms_of_signed_z() -> None:
    _, X, _ = synthetic(500)
    det = RobustZScore().fit(X)
    z = det.contributions(X[:10])
    assert np.allclose(det.score(X[:10]), np.sqrt((z**2).mean(axis=1)))
    # Signed: pushing sensor 2 above its median gives positive z there.
    row = det.median_.copy()
    row[2] += 4 * det.scale_[2]
    assert det.contributions(row[None, :])[0, 2] == pytest.approx(4.0)


def test_robust_detector_finds_step_fault_and_names_the_sensor() -> None:
    ts, X, labels = synthetic(1200, seed=1, fault=(3, 800, 1000, 6.0))
    mon = AssetMonitor("pump", MonitorConfig(baseline_rows=400, detector="robust_z", features=None), SENSORS)
    out = mon.process_arrays(ts, X)
    scored = out.status == SCORED
    assert roc_auc(labels[scored], out.score[scored]) > 0.9
    assert out.anomaly[800:1000].mean() > 0.5
    again = AssetMonitor("pump", MonitorConfig(baseline_rows=400, detector="robust_z", features=None), SENSORS)
    verdicts = [v for v in again.process(ts, X) if v.anomaly]
    in_fault = [v for v in verdicts if 800 * SEC <= v.ts_ns < 1000 * SEC]
    assert in_fault and all(v.contributions[0].sensor == "s3" for v in in_fault)
    first = in_fault[0].contributions[0]
    assert first.direction == "high" and first.value > first.expected_high


# -- AssetMonitor ---------------------------------------------------------------------------


def _with_gaps(seed: int = 4):
    ts, X, _ = synthetic(600, seed=seed, fault=(5, 350, 420, 6.0))
    X[[10, 200, 201, 360, 500], [0, 3, 4, 5, 7]] = [np.nan, np.inf, np.nan, np.nan, -np.inf]
    return ts, X


def test_monitor_warm_up_then_scoring() -> None:
    ts, X = _with_gaps()
    mon = AssetMonitor("a", MonitorConfig(baseline_rows=100), SENSORS)
    out = mon.process_arrays(ts, X)
    # Row 10 is skipped, so the baseline is rows 0..100 minus row 10.
    assert out.status[10] == SKIPPED and np.all(out.status[:10] == WARMING_UP)
    assert out.status[100] == WARMING_UP and out.status[101] == SCORED
    assert np.all(out.score[out.status == WARMING_UP] == 0) and not out.anomaly[:101].any()
    assert mon.skipped_rows_ == 5 and mon.scored_rows_ == 600 - 101 - 4
    verdicts = AssetMonitor("a", MonitorConfig(baseline_rows=100), SENSORS).process(ts, X)
    assert len(verdicts) == 595  # one per non-skipped row
    assert sum(v.warming_up for v in verdicts) == 100
    assert all(v.contributions for v in verdicts if v.anomaly)
    assert not any(v.contributions for v in verdicts if not v.anomaly)


def test_monitor_skipped_rows_hold_the_alarm_state() -> None:
    ts, X = _with_gaps()
    out = AssetMonitor("a", MonitorConfig(baseline_rows=100), SENSORS).process_arrays(ts, X)
    assert out.anomaly[359] and out.anomaly[360] and math.isnan(out.score[360])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 599), max_size=12, unique=True))
def test_monitor_micro_batches_give_identical_results(cuts: list[int]) -> None:
    ts, X = _with_gaps()
    whole = AssetMonitor("a", MonitorConfig(baseline_rows=100, min_duration=2), SENSORS)
    expected = whole.process(ts, X)
    split = AssetMonitor("a", MonitorConfig(baseline_rows=100, min_duration=2), SENSORS)
    got = []
    bounds = [0, *sorted(cuts), len(ts)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        got.extend(split.process(ts[lo:hi], X[lo:hi]))
    assert got == expected


def test_monitor_is_causal() -> None:
    ts, X = _with_gaps()
    full = AssetMonitor("a", MonitorConfig(baseline_rows=100), SENSORS).process_arrays(ts, X)
    for k in (50, 101, 355, 400):
        part = AssetMonitor("a", MonitorConfig(baseline_rows=100), SENSORS).process_arrays(ts[:k], X[:k])
        np.testing.assert_array_equal(part.score, full.score[:k])
        np.testing.assert_array_equal(part.anomaly, full.anomaly[:k])


def test_monitor_feed_matches_process() -> None:
    ts, X, _ = synthetic(300, seed=5, fault=(1, 200, 260, 8.0))
    batch = AssetMonitor("a", MonitorConfig(baseline_rows=150), SENSORS).process(ts, X)
    live = AssetMonitor("a", MonitorConfig(baseline_rows=150))
    fed = []
    for t, row in zip(ts.tolist(), X, strict=True):
        # Per-sensor messages at the same instant, split in two: the completing one emits.
        fed.extend(live.feed(t, dict(zip(SENSORS[4:], row[4:].tolist(), strict=True))))
        fed.extend(live.feed(t, dict(zip(SENSORS[:4], row[:4].tolist(), strict=True))))
    # The sensor set is the union over the discovery period; discovery rows are replayed.
    assert live.sensor_names == SENSORS
    assert fed == batch and live.intake.counts().unknown_values == 0
    # Whole-row readings through the aligner give exactly the batch verdicts.
    live2 = AssetMonitor("a", MonitorConfig(baseline_rows=150), SENSORS)
    fed2 = []
    for t, row in zip(ts.tolist(), X, strict=True):
        fed2.extend(live2.feed(t, dict(zip(SENSORS, row.tolist(), strict=True))))
    assert fed2 == batch
    assert any(v.anomaly for v in fed2)


def test_monitor_rejects_wrong_width() -> None:
    mon = AssetMonitor("a", MonitorConfig(baseline_rows=10), SENSORS)
    with pytest.raises(ValueError, match="expected 8 sensors"):
        mon.process(np.zeros(2, dtype=np.int64), np.zeros((2, 3)))
