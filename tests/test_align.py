"""FrameAligner: sensor discovery and watermark alignment for frames and per-sensor messages."""

from __future__ import annotations

import numpy as np
import pytest

from detector.align import FrameAligner
from detector.config import MonitorConfig
from detector.monitor import AssetMonitor

SENSORS = tuple(f"s{i}" for i in range(8))
SEC = 1_000_000_000


def _rows(rows: list[tuple[int, np.ndarray]]) -> list[tuple[int, list[float]]]:
    return [(t, r.tolist()) for t, r in rows]


def _data(n: int, *, seed: int, missing: float = 0.0):
    """n instants at 1 Hz of 8 sensors; each value independently missing with probability ``missing``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).round(3)
    present = rng.random((n, 8)) >= missing
    ts = np.arange(n, dtype=np.int64) * SEC
    return ts, X, present


def _frames(al: FrameAligner, ts, X, present) -> list[tuple[int, np.ndarray]]:
    out = []
    for t, row, mask in zip(ts.tolist(), X, present, strict=True):
        out.extend(al.update(t, {s: float(v) for s, v, m in zip(SENSORS, row, mask, strict=True) if m}))
    return out + al.flush()


def _per_sensor(al: FrameAligner, ts, X, present, *, seed: int) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for t, row, mask in zip(ts.tolist(), X, present, strict=True):
        for j in rng.permutation(8).tolist():  # random order within the instant
            if mask[j]:
                out.extend(al.update(t, {SENSORS[j]: float(row[j])}))
    return out + al.flush()


@pytest.mark.parametrize("sensors", [None, SENSORS])
@pytest.mark.parametrize("missing", [0.0, 0.2])
def test_per_sensor_messages_give_the_same_rows_as_frames(sensors, missing: float) -> None:
    ts, X, present = _data(200, seed=1, missing=missing)
    present[:3] = True  # all sensors show up during discovery
    present[100:106, 2] = False  # s2 silent for 6 s: stale with max_staleness 3 s
    kw = {"max_staleness_ns": 3 * SEC, "discovery_ns": 5 * SEC}
    frames = FrameAligner(sensors, **kw)
    per_sensor = FrameAligner(sensors, **kw)
    expected = _frames(frames, ts, X, present)
    got = _per_sensor(per_sensor, ts, X, present, seed=2)
    assert _rows(got) == _rows(expected)
    assert frames.incomplete_rows_ == per_sensor.incomplete_rows_ >= 1
    assert len(expected) + frames.incomplete_rows_ == 200
    assert per_sensor.sensors_ == SENSORS
    if missing == 0.0:  # every instant complete except where s2 is stale
        assert [t for t, _ in expected] == [t for t in ts.tolist() if not 103 * SEC <= t <= 105 * SEC]
        np.testing.assert_array_equal(np.vstack([r for _, r in expected])[:100], X[:100])


def test_sensors_discovered_across_messages() -> None:
    al = FrameAligner(max_staleness_ns=10 * SEC, discovery_ns=5 * SEC)
    assert al.update(0, {"b": 1.0}) == []
    assert al.update(0, {"a": 2.0}) == []
    assert al.update(3 * SEC, {"c": 3.0}) == []  # still within discovery
    assert al.update(5 * SEC, {"a": 4.0}) == []  # 5 s after the first reading: inclusive
    assert al.discovering and al.sensors_ is None
    rows = al.update(6 * SEC, {"a": 5.0, "b": 6.0, "c": 7.0})  # ends discovery
    assert al.sensors_ == ("a", "b", "c")
    # Replay: t=0 lacks c (incomplete); t=3 s has a, b carried forward and c; likewise t=5 s.
    assert _rows(rows) == [(3 * SEC, [2.0, 1.0, 3.0]), (5 * SEC, [4.0, 1.0, 3.0]), (6 * SEC, [5.0, 6.0, 7.0])]
    assert al.incomplete_rows_ == 1 and al.unknown_values_ == 0


def test_frames_emit_immediately_after_discovery() -> None:
    al = FrameAligner(SENSORS, max_staleness_ns=SEC)
    for k in range(5):
        rows = al.update(k * SEC, dict.fromkeys(SENSORS, float(k)))
        assert _rows(rows) == [(k * SEC, [float(k)] * 8)]
    assert al.flush() == []
    disc = FrameAligner(max_staleness_ns=SEC, discovery_ns=2 * SEC)
    got = [len(disc.update(k * SEC, dict.fromkeys(SENSORS, float(k)))) for k in range(6)]
    assert got == [0, 0, 0, 4, 1, 1]  # t=0..2 s buffered, replayed with t=3 s, then immediate


def test_discovery_buffering_keeps_the_early_rows() -> None:
    ts, X, present = _data(100, seed=3)
    al = FrameAligner(max_staleness_ns=30 * SEC)  # discovery_ns defaults to max_staleness_ns
    counts = []
    rows = []
    for t, row in zip(ts.tolist(), X, strict=True):
        got = al.update(t, dict(zip(SENSORS, row.tolist(), strict=True)))
        counts.append(len(got))
        rows.extend(got)
    assert counts[:31] == [0] * 31 and counts[31] == 32 and counts[32:] == [1] * 68
    assert [t for t, _ in rows] == ts.tolist()
    np.testing.assert_array_equal(np.vstack([r for _, r in rows]), X)


def test_discovery_buffer_is_bounded() -> None:
    al = FrameAligner(max_staleness_ns=SEC, discovery_ns=100 * SEC, max_discovery_readings=3)
    assert al.update(0, {"a": 1.0}) == []
    assert al.update(SEC, {"a": 2.0}) == []
    rows = al.update(2 * SEC, {"a": 3.0})  # third reading fills the buffer: discovery ends
    assert al.sensors_ == ("a",) and [t for t, _ in rows] == [0, SEC, 2 * SEC]


def test_flush_ends_discovery_and_empty_readings_do_not_start_it() -> None:
    al = FrameAligner(max_staleness_ns=SEC)
    assert al.flush() == []
    assert al.update(-100 * SEC, {}) == []  # no values: discovery has not started
    al.update(0, {"b": 1.0})
    al.update(0, {"a": 2.0})
    assert al.discovering
    assert _rows(al.flush()) == [(0, [2.0, 1.0])]
    assert al.sensors_ == ("a", "b") and al.flush() == []
    assert al.update(0, {"a": 3.0}) == [] and al.merged_readings_ == 1  # instant already closed


def test_late_readings_are_dropped_and_counted() -> None:
    al = FrameAligner(["a", "b"], max_staleness_ns=10 * SEC)
    al.update(0, {"a": 1.0, "b": 1.0})
    al.update(2 * SEC, {"a": 2.0})  # opens t=2 s, not complete yet
    assert al.update(1 * SEC, {"b": 99.0}) == []  # older than the open instant: late
    assert al.update(0, {"a": 99.0}) == []  # older than the last emitted row: late
    assert al.late_readings_ == 2
    rows = al.update(2 * SEC, {"b": 3.0})
    assert _rows(rows) == [(2 * SEC, [2.0, 3.0])]  # 99s were not stored


def test_staleness_bounds_carried_forward_values() -> None:
    al = FrameAligner(["a", "b"], max_staleness_ns=2 * SEC)
    al.update(0, {"a": 1.0, "b": 1.0})
    al.update(1 * SEC, {"a": 2.0})
    al.update(2 * SEC, {"a": 3.0})
    rows = al.update(3 * SEC, {"a": 4.0})  # closes t=2 s: b is exactly 2 s old, fine
    assert _rows(rows) == [(2 * SEC, [3.0, 1.0])]
    assert al.update(4 * SEC, {"a": 5.0}) == []  # closes t=3 s: b is 3 s old, too stale
    assert al.incomplete_rows_ == 1 and al.rows_emitted_ == 3  # t=0, 1 s, 2 s


def test_sensor_appearing_after_discovery_is_counted_not_crashing() -> None:
    al = FrameAligner(max_staleness_ns=SEC, discovery_ns=SEC)
    for k in range(3):
        al.update(k * SEC, {"a": 1.0, "b": 2.0})
    rows = al.update(3 * SEC, {"a": 1.0, "b": 2.0, "late_joiner": 9.0})
    assert _rows(rows) == [(3 * SEC, [1.0, 2.0])]
    assert al.update(4 * SEC, {"late_joiner": 9.0}) == []  # only an unknown sensor: advances time
    assert al.unknown_values_ == 2 and al.sensors_ == ("a", "b")


def test_invalid_hyperparameters() -> None:
    with pytest.raises(ValueError, match="discovery_ns"):
        FrameAligner(max_staleness_ns=1, discovery_ns=-1)
    with pytest.raises(ValueError, match="max_discovery_readings"):
        FrameAligner(max_staleness_ns=1, max_discovery_readings=0)


def test_monitor_feed_per_sensor_messages_matches_process() -> None:
    ts, X, _ = _data(120, seed=4)
    batch = AssetMonitor("a", MonitorConfig(baseline_rows=50), SENSORS).process(ts, X)
    live = AssetMonitor("a", MonitorConfig(baseline_rows=50, max_staleness_ns=5 * SEC, discovery_ns=10 * SEC))
    rng = np.random.default_rng(5)
    fed = []
    sizes = []
    for t, row in zip(ts.tolist(), X, strict=True):
        for j in rng.permutation(8).tolist():
            got = live.feed(t, {SENSORS[j]: float(row[j])})
            sizes.append(len(got))
            fed.extend(got)
    fed.extend(live.flush())
    assert fed == batch
    assert max(sizes) == 11  # discovery end: t=0..10 s replayed (t=11 s has one sensor so far)
    assert live.sensor_names == SENSORS


def test_feed_many_gives_the_same_verdicts_as_feed_per_reading() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(0, 1, size=(400, 3))
    values[300:, 1] += 8.0
    readings = [(i * 10**9, {"a": v[0], "b": v[1], "c": v[2]}) for i, v in enumerate(values)]

    def monitor() -> AssetMonitor:
        return AssetMonitor("m", MonitorConfig(baseline_rows=100, max_staleness_ns=5 * 10**9))

    one_by_one = monitor()
    expected = [v for ts, vals in readings for v in one_by_one.feed(ts, vals)]
    batched = monitor()
    got = [v for start in range(0, 400, 37) for v in batched.feed_many(readings[start : start + 37])]
    assert got == expected
    assert any(v.anomaly for v in got[300:])
