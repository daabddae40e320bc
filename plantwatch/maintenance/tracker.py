"""Live maintenance prediction without failure history: detector verdicts → health trend → forecasts.

:class:`MaintenanceTracker` keeps one :class:`detector.health.MaintenanceMonitor` per asset and is fed every
scored (non-warming-up) :class:`Verdict`. Each verdict contributes

* its calibrated ``probability``, and
* a per-sensor drift z, derived from what the verdict carries: the live monitor only explains anomalous rows,
  so a verdict with ``contributions`` gives, per named sensor, its distance from the middle of the baseline's
  expected range in units of that range (the range is the central 99 %, i.e. ±2.576 σ of a normal), and a
  verdict without contributions gives an empty mapping (every sensor counts as z = 0 for that row).
  Callers that have true per-sensor z-scores can pass them instead (``observe(verdict, drift_z=...)``).

The health index is updated on every verdict; the trend (:class:`detector.health.TimeToThreshold`) is fed at
most once per ``sample_s`` of event time, which keeps the Theil–Sen fit cheap at high sampling rates (the
index is already smoothed over ``half_life_s``, so thinning loses nothing that matters for an hours-long trend).

Time is event time (``Verdict.ts_ns``) converted to seconds; nothing here reads a clock.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.health import (
    HealthIndex,
    MaintenanceForecast,
    MaintenanceMonitor,
    Projection,
    TimeToThreshold,
    theil_sen,
)
from detector.types import Contribution, Verdict
from ingest.timestamps import ns_to_datetime
from plantwatch.maintenance.rul_tracker import RulEstimate, RulTracker

log = logging.getLogger(__name__)

MODEL_NAME = "health-trend"
_Z_AT_RANGE_EDGE = 2.576  # the expected range is the baseline's central 99 %: its edges sit at ±2.576 σ


def drift_from_contributions(contributions: Sequence[Contribution]) -> dict[str, float]:
    """Per-sensor drift z of the sensors a verdict names; empty when it names none."""
    drift: dict[str, float] = {}
    for c in contributions:
        half = (c.expected_high - c.expected_low) / 2.0
        if not (math.isfinite(half) and half > 0 and math.isfinite(c.value)):
            continue
        mid = (c.expected_high + c.expected_low) / 2.0
        drift[c.sensor] = (c.value - mid) / half * _Z_AT_RANGE_EDGE
    return drift


@dataclass
class _AssetState:
    monitor: MaintenanceMonitor
    projection: Projection | None = None
    last_trend_ts: float | None = None
    updated_at_ns: int = 0


class MaintenanceTracker:
    """One :class:`MaintenanceMonitor` per asset; ``observe`` returns a forecast while a crossing is due.

    ``horizon_s``: a projected crossing nearer than this is "due". ``window_s``: how much of the health
    history the trend is fitted on. ``sample_s``: minimum event time between two points of the trend.
    ``min_span_s`` (default ``window_s / 2``): no projection until the trend's points span this long, so
    minutes of an acute fault (the anomaly alert's job) are not extrapolated into a maintenance forecast.
    ``rul``: an optional :class:`~plantwatch.maintenance.rul_tracker.RulTracker`
    (a model fitted on run-to-failure history);
    its per-asset RUL and interval join :meth:`snapshot`.
    The remaining keywords go to :class:`HealthIndex` / :class:`TimeToThreshold`.
    """

    def __init__(
        self,
        horizon_s: float,
        window_s: float,
        *,
        sample_s: float = 60.0,
        min_span_s: float | None = None,
        half_life_s: float = 3600.0,
        p_at_threshold: float = 0.99,
        drift_at_threshold: float = 4.0,
        prob_weight: float = 0.5,
        min_points: int = 10,
        confidence: float = 0.8,
        n_drivers: int = 2,
        rul: RulTracker | None = None,
    ) -> None:
        if horizon_s <= 0 or window_s <= 0:
            raise ValueError(f"horizon_s and window_s must be > 0, got {horizon_s}, {window_s}")
        self.horizon_s = horizon_s
        self.window_s = window_s
        self.sample_s = sample_s
        self.min_span_s = window_s / 2.0 if min_span_s is None else min_span_s
        self.half_life_s = half_life_s
        self.p_at_threshold = p_at_threshold
        self.drift_at_threshold = drift_at_threshold
        self.prob_weight = prob_weight
        self.min_points = min_points
        self.confidence = confidence
        self.n_drivers = n_drivers
        self.rul = rul  # fed by the detector stage with readings; its estimates join the snapshot
        self._assets: dict[str, _AssetState] = {}
        self._lock = threading.Lock()  # the detector thread writes, the API threadpool reads

    def _state(self, asset: str, sensors: Sequence[str] | None, drift: Mapping[str, float]) -> _AssetState:
        state = self._assets.get(asset)
        if state is None:
            names = tuple(sensors) if sensors else tuple(sorted(drift))
            state = self._assets[asset] = self._fresh_state(asset, names)
        else:
            _add_sensors(state.monitor.health, drift)
        return state

    def _fresh_state(self, asset: str, sensors: Sequence[str]) -> _AssetState:
        health = HealthIndex(
            tuple(sensors),
            p_at_threshold=self.p_at_threshold,
            drift_at_threshold=self.drift_at_threshold,
            prob_weight=self.prob_weight,
            half_life_s=self.half_life_s,
        )
        ttt = TimeToThreshold(
            self.window_s, horizon_s=self.horizon_s, min_points=self.min_points, confidence=self.confidence
        )
        return _AssetState(MaintenanceMonitor(asset, health, ttt, self.n_drivers))

    def observe(
        self,
        verdict: Verdict,
        drift_z: Mapping[str, float] | None = None,
        sensors: Sequence[str] | None = None,
    ) -> MaintenanceForecast | None:
        """Feed one verdict; a forecast when the projected crossing is within the horizon, else None.

        ``drift_z`` defaults to :func:`drift_from_contributions` of the verdict. ``sensors`` names the asset's
        sensors (used when its monitor is created); sensors a later drift mapping names for the first time are
        added to the asset's index.
        Warming-up verdicts are ignored.
        """
        if verdict.warming_up or not math.isfinite(verdict.probability):
            return None
        drift = drift_from_contributions(verdict.contributions) if drift_z is None else drift_z
        ts = verdict.ts_ns / 1e9
        with self._lock:
            state = self._state(verdict.asset, sensors, drift)
            mon = state.monitor
            if mon.health.ts_ is not None and ts < mon.health.ts_:
                return None  # a late row: the index only moves forward in event time
            value = mon.health.update(ts, verdict.probability, drift)
            state.updated_at_ns = verdict.ts_ns
            if state.last_trend_ts is None or ts - state.last_trend_ts >= self.sample_s:
                projection = mon.ttt.update(ts, value)
                points = mon.ttt.points_
                long_enough = bool(points) and points[-1][0] - points[0][0] >= self.min_span_s
                state.projection = projection if long_enough else None
                state.last_trend_ts = ts
            proj = state.projection
            # The drivers are ranked only for a forecast: ranking those of every verdict took a third of
            # the detector thread at full rate (bench/throughput.py).
            if proj is not None and proj.due:
                drivers = mon.health.drivers(self.n_drivers)
                return MaintenanceForecast(verdict.asset, ts, value, proj.eta, proj.eta_low, proj.eta_high, drivers)
            estimate = self._due_estimate(verdict.asset)
            if estimate is None:
                return None
            drivers = mon.health.drivers(self.n_drivers)
        return self._rul_forecast(estimate, verdict.asset, ts, value, drivers)

    def rul_forecast(self, asset: str, ts_ns: int) -> MaintenanceForecast | None:
        """From the RUL model alone (e.g. while the anomaly baseline is still being learned, when no
        scored verdicts feed :meth:`observe`): a forecast when the predicted life is within the horizon."""
        estimate = self._due_estimate(asset)
        if estimate is None:
            return None
        with self._lock:
            state = self._assets.get(asset)
            health = state.monitor.health.value_ if state is not None else None
        return self._rul_forecast(estimate, asset, ts_ns / 1e9, 0.0 if health is None else health, ())

    def _due_estimate(self, asset: str) -> RulEstimate | None:
        """With a supervised RUL model: its estimate for ``asset`` when the predicted remaining life is
        within the horizon, else None."""
        estimate = self.rul.estimates().get(asset) if self.rul is not None else None
        return estimate if estimate is not None and estimate.rul_s <= self.horizon_s else None

    @staticmethod
    def _rul_forecast(
        estimate: RulEstimate, asset: str, ts: float, health: float, drivers: tuple[str, ...]
    ) -> MaintenanceForecast:
        """The forecast of a due RUL ``estimate``, as seen at ``ts``."""
        elapsed = max(ts - estimate.updated_at_ns / 1e9, 0.0)  # time since the prediction's last row
        return MaintenanceForecast(
            asset,
            ts,
            health,
            estimate.rul_s - elapsed,
            estimate.low_s - elapsed,
            estimate.high_s - elapsed,
            drivers,
        )

    def driver_contributions(self, asset: str) -> tuple[Contribution, ...]:
        """The asset's drivers as alert ``top_sensors``: value = smoothed drift z, expected range = ±threshold."""
        with self._lock:
            state = self._assets.get(asset)
            if state is None:
                return ()
            health = state.monitor.health
            names = health.drivers(self.n_drivers)
            z = {str(s): float(v) for s, v in zip(health.sensors, health.z_, strict=True)}
        total = sum(abs(z[s]) for s in names)
        return tuple(
            Contribution(
                sensor=s,
                share=abs(z[s]) / total if total > 0 else 0.0,
                direction="high" if z[s] >= 0 else "low",
                value=z[s],
                expected_low=-self.drift_at_threshold,
                expected_high=self.drift_at_threshold,
                feature="drift",
            )
            for s in names
        )

    # -- persistence -------------------------------------------------------------------------

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Every asset's health index and trend points as (JSON metadata, arrays); no objects, no pickle."""
        meta: list[dict[str, Any]] = []
        arrays: dict[str, np.ndarray] = {}
        with self._lock:
            for i, (asset, state) in enumerate(sorted(self._assets.items())):
                health = state.monitor.health
                meta.append(
                    {
                        "asset": asset,
                        "sensors": [str(s) for s in health.sensors],
                        "value": health.value_,
                        "ts": health.ts_,
                        "n": health.n_,
                        "last_trend_ts": state.last_trend_ts,
                        "updated_at_ns": state.updated_at_ns,
                    }
                )
                arrays[f"z/{i}"] = health.z_.copy()
                arrays[f"points/{i}"] = np.asarray(list(state.monitor.ttt.points_), dtype=np.float64).reshape(-1, 2)
        document: dict[str, Any] = {"assets": meta}
        if self.rul is not None:
            document["rul"], rul_arrays = self.rul.get_state()
            arrays.update({f"rul/{key}": value for key, value in rul_arrays.items()})
        return document, arrays

    def set_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`get_state` output: trends continue where they stopped instead of starting over."""
        restored: dict[str, _AssetState] = {}
        for i, entry in enumerate(meta["assets"]):
            asset = str(entry["asset"])
            state = self._fresh_state(asset, [str(s) for s in entry["sensors"]])
            health = state.monitor.health
            z = np.asarray(arrays[f"z/{i}"], dtype=np.float64)
            if z.shape != (len(health.sensors),):
                raise ValueError(f"saved trend of {asset!r}: {z.size} drift values, {len(health.sensors)} sensors")
            health.z_ = z.copy()
            health.value_ = None if entry["value"] is None else float(entry["value"])
            health.ts_ = None if entry["ts"] is None else float(entry["ts"])
            health.n_ = int(entry["n"])
            points = np.asarray(arrays[f"points/{i}"], dtype=np.float64).reshape(-1, 2)
            state.monitor.ttt.points_.extend((float(t), float(v)) for t, v in points)
            state.last_trend_ts = None if entry["last_trend_ts"] is None else float(entry["last_trend_ts"])
            state.updated_at_ns = int(entry["updated_at_ns"])
            long_enough = len(points) > 0 and points[-1, 0] - points[0, 0] >= self.min_span_s
            state.projection = state.monitor.ttt.project() if long_enough else None
            restored[asset] = state
        with self._lock:
            self._assets = restored
        if self.rul is not None and "rul" in meta:
            try:
                self.rul.set_state(meta["rul"], {k[4:]: v for k, v in arrays.items() if k.startswith("rul/")})
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # another RUL model or a damaged
                # section: its history starts afresh, the trends stay
                log.warning("not restoring the RUL history: %s", exc)

    def forget(self, asset: str) -> None:
        """Drop ``asset``'s health trend and RUL history (it was overhauled: both start again)."""
        with self._lock:
            self._assets.pop(asset, None)
        if self.rul is not None:
            self.rul.forget(asset)

    def snapshot(self) -> list[dict[str, Any]]:
        """One entry per asset (sorted by asset); time-to-threshold fields are None when no crossing is projected.

        ``trend`` is the health index's slope per hour over the trend window (None until 3 points); the
        ``..._high_s`` bound is also None when the slope is not significantly positive (an unbounded band).
        ``rul_s``/``rul_low_s``/``rul_high_s`` come from the RUL tracker (None without a model or before its
        first prediction); ``model`` is then ``rul:<model directory name>`` and ``updated_at`` the later of the
        two event times.
        """
        with self._lock:
            items = {
                asset: (s.monitor.health.value_, s.projection, list(s.monitor.ttt.points_), s.updated_at_ns)
                for asset, s in self._assets.items()
            }
        ruls = self.rul.estimates() if self.rul is not None else {}
        out = []
        for asset in sorted(set(items) | set(ruls)):
            health, proj, points, updated_at_ns = items.get(asset, (None, None, [], 0))
            if proj is not None:
                slope: float | None = proj.slope
            elif len(points) >= 3:
                arr = np.asarray(points, dtype=np.float64)
                slope = theil_sen(arr[:, 0] - arr[-1, 0], arr[:, 1])[0]
            else:
                slope = None
            rul = ruls.get(asset)
            model = MODEL_NAME
            if rul is not None:
                assert self.rul is not None
                model = self.rul.model_name
                updated_at_ns = max(updated_at_ns, rul.updated_at_ns)
            out.append(
                {
                    "asset": asset,
                    "health_index": health,
                    "trend": None if slope is None else slope * 3600.0,
                    "time_to_threshold_s": _finite(proj.eta) if proj else None,
                    "time_to_threshold_low_s": _finite(proj.eta_low) if proj else None,
                    "time_to_threshold_high_s": _finite(proj.eta_high) if proj else None,
                    "rul_s": rul.rul_s if rul else None,
                    "rul_low_s": rul.low_s if rul else None,
                    "rul_high_s": rul.high_s if rul else None,
                    "model": model,
                    "updated_at": ns_to_datetime(updated_at_ns),
                }
            )
        return out


def _add_sensors(health: HealthIndex, drift: Mapping[str, float]) -> None:
    """Sensors first named after the index was created join it with a smoothed z of 0."""
    new = [s for s in drift if s not in health.sensors]
    if new:
        health.sensors = (*health.sensors, *sorted(new))
        health.z_ = np.concatenate([health.z_, np.zeros(len(new))])


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
