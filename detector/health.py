"""Health index and time-to-threshold projection: maintenance prediction without failure history.

Scale: the health index is **0 at the healthy baseline and 1 at the maintenance threshold** (it can exceed 1).
It mixes the calibrated anomaly probability and the per-sensor drift against the baseline::

    raw = prob_weight * p / p_at_threshold + (1 - prob_weight) * rms(z) / drift_at_threshold

smoothed with an event-time exponential average (half-life ``half_life_s``). Time always comes with the data
(any consistent unit; the names say seconds and the alert text converts to hours): nothing here reads a clock.

:class:`TimeToThreshold` keeps the last ``window_s`` of health values, fits a robust trend (Theil–Sen: median of
pairwise slopes, intercept = median residual), and projects when the trend crosses ``threshold``. The band comes
from the OLS standard-error formulas applied to the Theil–Sen residuals at the requested confidence:
the band is where the fitted line's confidence band (slope *and* level uncertainty, Fieller / inverse
regression) reaches the threshold; ``eta_high`` is infinite when the slope is not significantly > 0 at that
confidence. The residual variance is inflated by ``(1 + ρ) / (1 − ρ)`` (ρ = lag-1 autocorrelation of the
residuals) because a smoothed index has strongly correlated residuals. Returns None
when the trend is flat (slope ≤ ``min_slope`` or t-ratio < 1) or improving, unless the level is already at or
above the threshold (then the projection is "now").

With ``log_trend=True`` the trend is fitted to ``log(value + log_offset)`` — exponential growth, the usual shape of
wear — and projected to ``log(threshold + log_offset)``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def _ewm_weight(dt: float, half_life: float) -> float:
    """Weight of the new sample in an event-time EWMA after a gap ``dt``."""
    if half_life <= 0 or dt < 0:
        return 1.0
    return 1.0 - 0.5 ** (dt / half_life)


class HealthIndex:
    """Streaming health index for one asset (0 = healthy, 1 = at the maintenance threshold).

    ``update(ts, probability, drift_z)`` takes the calibrated anomaly probability in [0, 1] and the per-sensor
    drift z-scores against the baseline (mapping sensor → z, or a sequence in ``sensors`` order) and returns the
    smoothed index. ``drivers(k)`` names the sensors with the largest smoothed |z|.
    Learned state: ``value_``, ``ts_``, ``z_`` (smoothed per-sensor z), ``n_``.
    """

    def __init__(
        self,
        sensors: Sequence[str],
        p_at_threshold: float = 0.99,
        drift_at_threshold: float = 4.0,
        prob_weight: float = 0.5,
        half_life_s: float = 3600.0,
    ) -> None:
        self.sensors = sensors
        self.p_at_threshold = p_at_threshold
        self.drift_at_threshold = drift_at_threshold
        self.prob_weight = prob_weight
        self.half_life_s = half_life_s
        self.value_: float | None = None
        self.ts_: float | None = None
        self.z_ = np.zeros(len(sensors))
        self.n_ = 0

    def raw(self, probability: float, z: np.ndarray) -> float:
        """Unsmoothed index of one sample."""
        z = np.asarray(z, dtype=np.float64)
        # np.mean(z**2), bit for bit, without its wrapper's cost (this runs for every scored row)
        drift = math.sqrt(float(np.add.reduce(z * z)) / z.size) if z.size else 0.0
        return self._index(probability, drift)

    def _index(self, probability: float, drift: float) -> float:
        p = min(max(float(probability), 0.0), 1.0)
        return self.prob_weight * p / self.p_at_threshold + (1.0 - self.prob_weight) * drift / self.drift_at_threshold

    def update(self, ts: float, probability: float, drift_z: Mapping[str, float] | Sequence[float]) -> float:
        # Most scored rows name no sensor: their z is all 0, its drift 0.0, and the smoothed z only
        # decays (``w * 0 + (1 - w) * z_`` is ``(1 - w) * z_ + 0.0``, -0.0 turned into 0.0 alike),
        # without building the zeros (maintenance tracking was a tenth of the detector thread).
        z: np.ndarray | None = None
        if isinstance(drift_z, Mapping) and not drift_z and self.value_ is not None and self.ts_ is not None:
            value = self._index(probability, 0.0)
        else:
            z = self._drift_values(drift_z)
            value = self.raw(probability, z)
        if self.value_ is None or self.ts_ is None:  # this row starts the index
            assert z is not None
            self.value_, self.z_ = value, z.copy()
        else:
            if ts < self.ts_:
                raise ValueError(f"timestamps must not go back: {ts} < {self.ts_}")
            w = _ewm_weight(ts - self.ts_, self.half_life_s)
            self.value_ = w * value + (1.0 - w) * self.value_
            self.z_ = (1.0 - w) * self.z_ + 0.0 if z is None else w * z + (1.0 - w) * self.z_
        self.ts_ = float(ts)
        self.n_ += 1
        return self.value_

    def _drift_values(self, drift_z: Mapping[str, float] | Sequence[float]) -> np.ndarray:
        """Per sensor in ``sensors`` order, non-finite ones as 0."""
        if isinstance(drift_z, Mapping):
            z = np.array([float(drift_z.get(s, 0.0)) for s in self.sensors])
        else:
            z = np.asarray(drift_z, dtype=np.float64)
            if z.shape != (len(self.sensors),):
                raise ValueError(f"expected {len(self.sensors)} drift values, got shape {z.shape}")
        return np.where(np.isfinite(z), z, 0.0)  # as nan_to_num(nan=posinf=neginf=0), at a fifth of its cost

    def drivers(self, k: int = 2) -> tuple[str, ...]:
        order = np.argsort(-np.abs(self.z_), kind="stable")[:k]
        return tuple(str(self.sensors[i]) for i in order if abs(self.z_[i]) > 0)


@dataclass(frozen=True, slots=True)
class Projection:
    """Projected crossing of the maintenance threshold, seen from ``ts`` (all durations in time units of ts)."""

    ts: float
    level: float  # fitted health index at ts
    slope: float  # per time unit (of the log when log_trend)
    slope_se: float
    eta: float  # time from ts to the crossing
    eta_low: float  # earliest plausible crossing (band at the requested confidence)
    eta_high: float  # latest plausible crossing; math.inf when the slope could be ≤ 0
    due: bool  # eta <= horizon


def theil_sen(t: np.ndarray, y: np.ndarray, max_points: int = 400) -> tuple[float, float]:
    """Median of pairwise slopes and median intercept; thins to ``max_points`` evenly spaced points."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.size > max_points:
        idx = np.unique(np.linspace(0, t.size - 1, max_points).astype(np.int64))
        ts, ys = t[idx], y[idx]
    else:
        ts, ys = t, y
    i, j = np.triu_indices(ts.size, k=1)
    dt = ts[j] - ts[i]
    ok = dt > 0
    if not ok.any():
        return 0.0, float(np.median(y))
    slope = float(np.median((ys[j] - ys[i])[ok] / dt[ok]))
    intercept = float(np.median(y - slope * t))
    return slope, intercept


class TimeToThreshold:
    """Robust trend of a health index over a long window, projected to a threshold; see the module docstring."""

    def __init__(
        self,
        window_s: float,
        threshold: float = 1.0,
        horizon_s: float = 7 * 24 * 3600.0,
        min_points: int = 10,
        confidence: float = 0.8,
        min_slope: float = 0.0,
        log_trend: bool = False,
        log_offset: float = 0.1,
    ) -> None:
        self.window_s = window_s
        self.threshold = threshold
        self.horizon_s = horizon_s
        self.min_points = min_points
        self.confidence = confidence
        self.min_slope = min_slope
        self.log_trend = log_trend
        self.log_offset = log_offset
        self.points_: deque[tuple[float, float]] = deque()

    def update(self, ts: float, value: float) -> Projection | None:
        if self.points_ and ts < self.points_[-1][0]:
            raise ValueError(f"timestamps must not go back: {ts} < {self.points_[-1][0]}")
        if math.isfinite(value):
            self.points_.append((float(ts), float(value)))
        while self.points_ and self.points_[0][0] < ts - self.window_s:
            self.points_.popleft()
        return self.project()

    def extend(self, ts: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> Projection | None:
        """Add many points (in time order) and project once, from the last one."""
        for t, v in zip(ts, values, strict=True):
            if self.points_ and t < self.points_[-1][0]:
                raise ValueError(f"timestamps must not go back: {t} < {self.points_[-1][0]}")
            if math.isfinite(v):
                self.points_.append((float(t), float(v)))
        if self.points_:
            last = self.points_[-1][0]
            while self.points_[0][0] < last - self.window_s:
                self.points_.popleft()
        return self.project()

    def project(self) -> Projection | None:
        if len(self.points_) < max(3, self.min_points):
            return None
        arr = np.asarray(self.points_, dtype=np.float64)
        t_now = float(arr[-1, 0])
        t = arr[:, 0] - t_now
        y = arr[:, 1]
        thr = self.threshold
        if self.log_trend:
            y = np.log(np.maximum(y, 0.0) + self.log_offset)
            thr = math.log(self.threshold + self.log_offset)
        slope, intercept = theil_sen(t, y)
        resid = y - (intercept + slope * t)
        n = t.size
        tbar = float(t.mean())
        sxx = float(np.sum((t - tbar) ** 2))
        s2 = float(np.sum(resid**2)) / (n - 2)
        # residuals of a smoothed index are autocorrelated: inflate the variance by (1 + rho) / (1 - rho)
        r0 = resid - resid.mean()
        den = float(r0 @ r0)
        rho = min(max(float(r0[1:] @ r0[:-1]) / den, 0.0), 0.95) if den > 0 else 0.0
        s2 *= (1.0 + rho) / (1.0 - rho)
        se = math.sqrt(s2 / sxx) if sxx > 0 else math.inf
        level_fit = intercept  # fitted value at t = 0 (now)
        level = math.exp(level_fit) - self.log_offset if self.log_trend else level_fit
        if level_fit >= thr:
            return Projection(t_now, level, slope, se, 0.0, 0.0, 0.0, True)
        if slope <= self.min_slope or slope <= se:
            return None  # flat or improving
        eta = (thr - level_fit) / slope
        # Band (inverse regression / Fieller): times u where the line's confidence band reaches the threshold,
        # (g - b u)^2 = z^2 s^2 (1/n + u^2/Sxx), u measured from tbar, g = threshold - line at tbar.
        z = NormalDist().inv_cdf(0.5 + self.confidence / 2.0)
        g = thr - (level_fit + slope * tbar)
        c = z * z * s2 / sxx
        a_q = slope * slope - c
        c_q = g * g - z * z * s2 / n
        root = math.sqrt(max(g * g * slope * slope - a_q * c_q, 0.0))
        gb = g * slope
        u_low = c_q / (gb + root) if gb + root > 0 else 0.0
        eta_low = min(max(tbar + u_low, 0.0), eta)
        eta_high = max(tbar + (gb + root) / a_q, eta) if a_q > 0 else math.inf
        return Projection(t_now, level, slope, se, eta, eta_low, eta_high, eta <= self.horizon_s)


@dataclass(frozen=True, slots=True)
class MaintenanceForecast:
    """What a ``maintenance`` alert carries."""

    asset: str
    ts: float
    health: float
    eta_s: float
    eta_low_s: float
    eta_high_s: float
    drivers: tuple[str, ...]

    @property
    def message(self) -> str:
        hours = max(self.eta_s, 0.0) / 3600.0
        due = "now" if hours < 0.5 else f"within ~{hours:.0f} h"
        driven = f", driven by sensors {', '.join(self.drivers)}" if self.drivers else ""
        return f"service {due}{driven}"


class MaintenanceMonitor:
    """One asset: health index → time-to-threshold → a forecast when the crossing is nearer than the horizon."""

    def __init__(self, asset: str, health: HealthIndex, ttt: TimeToThreshold, n_drivers: int = 2) -> None:
        self.asset = asset
        self.health = health
        self.ttt = ttt
        self.n_drivers = n_drivers

    def update(
        self, ts: float, probability: float, drift_z: Mapping[str, float] | Sequence[float]
    ) -> MaintenanceForecast | None:
        value = self.health.update(ts, probability, drift_z)
        proj = self.ttt.update(ts, value)
        if proj is None or not proj.due:
            return None
        return MaintenanceForecast(
            self.asset, ts, value, proj.eta, proj.eta_low, proj.eta_high, self.health.drivers(self.n_drivers)
        )
