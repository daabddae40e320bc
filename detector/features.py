"""Per-sensor rolling features over event time, causal, identical in batch and streaming use.

``RollingFeatures`` turns aligned rows ``(ts_ns, X)`` (shape ``(n, d)``) into per-sensor features
over the event-time window ``(t - window_s, t]`` ending at each row. Time comes with the data; there
is no wall clock.

Features (any subset, in any order):

* ``"raw"``: the value itself.
* ``"level"``: rolling mean over the window.
* ``"spread"``: rolling population standard deviation (``ddof=0``).
* ``"slope"``: least-squares slope of value against time over the window, in units per second.
* ``"residual"``: value minus the *previous row's* ``level`` (a one-step-ahead forecast by the
  trailing mean, not an EWMA). The first row of a stream, or a row whose previous window holds no
  finite value of that sensor, gets residual 0.
* ``"range"``: rolling ``max - min``.

Window and causality. The window of row ``i`` is the rows ``j <= i`` with ``t_j > t_i - window``:
it includes row ``i`` and earlier rows at the same instant (duplicate timestamps are one instant),
but never a later row, even one with the same timestamp. Output for row ``i`` depends only on rows
``<= i``. Timestamps must be non-decreasing; sampling may be irregular.

``min_periods``: when the window holds fewer than ``min_periods`` finite values of a sensor,
``spread``, ``slope`` and ``range`` are 0 (not NaN), so downstream detectors need no special case for
a cold start or a gap; ``level`` is then the mean of what is there (the value itself for one row).
``slope`` is also 0 when the window's timestamps are (numerically) all equal.

Missing values. Non-finite values are left out of every window; every feature of that sensor on
that row is NaN (the monitor skips rows with non-finite values), and later rows are unaffected.

Batch / stream identity. ``transform(ts_ns, X)`` computes a whole array at once (vectorised:
``np.searchsorted`` for the window starts, segmented cumulative sums for the moments, a sparse table
for ``range``). ``update(ts_ns, X)`` is the streaming entry point: it keeps the rows that later
windows can still need and runs the *same* function over ``[kept rows + new rows]``, returning the
new part. To make the arithmetic identical, not merely close, the cumulative sums restart at fixed
event-time buckets of length ``window`` (bucket ``floor(t / window)``) and are centred on the
bucket's first finite value and start time. A window ``(t - window, t]`` touches at most the row's
bucket and the one before it, so every number depends only on those two buckets, which the stream
always keeps in full. Result: any split of the rows into micro-batches gives bit-identical output
(``np.array_equal``), and the moments never accumulate error over a long stream. The two partial
windows are merged with Chan et al.'s pairwise update (means and centred sums, not raw sums of
squares). Precision: within a bucket the centred sums lose about ``eps * (drift / spread)**2``
relative, where ``drift`` is how far the sensor moves within one window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detector.chunks import runs_within

FEATURES = ("raw", "level", "spread", "slope", "residual", "range")
# Rows (kept and new) of the streams ``update_streams`` works out in one call at most (detector.chunks).
STREAM_ROWS = 4096
_NS_PER_S = 1_000_000_000


def window_to_ns(window_s: float) -> int:
    """A feature window in nanoseconds, as every rolling feature (and every rule about them) uses it."""
    return int(round(float(window_s) * _NS_PER_S))


# Relative threshold below which the windows' time spread counts as zero (slope = 0 then).
_TIME_SPREAD_RTOL = 64 * float(np.finfo(np.float64).eps)


class RollingFeatures:
    """Causal rolling features per sensor over event time; see the module docstring.

    Output columns are sensor-major: for sensors ``(a, b)`` and features ``("level", "spread")`` the
    columns are ``a:level, a:spread, b:level, b:spread`` (``feature_names``); ``sensor_index`` gives
    each column's sensor number.

    Streaming state (``update``): ``ts_`` and ``X_`` hold the kept rows (those in the bucket of the
    last row and the bucket before it, at most two windows' worth).
    """

    def __init__(
        self,
        window_s: float = 60.0,
        features: Sequence[str] = ("level", "spread", "slope", "residual"),
        min_periods: int = 2,
    ) -> None:
        self.window_s = window_s
        self.features = features
        self.min_periods = min_periods
        self.reset()

    # -- parameters ---------------------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {"window_s": self.window_s, "features": tuple(self.features), "min_periods": self.min_periods}

    def _check_params(self) -> tuple[int, tuple[str, ...]]:
        window = window_to_ns(self.window_s)
        if window < 1:
            raise ValueError(f"window_s must be positive (>= 1 ns), got {self.window_s}")
        features = tuple(self.features)
        if not features:
            raise ValueError("need at least one feature")
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose from {FEATURES}")
        if len(set(features)) != len(features):
            raise ValueError(f"duplicate features in {features}")
        if int(self.min_periods) < 1:
            raise ValueError(f"min_periods must be >= 1, got {self.min_periods}")
        return window, features

    def feature_names(self, sensors: Sequence[str]) -> list[str]:
        """``f"{sensor}:{feature}"`` for every output column, in column order."""
        return [f"{s}:{f}" for s in sensors for f in self.features]

    def sensor_index(self, sensors: int | Sequence[str]) -> np.ndarray:
        """For every output column, the index of its sensor (``np.repeat(arange(d), n_features)``)."""
        d = sensors if isinstance(sensors, int) else len(sensors)
        return np.repeat(np.arange(d, dtype=np.intp), len(tuple(self.features)))

    # -- batch --------------------------------------------------------------------------------

    def transform(self, ts_ns: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Features of a whole array, as if it were a fresh stream; does not touch the stream state."""
        window_ns, features = self._check_params()
        ts, X = _check_input(ts_ns, X)
        return _rolling_features(ts, X, window_ns, features, int(self.min_periods))

    # -- streaming ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the streaming history."""
        self.ts_ = np.zeros(0, dtype=np.int64)
        self.X_: np.ndarray | None = None

    def update(self, ts_ns: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Features of the new rows given everything seen before; bit-identical to ``transform``."""
        window_ns, features = self._check_params()
        n_old, ts_all, X_all = self._with_kept(ts_ns, X)
        out = _rolling_features(ts_all, X_all, window_ns, features, int(self.min_periods), first=n_old)
        self._keep(ts_all, X_all, window_ns)
        return out

    def _with_kept(self, ts_ns: np.ndarray, X: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """``(n_old, ts_all, X_all)``: the kept rows (``n_old`` of them) followed by the new ones."""
        ts, X = _check_input(ts_ns, X)
        if self.X_ is None:
            return 0, ts, X
        if X.shape[1] != self.X_.shape[1]:
            raise ValueError(f"expected {self.X_.shape[1]} sensors, got {X.shape[1]}")
        if ts.size and self.ts_.size and ts[0] < self.ts_[-1]:
            raise ValueError("timestamps went backwards across updates")
        return self.ts_.size, np.concatenate([self.ts_, ts]), np.concatenate([self.X_, X])

    def _keep(self, ts_all: np.ndarray, X_all: np.ndarray, window_ns: int) -> None:
        """Keep the rows later windows can still need: the last row's bucket and the one before it."""
        if ts_all.size:
            bucket = ts_all // window_ns
            keep = int(np.searchsorted(bucket, bucket[-1] - 1, side="left"))
            self.ts_ = ts_all[keep:].copy()
            self.X_ = X_all[keep:].copy()
        elif self.X_ is None:
            self.X_ = X_all[:0].copy()

    def get_state(self) -> dict[str, np.ndarray]:
        """Streaming history as plain arrays (``np.savez``-able without pickle)."""
        X = self.X_ if self.X_ is not None else np.zeros((0, 0))
        return {"ts_ns": self.ts_.copy(), "X": X.copy(), "has_history": np.asarray(self.X_ is not None)}

    def set_state(self, state: Mapping[str, Any]) -> RollingFeatures:
        ts = np.asarray(state["ts_ns"], dtype=np.int64).ravel()
        X = np.asarray(state["X"], dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != ts.size:
            raise ValueError("state arrays have inconsistent shapes")
        self.ts_ = ts.copy()
        self.X_ = X.copy() if bool(np.asarray(state["has_history"])) else None
        return self


_Member = tuple[int, int, np.ndarray, np.ndarray]  # (index, n_old, ts_all, X_all) of one stream


def update_streams(
    streams: Sequence[RollingFeatures], batches: Sequence[tuple[np.ndarray, np.ndarray]]
) -> list[np.ndarray | None]:
    """``stream.update(ts, X)`` for every stream and its batch, worked out together: one call of the
    vectorised code for all streams of the same parameters and sensor count instead of one each (a
    live batch holds a few rows per asset, and a call on a few rows costs its numpy calls, not its
    rows). Bit-identical to the single updates (``np.array_equal``).

    Each stream's rows are shifted in time by a whole number of windows, which keeps every row's
    bucket and offset in it, and the streams are laid one after another with an empty bucket between
    them, so no window reaches into another stream's rows.

    None for a stream left to its own ``update``: one alone with its parameters, with no new rows, or
    whose batch ``update`` would refuse (it raises there, for that stream alone). Should the work
    itself raise, no stream has moved on, and each can still be updated on its own.
    """
    out: list[np.ndarray | None] = [None] * len(streams)
    groups: dict[tuple[Any, ...], list[_Member]] = {}
    for i, (stream, (ts, X)) in enumerate(zip(streams, batches, strict=True)):
        try:
            window_ns, features = stream._check_params()
            n_old, ts_all, X_all = stream._with_kept(ts, X)
        except ValueError:
            continue
        if ts_all.size > n_old:
            key = (window_ns, features, int(stream.min_periods), X_all.shape[1])
            groups.setdefault(key, []).append((i, n_old, ts_all, X_all))
    # Every group worked out before any stream moves on: a failure leaves every stream as it was.
    worked_out = []
    for (window_ns, features, min_periods, _), group in groups.items():
        for run in runs_within(range(len(group)), [m[2].size for m in group], STREAM_ROWS):
            if len(run) > 1:
                members = [group[j] for j in run]
                worked_out.append((window_ns, members, _features_of_streams(members, window_ns, features, min_periods)))
    for window_ns, members, joined in worked_out:
        for (i, _, ts_all, X_all), F in zip(members, joined, strict=True):
            streams[i]._keep(ts_all, X_all, window_ns)
            out[i] = F
    return out


def _features_of_streams(
    members: Sequence[_Member], window_ns: int, features: tuple[str, ...], min_periods: int
) -> list[np.ndarray]:
    """The new rows' features of each ``(index, n_old, ts_all, X_all)``, from one ``_features_at`` call."""
    residual = "residual" in features
    shifted, rows, fresh, skip = [], [], [], []
    offset, bucket, k = 0, 0, 0
    for _, n_old, ts_all, _ in members:
        first_bucket, last_bucket = int(ts_all[0] // window_ns), int(ts_all[-1] // window_ns)
        shifted.append(ts_all + (bucket - first_bucket) * window_ns)
        bucket += last_bucket - first_bucket + 2  # an empty bucket between two streams
        r0 = max(n_old - 1, 0) if residual else n_old
        rows.append(np.arange(offset + r0, offset + ts_all.size))
        fresh.append(k)
        skip.append(n_old - r0)
        k += ts_all.size - r0
        offset += ts_all.size
    ts = np.concatenate(shifted)
    X = np.concatenate([X_all for _, _, _, X_all in members])
    F = _features_at(ts, X, window_ns, features, min_periods, np.concatenate(rows), k, np.asarray(fresh))
    out, start = [], 0
    for r, dropped in zip(rows, skip, strict=True):
        out.append(F[start + dropped : start + r.size])
        start += r.size
    return out


def _check_input(ts_ns: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ts = np.asarray(ts_ns, dtype=np.int64).ravel()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != ts.size:
        raise ValueError(f"need X of shape (n, d) with n == len(ts_ns); got {X.shape} and {ts.shape}")
    if ts.size > 1 and np.any(ts[1:] < ts[:-1]):
        raise ValueError("timestamps must be non-decreasing")
    return ts, X


class _SegmentedCumsum:
    """Cumulative sums along axis 0 restarting at every segment start; exactly sequential.

    Segments are padded into 3-D blocks per size class (counts in ``(2**(k-1), 2**k]``), so the
    padding at most doubles the work and there is one ``np.cumsum`` per size class, not per segment.
    ``np.cumsum`` adds strictly left to right, so each segment's sums are bit-identical to a fresh
    ``np.cumsum`` of that segment alone. The result has an extra all-zero last row (index ``n``) so
    that "nothing to subtract" can be an ordinary gather.

    A few segments (a stream's update holds two or three buckets) are summed one ``np.cumsum`` each,
    in place: the padded blocks' scatter and gather cost more than that below ``FEW_SEGMENTS``.
    """

    FEW_SEGMENTS = 16

    def __init__(self, starts: np.ndarray, counts: np.ndarray) -> None:
        n = int(counts.sum())
        self.n = n
        self.bounds: list[tuple[int, int]] | None = None
        self.plan: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]] = []
        if counts.size <= self.FEW_SEGMENTS:
            self.bounds = list(zip(starts.tolist(), (starts + counts).tolist(), strict=True))
            return
        seg_of_row = np.repeat(np.arange(counts.size), counts)
        pos = np.arange(n) - np.repeat(starts, counts)
        size_class = np.ceil(np.log2(counts)).astype(np.int64)
        row_class = size_class[seg_of_row]
        for k in np.unique(size_class).tolist():
            in_class = size_class == k
            rank = np.cumsum(in_class) - 1
            rows = np.flatnonzero(row_class == k)
            g = rank[seg_of_row[rows]]
            self.plan.append((rows, g, pos[rows], int(in_class.sum()), int(counts[in_class].max())))

    def __call__(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n + 1, v.shape[1]))
        if self.bounds is not None:
            for start, end in self.bounds:
                np.cumsum(v[start:end], axis=0, out=out[start:end])
            return out
        for rows, g, pos, n_seg, length in self.plan:
            buf = np.zeros((n_seg, length, v.shape[1]))
            buf[g, pos] = v[rows]
            np.cumsum(buf, axis=1, out=buf)
            out[rows] = buf[g, pos]
        return out


def _rolling_extreme(values: np.ndarray, lo: np.ndarray, op: np.ufunc) -> np.ndarray:
    """``op.reduce(values[lo[i]:i+1])`` for every row (sparse table, one level at a time)."""
    n = values.shape[0]
    idx = np.arange(n)
    length = idx - lo + 1
    level = np.floor(np.log2(length)).astype(np.int64)
    out = np.empty_like(values)
    table = values
    k = 0
    while True:
        rows = np.flatnonzero(level == k)
        if rows.size:
            a = table[lo[rows]]
            b = table[rows - (1 << k) + 1]
            out[rows] = op(a, b)
        step = 1 << k
        if 2 * step > n or not np.any(level > k):
            break
        table = op(table[:-step], table[step:])  # now table[j] = op over rows j .. j + 2 * step - 1
        k += 1
    return out


def _rolling_features(
    ts: np.ndarray, X: np.ndarray, window_ns: int, features: tuple[str, ...], min_periods: int, first: int = 0
) -> np.ndarray:
    """Features of rows ``first`` onwards (those of every row when 0). The cumulative sums run over
    all rows, as every later row's window may need them; the per-row arithmetic after them runs only
    over the rows returned (and the one before, for ``residual``): elementwise, so each number is the
    same as over all rows. A stream's update returns a few new rows after up to two windows of kept
    ones, and the per-row arithmetic was most of its cost."""
    n, d = X.shape
    if n <= first:
        return np.zeros((0, d * len(features)))
    # The rows worked out: ``first`` on, and the one before for residual (the previous row's level).
    r0 = max(first - 1, 0) if "residual" in features else first
    out = _features_at(ts, X, window_ns, features, min_periods, slice(r0, n), n - r0, np.zeros(1, dtype=np.intp))
    return out[first - r0 :]


def _features_at(
    ts: np.ndarray,
    X: np.ndarray,
    window_ns: int,
    features: tuple[str, ...],
    min_periods: int,
    rows: slice | np.ndarray,
    k: int,
    fresh: np.ndarray,
) -> np.ndarray:
    """Features of the ``k`` rows ``rows`` (a slice, or indices in increasing order) given every row of
    ``ts``/``X``. ``fresh``: positions among those rows whose previous row is not of their stream
    (``residual`` has no previous level there)."""
    n, d = X.shape
    nf = len(features)
    window = float(window_ns) / _NS_PER_S
    finite = np.isfinite(X)
    Xf = np.where(finite, X, 0.0)
    lo = np.searchsorted(ts, ts - window_ns, side="right")

    # Event-time buckets of length ``window``: segment = run of rows in one bucket.
    bucket = ts // window_ns
    new_seg = np.empty(n, dtype=bool)
    new_seg[0] = True
    np.not_equal(bucket[1:], bucket[:-1], out=new_seg[1:])
    starts = np.flatnonzero(new_seg)
    counts = np.diff(np.append(starts, n))
    seg = np.cumsum(new_seg) - 1

    # Per-bucket reference: the first finite value of each sensor, and the bucket start time.
    first_finite = np.minimum.reduceat(np.where(finite, np.arange(n)[:, None], n), starts, axis=0)
    ends = (starts + counts)[:, None]
    has = first_finite < ends
    ref = np.where(has, Xf[np.minimum(first_finite, n - 1), np.arange(d)], 0.0)  # (segments, d)
    t_rel = (ts - bucket * window_ns).astype(np.float64) / _NS_PER_S  # seconds in [0, window)

    # Window = part A (rows lo .. end of the previous bucket, when the window reaches back into it)
    # + part B (rows max(lo, first row of own bucket) .. i). Sums over each part are differences
    # of the per-bucket cumulative sums ``P``; index ``n`` of ``P`` is a zero row.
    seg_r, lo_r = seg[rows], lo[rows]
    row_first = starts[seg_r]
    prev_seg = np.maximum(seg_r - 1, 0)
    in_prev = lo_r < row_first
    idx_b = np.where(lo_r > row_first, lo_r - 1, n)
    idx_a1 = np.where(in_prev, row_first - 1, n)
    idx_a2 = np.where(in_prev & (lo_r > starts[prev_seg]), lo_r - 1, n)
    cumsum = _SegmentedCumsum(starts, counts)

    def parts(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = cumsum(v)
        return P[idx_a1] - P[idx_a2], P[rows] - P[idx_b]

    need = set(features)
    need_xx = "spread" in need
    need_t = "slope" in need
    # Moments relative to the bucket reference. With no missing values the count and time sums are
    # the same for every sensor, so they are computed once (shape (n, 1)); the numbers are the same.
    all_finite = bool(finite.all())
    m = np.ones((n, 1)) if all_finite else finite.astype(np.float64)
    xc = Xf - ref[seg] if all_finite else np.where(finite, Xf - ref[seg], 0.0)
    ref_row = ref[seg_r]
    mA, mB = parts(m)
    sxA, sxB = parts(xc)
    safeA, safeB = np.maximum(mA, 1.0), np.maximum(mB, 1.0)
    mxA, mxB = sxA / safeA, sxB / safeB
    has_a = mA > 0
    cnt = mA + mB
    safe = np.maximum(cnt, 1.0)
    wB = mB / safe
    w = mA * wB
    # Part A's mean in part B's frame (the previous bucket's reference differs).
    mxA = np.where(has_a, mxA + (ref[prev_seg] - ref_row), mxB)
    dx = mxB - mxA
    mean_x = mxA + dx * wB
    Mxx = Mtt = Mtx = np.zeros((k, d))
    if need_xx:
        sxxA, sxxB = parts(xc * xc)
        Mxx = (sxxA - sxA * (sxA / safeA)) + (sxxB - sxB * (sxB / safeB)) + dx * dx * w
    if need_t:
        tc = t_rel[:, None] if all_finite else m * t_rel[:, None]
        stA, stB = parts(tc)
        sttA, sttB = parts(tc * tc)
        stxA, stxB = parts(tc * xc)
        mtA, mtB = stA / safeA, stB / safeB
        Mtt_A, Mtt_B = sttA - stA * mtA, sttB - stB * mtB
        Mtx_A, Mtx_B = stxA - stA * (sxA / safeA), stxB - stB * (sxB / safeB)
        mtA = np.where(has_a, mtA - window, mtB)  # previous bucket starts one window earlier
        dt = mtB - mtA
        Mtt = Mtt_A + Mtt_B + dt * dt * w
        Mtx = Mtx_A + Mtx_B + dx * dt * w

    enough = cnt >= min_periods
    level = np.where(cnt > 0, ref_row + mean_x, np.nan)
    cols: dict[str, np.ndarray] = {}
    for name in features:
        if name == "raw":
            cols[name] = X[rows]
        elif name == "level":
            cols[name] = level
        elif name == "spread":
            cols[name] = np.where(enough, np.sqrt(np.maximum(Mxx, 0.0) / safe), 0.0)
        elif name == "slope":
            ok = enough & (Mtt > _TIME_SPREAD_RTOL * window * window * cnt)
            cols[name] = np.where(ok, Mtx / np.where(ok, Mtt, 1.0), 0.0)
        elif name == "residual":
            prev = np.empty_like(level)
            prev[1:] = level[:-1]
            prev[fresh] = np.nan  # a stream's first row; else the row before ``first``, dropped by the caller
            cols[name] = np.where(np.isnan(prev), 0.0, X[rows] - prev)
        elif name == "range":
            hi = _rolling_extreme(np.where(finite, X, -np.inf), lo, np.maximum)[rows]
            lo_v = _rolling_extreme(np.where(finite, X, np.inf), lo, np.minimum)[rows]
            cols[name] = np.where(enough, hi - lo_v, 0.0)
    out = np.stack([cols[name] for name in features], axis=2)  # (k, d, features)
    out = np.where(finite[rows, :, None], out, np.nan)
    return out.reshape(k, d * nf)


def settled_rows(ts_ns: np.ndarray, window_s: float) -> np.ndarray:
    """Baseline rows whose feature window is full; at least the newer half of the baseline is kept.

    The model is fitted on these rows only: in the first window the rolling features still average
    fewer samples than they will later. A window longer than half the baseline keeps the newer half.
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    settled = ts >= ts[0] + window_to_ns(window_s) if ts.size else np.zeros(0, dtype=bool)
    if settled.sum() < ts.size // 2:
        settled = np.zeros(ts.size, dtype=bool)
        settled[ts.size // 2 :] = True
    return settled


# Features that judge where a sensor *is* (its level). A sensor whose level wanders slowly over the
# baseline can only be judged by the others (how it moves), see ``level_drift_ratio``.
LEVEL_FEATURES = ("raw", "level")


def level_drift_ratio(ts_ns: np.ndarray, X: np.ndarray, window_s: float) -> np.ndarray:
    """Per sensor: variance of its rolling level that *no other sensor accounts for* ÷ its noise's.

    For a sensor that is a steady value plus white noise of variance ``s²``, the mean of ``m``
    samples varies by ``s² / m``, so the ratio is about 1. A sensor whose level wanders slowly on
    its own (a temperature following ambient) has a ratio of hundreds: its rolling level moves far
    more than its noise explains. Wandering that other sensors share (flow, current and pressure
    all following the load) is taken out first — each sensor's level is regressed (least squares)
    on the other sensors' levels and only the residual counts — because a multivariate model
    learns that shared movement and judges deviations from it; only unexplained wandering is
    something a short baseline cannot judge. ``s²`` comes from consecutive differences
    (``var(diff) / 2``), which a slow wander barely touches; ``m`` is the median number of rows per
    window. Constant sensors get 0; a noiseless sensor whose level still moves gets ``inf``.
    Rows must be finite and in time order; only ``settled_rows`` count (the rows the model learns).
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    X = np.asarray(X, dtype=np.float64)
    window = window_to_ns(window_s)
    level = _rolling_features(ts, X, window, ("level",), 1)
    rows_in_window = np.arange(ts.size) - np.searchsorted(ts, ts - window, side="right") + 1
    settled = settled_rows(ts, window_s)
    if settled.sum() < 2:  # a handful of rows (never a monitor's baseline, which has >= 10)
        settled = np.ones(ts.size, dtype=bool)
    m = float(np.median(rows_in_window[settled]))
    unexplained_var = _unexplained_variance(level[settled])
    noise_var = np.var(np.diff(X, axis=0), axis=0) / 2.0 if ts.size > 1 else np.zeros(X.shape[1])
    explained_by_noise = noise_var / max(m, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            explained_by_noise > 0,
            unexplained_var / explained_by_noise,
            np.where(unexplained_var > 0, np.inf, 0.0),
        )
    return np.asarray(ratio, dtype=np.float64)


def _unexplained_variance(L: np.ndarray) -> np.ndarray:
    """Per column, the variance left after a least-squares fit on the other columns (plus a constant).

    For unit-variance columns with correlation matrix ``R`` that share is ``1 / (R⁻¹)_jj``: one
    inverse serves every column (one fit per column cost minutes for an asset of 1,000 sensors, on
    the detector thread every asset shares). A tiny ridge keeps exactly collinear columns finite, and
    a share below ``_EXPLAINED`` is taken as 0, as their least-squares residual is. Constant columns
    get 0.
    """
    centred = L - L.mean(axis=0)
    spread = centred.std(axis=0)
    out = np.zeros(L.shape[1])
    varying = spread > 0
    if not varying.any():
        return out
    Z = centred[:, varying] / spread[varying]  # unit columns: a well-conditioned system
    R = Z.T @ Z / Z.shape[0]
    inverse = np.linalg.inv(R + _RIDGE * np.eye(R.shape[0]))
    share = 1.0 / np.diag(inverse)
    # What the ridge leaves of an exactly explained column (a counter in kWh and in MWh) is its
    # artefact, not wandering: 0, as least squares gives.
    out[varying] = np.where(share < _EXPLAINED, 0.0, share) * spread[varying] ** 2
    return out


_RIDGE = 1e-9  # relative to the unit diagonal of a correlation matrix
_EXPLAINED = 1e-6  # a share of variance left below this counts as none (1,000x the ridge's artefact)
