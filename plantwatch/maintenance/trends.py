"""One asset's health trends (one per operating regime where regimes are known), what they show and how
they are saved: the state :class:`plantwatch.maintenance.tracker.MaintenanceTracker` keeps per asset."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detector.health import HealthIndex, MaintenanceMonitor, Projection, theil_sen
from detector.regimes import Regimes


@dataclass
class Track:
    """One health index and its trend: the asset's, or the asset's in one operating regime."""

    monitor: MaintenanceMonitor
    projection: Projection | None = None
    last_trend_ts: float | None = None
    updated_at_ns: int = 0
    # Event time the machine spent in other regimes since this one's first verdict: the index is smoothed
    # over the regime's own running time, so its first verdict after hours elsewhere is not taken alone.
    away_s: float = 0.0


@dataclass(frozen=True)
class RegimeConfig:
    """How an asset's operating regime is recognised: from the readings of ``settings`` (sensors
    that set the operating point: load, speed), by a fresh recogniser per asset from ``make``.
    ``source`` says where the regimes come from in ``GET /maintenance``: ``operating_settings``
    (learned online per asset) or ``rul:<model>`` (the RUL model's, clustered from its training fleet)."""

    settings: tuple[str, ...]
    make: Callable[[], Regimes]
    source: str


@dataclass
class AssetTrends:
    tracks: dict[int | None, Track]  # by regime; None: the asset's one track (no regimes)
    judged: int | None = None  # the track the latest tracked verdict was judged in
    regimes: Regimes | None = None  # None: the asset has no regimes (not configured, or lacks a setting)
    labels: dict[int, int] = field(default_factory=dict)  # regime of each row (event time) just aligned
    between: int = 0  # verdicts of rows between regimes: judged in none, not tracked
    last_verdict_ns: int = 0  # event time of the asset's latest verdict, in any regime or between
    forecast_from: int | None = None  # the track of the latest forecast (its drivers go with the alert)

    def sensors(self) -> tuple[str, ...] | None:
        """The sensors of the asset's health index (each regime's names the same ones)."""
        for track in self.tracks.values():
            return tuple(track.monitor.health.sensors)
        return None


def add_sensors(health: HealthIndex, drift: Mapping[str, float]) -> None:
    """Sensors first named after the index was created join it with a smoothed z of 0."""
    new = [s for s in drift if s not in health.sensors]
    if new:
        health.sensors = (*health.sensors, *sorted(new))
        health.z_ = np.concatenate([health.z_, np.zeros(len(new))])


# -- what GET /maintenance shows ---------------------------------------------------------------

NO_FIGURES: dict[str, float | None] = {
    "health_index": None,
    "trend": None,
    "time_to_threshold_s": None,
    "time_to_threshold_low_s": None,
    "time_to_threshold_high_s": None,
}


def figures(track: Track) -> dict[str, float | None]:
    """A track's health index, its trend per hour and projected crossing (None where there is none)."""
    proj, points = track.projection, track.monitor.ttt.points_
    if proj is not None:
        slope: float | None = proj.slope
    elif len(points) >= 3:
        arr = np.asarray(points, dtype=np.float64)
        slope = theil_sen(arr[:, 0] - arr[-1, 0], arr[:, 1])[0]
    else:
        slope = None
    return {
        "health_index": track.monitor.health.value_,
        "trend": None if slope is None else slope * 3600.0,
        "time_to_threshold_s": _finite(proj.eta) if proj else None,
        "time_to_threshold_low_s": _finite(proj.eta_low) if proj else None,
        "time_to_threshold_high_s": _finite(proj.eta_high) if proj else None,
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# -- persistence: JSON metadata and plain arrays, no objects, no pickle ------------------------


def save_trends(
    assets: Mapping[str, AssetTrends],
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, np.ndarray]]:
    """(one entry per track, each asset's regimes as learned so far, the tracks' arrays)."""
    entries: list[dict[str, Any]] = []
    regimes: dict[str, dict[str, Any]] = {}
    arrays: dict[str, np.ndarray] = {}
    for asset, state in sorted(assets.items()):
        if state.regimes is not None:
            regimes[asset] = {
                "learned": state.regimes.get_state(),
                "judged": state.judged,
                "between": state.between,
                "last_verdict_ns": state.last_verdict_ns,
            }
        for regime, track in sorted(state.tracks.items(), key=lambda item: -1 if item[0] is None else item[0]):
            i = len(entries)
            health = track.monitor.health
            entries.append(
                {
                    "asset": asset,
                    "regime": regime,
                    "sensors": [str(s) for s in health.sensors],
                    "value": health.value_,
                    "ts": health.ts_,
                    "n": health.n_,
                    "last_trend_ts": track.last_trend_ts,
                    "updated_at_ns": track.updated_at_ns,
                    "away_s": track.away_s,
                }
            )
            arrays[f"z/{i}"] = health.z_.copy()
            arrays[f"points/{i}"] = np.asarray(list(track.monitor.ttt.points_), dtype=np.float64).reshape(-1, 2)
    return entries, regimes, arrays


def restore_trends(
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    fresh_track: Callable[[str, Sequence[str]], Track],
    regimes: RegimeConfig | None,
    min_span_s: float,
) -> dict[str, AssetTrends]:
    """The assets of :func:`save_trends` output (``meta``: ``assets`` and, saved since regimes, ``regimes``).
    Saved regimes are kept only while regimes are configured; an asset saved with regimes and restored
    without (or the reverse) starts its trends afresh rather than mixing regimes into one trend."""
    restored: dict[str, AssetTrends] = {}
    saved_regimes = meta.get("regimes", {})
    for i, entry in enumerate(meta["assets"]):
        asset = str(entry["asset"])
        regime = entry.get("regime")  # absent before regimes: the asset's one track
        state = restored.get(asset)
        if state is None:
            state = restored[asset] = _restored_asset(saved_regimes.get(asset), regimes)
        if (regime is None) == (state.regimes is None):
            state.tracks[regime] = _restored_track(fresh_track(asset, entry["sensors"]), entry, arrays[f"z/{i}"])
            _restore_points(state.tracks[regime], arrays[f"points/{i}"], min_span_s)
    return restored


def _restored_asset(saved: Mapping[str, Any] | None, regimes: RegimeConfig | None) -> AssetTrends:
    if saved is None or regimes is None:
        return AssetTrends({})
    recogniser = regimes.make()
    recogniser.set_state(saved["learned"])
    judged = None if saved["judged"] is None else int(saved["judged"])
    last = int(saved.get("last_verdict_ns", 0))
    return AssetTrends({}, judged=judged, regimes=recogniser, between=int(saved["between"]), last_verdict_ns=last)


def _restored_track(track: Track, entry: Mapping[str, Any], z: np.ndarray) -> Track:
    health = track.monitor.health
    z = np.asarray(z, dtype=np.float64)
    if z.shape != (len(health.sensors),):
        raise ValueError(f"saved trend of {entry['asset']!r}: {z.size} drift values, {len(health.sensors)} sensors")
    health.z_ = z.copy()
    health.value_ = None if entry["value"] is None else float(entry["value"])
    health.ts_ = None if entry["ts"] is None else float(entry["ts"])
    health.n_ = int(entry["n"])
    track.last_trend_ts = None if entry["last_trend_ts"] is None else float(entry["last_trend_ts"])
    track.updated_at_ns = int(entry["updated_at_ns"])
    track.away_s = float(entry.get("away_s", 0.0))
    return track


def _restore_points(track: Track, saved: np.ndarray, min_span_s: float) -> None:
    points = np.asarray(saved, dtype=np.float64).reshape(-1, 2)
    track.monitor.ttt.points_.extend((float(t), float(v)) for t, v in points)
    long_enough = len(points) > 0 and points[-1, 0] - points[0, 0] >= min_span_s
    track.projection = track.monitor.ttt.project() if long_enough else None
