"""Rolling event-time features: naive-loop correctness, batch/stream identity, causality, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.features import FEATURES, RollingFeatures, settled_rows, update_streams

SEC = 1_000_000_000
ALL = FEATURES  # raw, level, spread, slope, residual, range


def irregular(n: int = 600, d: int = 3, *, seed: int = 0, nan_rate: float = 0.02, dup_rate: float = 0.1):
    """Irregular timestamps (gaps, duplicates) and sensors with very different offsets and scales."""
    rng = np.random.default_rng(seed)
    steps = rng.exponential(1.5 * SEC, n).astype(np.int64)
    steps[rng.random(n) < dup_rate] = 0  # duplicate timestamps
    steps[rng.random(n) < 0.01] = 90 * SEC  # gaps longer than the window
    ts = 1_700_000_000 * SEC + np.cumsum(steps)
    X = rng.standard_normal((n, d)) * np.array([1.0, 10.0, 0.01, 5.0][:d]) + np.array([0.0, 1e3, 5.0, -40.0][:d])
    X += np.linspace(0, 3, n)[:, None]  # a drift, so slopes are not all ~0
    X[rng.random((n, d)) < nan_rate] = np.nan
    return ts, X


def naive(ts: np.ndarray, X: np.ndarray, window_s: float, min_periods: int) -> np.ndarray:
    """Per-row loop straight from the definitions; columns sensor-major in FEATURES order."""
    n, d = X.shape
    w = int(round(window_s * SEC))
    out = np.full((n, d * len(ALL)), np.nan)
    prev_level = np.full(d, np.nan)
    for i in range(n):
        rows = np.arange(i + 1)
        rows = rows[ts[rows] > ts[i] - w]
        for s in range(d):
            x, t = X[rows, s], (ts[rows] - ts[i]) / SEC
            ok = np.isfinite(x)
            x, t = x[ok], t[ok]
            level = x.mean() if x.size else np.nan
            if np.isfinite(X[i, s]):
                enough = x.size >= min_periods
                spread = x.std() if enough else 0.0
                tt = t - t.mean()
                slope = (tt * (x - x.mean())).sum() / (tt**2).sum() if enough and np.ptp(t) > 0 else 0.0
                rng_ = np.ptp(x) if enough else 0.0
                resid = 0.0 if np.isnan(prev_level[s]) else X[i, s] - prev_level[s]
                out[i, s * 6 : (s + 1) * 6] = [X[i, s], level, spread, slope, resid, rng_]
            prev_level[s] = level
    return out


@pytest.mark.parametrize(("window_s", "min_periods"), [(20.0, 2), (3.0, 1), (7.5, 4)])
def test_features_match_naive_loop_on_irregular_data(window_s: float, min_periods: int) -> None:
    ts, X = irregular(400, seed=1)
    got = RollingFeatures(window_s, ALL, min_periods).transform(ts, X)
    want = naive(ts, X, window_s, min_periods)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    scale = np.nanmax(np.abs(want), axis=0) + 1e-12
    assert np.nanmax(np.abs(got - want) / scale) < 1e-10


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 500), max_size=25), st.integers(0, 3), st.sampled_from([0.4, 5.0, 60.0]))
def test_stream_equals_batch_bit_for_bit(cuts: list[int], seed: int, window_s: float) -> None:
    ts, X = irregular(500, seed=seed)
    rf = RollingFeatures(window_s, ALL)
    whole = rf.transform(ts, X)
    bounds = [0, *sorted(cuts), len(ts)]
    parts = [rf.update(ts[a:b], X[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)  # identical, NaNs in the same places


@pytest.mark.parametrize("features", [("level", "spread"), ALL, ("residual",)])
def test_streams_updated_together_equal_their_own_updates_bit_for_bit(features: tuple[str, ...]) -> None:
    """update_streams: streams of several windows and sensor counts, with NaNs, gaps, duplicate stamps,
    empty batches and ones stepping back in time, give what each stream's own update gives."""
    rng = np.random.default_rng(len(features))
    streams = [RollingFeatures(window_s=(1.5, 1.5, 1.5, 2.0)[i % 4], features=features) for i in range(9)]
    alone = [RollingFeatures(**s.get_params()) for s in streams]
    width = [3 if i % 3 == 2 else 4 for i in range(len(streams))]
    clock = [1_700_000_000 * SEC + int(rng.integers(0, 10**13)) for _ in streams]
    together = 0
    for _ in range(12):
        batches = []
        for i in range(len(streams)):
            steps = rng.choice([0, SEC // 10, SEC // 10, SEC // 3, 4 * SEC], size=int(rng.integers(0, 9)))
            ts = clock[i] + np.cumsum(steps, dtype=np.int64)
            if ts.size and rng.random() < 0.05:
                ts -= 10 * SEC  # back in time: refused by update, so left to it
            clock[i] = int(ts[-1]) if ts.size else clock[i]
            X = rng.standard_normal((ts.size, width[i])) * 10.0 + 100.0
            X[rng.random(X.shape) < 0.03] = np.nan
            batches.append((ts, X))
        got = update_streams(streams, batches)
        for stream, own, (ts, X), features_of in zip(streams, alone, batches, got, strict=True):
            try:
                want = own.update(ts, X)
            except ValueError:
                assert features_of is None
                with pytest.raises(ValueError):
                    stream.update(ts, X)
                continue
            together += features_of is not None
            np.testing.assert_array_equal(features_of if features_of is not None else stream.update(ts, X), want)
            np.testing.assert_array_equal(stream.ts_, own.ts_)
            np.testing.assert_array_equal(stream.X_, own.X_)
    assert together > 50  # most were worked out together


def test_stream_row_by_row_and_state_round_trip() -> None:
    ts, X = irregular(300, seed=5)
    rf = RollingFeatures(10.0, ("slope", "level", "residual"))
    whole = rf.transform(ts, X)
    got = [rf.update(ts[:150], X[:150])]
    state = {k: np.asarray(v) for k, v in rf.get_state().items()}  # plain arrays, as from np.savez
    assert all(v.dtype != object for v in state.values())
    restored = RollingFeatures(**rf.get_params()).set_state(state)
    got += [restored.update(ts[i : i + 1], X[i : i + 1]) for i in range(150, 300)]
    np.testing.assert_array_equal(np.concatenate(got), whole)
    # History stays bounded: at most the last row's bucket and the one before (two windows).
    assert restored.ts_[-1] - restored.ts_[0] < 2 * 10 * SEC


def test_features_are_causal() -> None:
    ts, X = irregular(400, seed=2)
    rf = RollingFeatures(15.0, ALL)
    full = rf.transform(ts, X)
    for k in (1, 2, 57, 200, 399):
        np.testing.assert_array_equal(rf.transform(ts[:k], X[:k]), full[:k])
    # Changing a future row (even one at the same timestamp) changes nothing before it.
    ts2 = ts.copy()
    ts2[100:103] = ts2[100]
    X2 = X.copy()
    a = rf.transform(ts2, X2)
    X2[101:, :] += 1e6
    b = rf.transform(ts2, X2)
    np.testing.assert_array_equal(a[:101], b[:101])


def test_duplicate_timestamps_and_min_periods() -> None:
    ts = np.array([0, 0, 0, 5, 5], dtype=np.int64) * SEC
    X = np.array([[1.0], [3.0], [8.0], [2.0], [4.0]])
    rf = RollingFeatures(2.0, ("level", "spread", "slope", "residual", "range"), min_periods=2)
    out = rf.transform(ts, X)
    level, spread, slope, resid, rng_ = out.T
    assert level.tolist() == [1.0, 2.0, 4.0, 2.0, 3.0]  # same instant: cumulative, never ahead
    assert spread[0] == 0.0 and spread[1] == 1.0  # one row < min_periods -> 0, not NaN
    assert np.all(slope == 0.0)  # all timestamps in each window equal -> no slope
    assert resid.tolist() == [0.0, 2.0, 6.0, -2.0, 2.0]  # value minus the previous row's level
    assert rng_.tolist() == [0.0, 2.0, 7.0, 0.0, 2.0]
    one = RollingFeatures(2.0, ("spread", "slope"), min_periods=1).transform(ts[:1], X[:1])
    assert one.tolist() == [[0.0, 0.0]]


def test_slope_of_a_line_is_exact_and_names_and_index() -> None:
    ts = (np.arange(50) * 0.5 * SEC).astype(np.int64) + 123 * SEC
    X = np.column_stack([3.0 + 2.0 * (ts / SEC), np.full(50, 7.0)])
    rf = RollingFeatures(10.0, ("slope", "spread"))
    out = rf.transform(ts, X)
    np.testing.assert_allclose(out[1:, 0], 2.0, rtol=1e-9)
    assert np.all(out[:, 2:] == 0.0)  # constant sensor: slope 0, spread 0
    assert rf.feature_names(["a", "b"]) == ["a:slope", "a:spread", "b:slope", "b:spread"]
    assert rf.sensor_index(["a", "b"]).tolist() == [0, 0, 1, 1] and rf.sensor_index(3).tolist() == [0, 0, 1, 1, 2, 2]


def test_nan_values_are_skipped_not_propagated() -> None:
    ts = np.arange(6, dtype=np.int64) * SEC
    X = np.array([[1.0], [np.nan], [3.0], [5.0], [np.inf], [7.0]])
    out = RollingFeatures(10.0, ("level", "residual")).transform(ts, X)
    assert np.isnan(out[1]).all() and np.isnan(out[4]).all()
    assert out[[0, 2, 3, 5], 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out[[2, 5], 1].tolist() == [2.0, 4.0]  # 3 - level(row 1) = 3 - 1; 7 - level(row 4) = 7 - 3


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        RollingFeatures().transform(np.array([2, 1]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="unknown features"):
        RollingFeatures(features=("mean",)).transform(np.array([1]), np.zeros((1, 1)))
    rf = RollingFeatures()
    rf.update(np.array([5]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="backwards"):
        rf.update(np.array([4]), np.zeros((1, 2)))
    assert rf.transform(np.zeros(0, dtype=np.int64), np.zeros((0, 2))).shape == (0, 8)


def test_settled_rows_are_those_with_a_full_window_or_the_newer_half() -> None:
    ts = np.arange(100, dtype=np.int64) * 1_000_000_000  # 1 Hz
    settled = settled_rows(ts, 10.0)
    assert not settled[:10].any() and settled[10:].all()
    long_window = settled_rows(ts, 80.0)  # would keep only 20 rows: the newer half instead
    assert not long_window[:50].any() and long_window[50:].all()
    assert settled_rows(ts, 0.0).all()  # raw values: every row is settled


def test_unexplained_variance_equals_one_least_squares_fit_per_column() -> None:
    from detector.features import _unexplained_variance

    rng = np.random.default_rng(4)
    L = rng.normal(size=(300, 5)).cumsum(axis=0) * [1.0, 3.0, 0.2, 10.0, 1.0]
    L = np.column_stack([L, L[:, 0] - 2 * L[:, 1], np.full(300, 7.0)])  # a collinear and a constant column
    expected = []
    for j in range(L.shape[1]):
        others = np.column_stack([np.ones(300), np.delete(L, j, axis=1)])
        coef = np.linalg.lstsq(others, L[:, j], rcond=None)[0]
        expected.append(np.var(L[:, j] - others @ coef))
    got = _unexplained_variance(L)
    np.testing.assert_allclose(got[[2, 3, 4]], np.array(expected)[[2, 3, 4]], rtol=1e-6)
    # Columns an exact combination of the others (0, 1 and 5 here), and the constant one: 0, as
    # least squares leaves (~1e-30); the ridge's artefact (~1e-9 of the variance) is not wandering.
    assert np.all(np.array(expected)[[0, 1, 5, 6]] < 1e-20 * np.var(L, axis=0)[[0, 1, 5, 6]].clip(min=1.0))
    assert np.all(got[[0, 1, 5, 6]] == 0.0)
