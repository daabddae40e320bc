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
from typing import Any

import numpy as np

from detector.health import (
    HealthIndex,
    MaintenanceForecast,
    MaintenanceMonitor,
    TimeToThreshold,
)
from detector.types import Contribution, Verdict
from ingest.timestamps import ns_to_datetime
from plantwatch.maintenance.rul_tracker import RulEstimate, RulTracker
from plantwatch.maintenance.trends import (
    NO_FIGURES,
    AssetTrends,
    RegimeConfig,
    Track,
    add_sensors,
    figures,
    restore_trends,
    save_trends,
)

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


class MaintenanceTracker:
    """Health trends per asset (and per operating regime); ``observe`` returns a forecast while a crossing is due.

    ``horizon_s``: a projected crossing nearer than this is "due". ``window_s``: how much of the health
    history the trend is fitted on. ``sample_s``: minimum event time between two points of the trend.
    ``min_span_s`` (default ``window_s / 2``): no projection until the trend's points span this long, so
    minutes of an acute fault (the anomaly alert's job) are not extrapolated into a maintenance forecast.
    ``rul``: an optional :class:`~plantwatch.maintenance.rul_tracker.RulTracker`
    (a model fitted on run-to-failure history);
    its per-asset RUL and interval join :meth:`snapshot`.
    ``regimes``: an optional :class:`RegimeConfig`. An asset whose readings carry its settings then has one
    health index and trend per operating regime (:mod:`detector.regimes`), so a change of operating point is
    not read as a change of health; each verdict is judged in the regime of its row (:meth:`observe_rows`),
    and verdicts of rows between regimes (a ramp, a point not yet settled) are not tracked.
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
        regimes: RegimeConfig | None = None,
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
        self.regimes = regimes
        self._assets: dict[str, AssetTrends] = {}
        self._lacking: set[str] = set()  # assets said to lack a setting (their health is one trend)
        self._lock = threading.Lock()  # the detector thread writes, the API threadpool reads

    def _asset(self, asset: str) -> AssetTrends:
        """The asset's trends, created empty on first sight (lock held)."""
        state = self._assets.get(asset)
        if state is None:
            state = self._assets[asset] = AssetTrends({})
        return state

    def _state(self, asset: str, sensors: Sequence[str] | None, drift: Mapping[str, float]) -> AssetTrends:
        state = self._asset(asset)
        if state.tracks:
            for track in state.tracks.values():
                add_sensors(track.monitor.health, drift)
        else:  # the asset's sensors, kept by its first track and copied by the others
            names = tuple(sensors) if sensors else tuple(sorted(drift))
            state.tracks[state.judged] = self.fresh_track(asset, names)
        return state

    def fresh_track(self, asset: str, sensors: Sequence[str]) -> Track:
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
        return Track(MaintenanceMonitor(asset, health, ttt, self.n_drivers))

    def observe_rows(self, asset: str, names: Sequence[str], rows: Sequence[tuple[int, np.ndarray]]) -> tuple[str, ...]:
        """The aligned rows ``(ts_ns, values in names order)`` about to be scored: their regimes, so that each
        of their verdicts is judged in its own row's regime. A no-op without regimes, or for an asset whose
        readings lack one of the settings: those are returned the first time (to be said once), else ()."""
        config = self.regimes
        if config is None or not rows:
            return ()
        missing = tuple(s for s in config.settings if s not in names)
        if missing:
            if asset in self._lacking:
                return ()
            self._lacking.add(asset)
            return missing
        columns = [list(names).index(s) for s in config.settings]
        with self._lock:
            state = self._asset(asset)
            if state.regimes is None:
                state.regimes = config.make()
                if None in state.tracks and state.judged is None:  # a trend from before regimes were known
                    state.tracks.pop(None)
            recogniser = state.regimes
            state.labels = {ts: label for ts, row in rows if (label := recogniser.label(row[columns])) is not None}
        return ()

    def observe(
        self,
        verdict: Verdict,
        drift_z: Mapping[str, float] | None = None,
        sensors: Sequence[str] | None = None,
    ) -> MaintenanceForecast | None:
        """Feed one verdict; a forecast when a projected crossing is within the horizon, else None.

        ``drift_z`` defaults to :func:`drift_from_contributions` of the verdict. ``sensors`` names the asset's
        sensors (used when its first trend is created); sensors a later drift mapping names for the first time
        are added to the asset's index. Warming-up verdicts are ignored. With regimes, the forecast is the most
        urgent of the asset's regimes (one regime's projection stays due while the machine runs in another).
        """
        if verdict.warming_up or not math.isfinite(verdict.probability):
            return None
        drift = drift_from_contributions(verdict.contributions) if drift_z is None else drift_z
        ts = verdict.ts_ns / 1e9
        with self._lock:
            state = self._assets.get(verdict.asset)
            if state is not None and state.regimes is not None:
                regime = state.labels.get(verdict.ts_ns)
                last, state.last_verdict_ns = state.last_verdict_ns, max(state.last_verdict_ns, verdict.ts_ns)
                if regime is None:
                    state.between += 1
                    return self._forecast_of(state, verdict.asset, ts)
                if regime not in state.tracks:
                    sensors = sensors or state.sensors()
                    state.tracks[regime] = self.fresh_track(verdict.asset, sensors or tuple(sorted(drift)))
                back = state.tracks[regime]
                if back.updated_at_ns and last > back.updated_at_ns:  # back from other regimes: that time away
                    back.away_s += (last - back.updated_at_ns) / 1e9
                state.judged = regime
            state = self._state(verdict.asset, sensors, drift)
            track = state.tracks[state.judged]
            mon = track.monitor
            own = ts - track.away_s  # the regime's own running time: what its index is smoothed over
            if mon.health.ts_ is not None and own < mon.health.ts_:
                return None  # a late row: the index only moves forward in event time
            value = mon.health.update(own, verdict.probability, drift)
            track.updated_at_ns = verdict.ts_ns
            if track.last_trend_ts is None or ts - track.last_trend_ts >= self.sample_s:
                projection = mon.ttt.update(ts, value)
                points = mon.ttt.points_
                long_enough = bool(points) and points[-1][0] - points[0][0] >= self.min_span_s
                track.projection = projection if long_enough else None
                track.last_trend_ts = ts
            return self._forecast_of(state, verdict.asset, ts)

    def _forecast_of(self, state: AssetTrends, asset: str, ts: float) -> MaintenanceForecast | None:
        """The most urgent due projection of the asset's tracks, else its due RUL estimate (lock held).

        Another regime's projection counts while the machine ran in that regime within the trend window:
        after a whole window elsewhere it is no longer evidence, and would otherwise hold an alert open
        for as long as the machine keeps away from that regime."""
        due = [
            (t.projection.eta - (ts - t.projection.ts), key, t)
            for key, t in state.tracks.items()
            if t.projection is not None and t.projection.due and ts - t.projection.ts <= self.window_s
        ]
        if due:
            # The drivers are ranked only for a forecast: ranking those of every verdict took a third of
            # the detector thread at full rate (bench/throughput.py).
            _, state.forecast_from, track = min(due, key=lambda item: item[0])
            proj, health = track.projection, track.monitor.health
            assert proj is not None and health.value_ is not None
            elapsed = ts - proj.ts
            return MaintenanceForecast(
                asset,
                ts,
                health.value_,
                proj.eta - elapsed,
                proj.eta_low - elapsed,
                proj.eta_high - elapsed,
                health.drivers(self.n_drivers),
            )
        estimate = self._due_estimate(asset)
        if estimate is None:
            return None
        index = _judged_index(state)
        drivers = index.drivers(self.n_drivers) if index is not None else ()
        return self._rul_forecast(estimate, asset, ts, _value_of(index), drivers)

    def rul_forecast(self, asset: str, ts_ns: int) -> MaintenanceForecast | None:
        """From the RUL model alone (e.g. while the anomaly baseline is still being learned, when no
        scored verdicts feed :meth:`observe`): a forecast when the predicted life is within the horizon."""
        estimate = self._due_estimate(asset)
        if estimate is None:
            return None
        with self._lock:
            value = _value_of(_judged_index(self._assets.get(asset)))
        return self._rul_forecast(estimate, asset, ts_ns / 1e9, value, ())

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
        """The drivers of the asset's latest forecast (else of the regime it was last judged in) as alert
        ``top_sensors``: value = smoothed drift z, expected range = ±threshold."""
        with self._lock:
            state = self._assets.get(asset)
            track = None if state is None else state.tracks.get(state.forecast_from, state.tracks.get(state.judged))
            if track is None:
                return ()
            health = track.monitor.health
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
        """Every asset's health indexes and trend points (one per regime), its regimes as learned so far and
        the RUL history, as (JSON metadata, arrays); no objects, no pickle."""
        with self._lock:
            entries, regimes, arrays = save_trends(self._assets)
        document: dict[str, Any] = {"assets": entries, "regimes": regimes}
        if self.rul is not None:
            document["rul"], rul_arrays = self.rul.get_state()
            arrays.update({f"rul/{key}": value for key, value in rul_arrays.items()})
        return document, arrays

    def set_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`get_state` output: trends continue where they stopped instead of starting over
        (:func:`~plantwatch.maintenance.trends.restore_trends` says when they start afresh)."""
        restored = restore_trends(meta, arrays, self.fresh_track, self.regimes, self.min_span_s)
        with self._lock:
            self._assets = restored
        if self.rul is not None and "rul" in meta:
            try:
                self.rul.set_state(meta["rul"], {k[4:]: v for k, v in arrays.items() if k.startswith("rul/")})
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # another RUL model or a damaged
                # section: its history starts afresh, the trends stay
                log.warning("not restoring the RUL history: %s", exc)

    def forget(self, asset: str) -> None:
        """Drop ``asset``'s health trends and RUL history (it was overhauled: both start again); the
        regimes it was learned to run at stay, since an overhaul does not change the operating points."""
        with self._lock:
            state = self._assets.pop(asset, None)
            if state is not None and state.regimes is not None:
                self._assets[asset] = AssetTrends({}, regimes=state.regimes)
        if self.rul is not None:
            self.rul.forget(asset)

    def snapshot(self) -> list[dict[str, Any]]:
        """One entry per asset (sorted by asset); time-to-threshold fields are None when no crossing is projected.

        The top-level health fields are those of the regime the asset's latest tracked verdict was judged in
        (``regime``: its number, its settings' centre and where the regimes come from; None without regimes);
        ``regimes`` lists every regime's own (empty without regimes).
        ``trend`` is the health index's slope per hour over the trend window (None until 3 points); the
        ``..._high_s`` bound is also None when the slope is not significantly positive (an unbounded band).
        ``rul_s``/``rul_low_s``/``rul_high_s`` come from the RUL tracker (None without a model or before its
        first prediction); ``model`` is then ``rul:<model directory name>``, ``rul_regime`` the regime the
        model judged its latest prediction in, and ``updated_at`` the later of the two event times.
        """
        with self._lock:
            # an asset whose regimes are known but none of whose verdicts was tracked yet has nothing to show
            assets = {asset: self._asset_view(state) for asset, state in self._assets.items() if state.tracks}
        ruls = self.rul.estimates() if self.rul is not None else {}
        out = []
        for asset in sorted(set(assets) | set(ruls)):
            view = assets.get(asset) or {"judged": None, "tracks": {}, "regime": None, "between": 0}
            top = view["tracks"].get(view["judged"], {"figures": NO_FIGURES, "updated_at_ns": 0})
            updated_at_ns = top["updated_at_ns"]
            rul = ruls.get(asset)
            model = MODEL_NAME
            if rul is not None:
                assert self.rul is not None
                model = self.rul.model_name
                updated_at_ns = max(updated_at_ns, rul.updated_at_ns)
            regimes = [{"regime": r, **t["figures"]} for r, t in sorted(view["tracks"].items()) if r is not None]
            out.append(
                {
                    "asset": asset,
                    **top["figures"],
                    "rul_s": rul.rul_s if rul else None,
                    "rul_low_s": rul.low_s if rul else None,
                    "rul_high_s": rul.high_s if rul else None,
                    "model": model,
                    "updated_at": ns_to_datetime(updated_at_ns),
                    "regime": view["regime"],
                    "regimes": regimes,
                    "rows_between_regimes": view["between"],
                    "rul_regime": self.rul.regime_of(rul) if rul is not None and self.rul is not None else None,
                }
            )
        return out

    def _asset_view(self, state: AssetTrends) -> dict[str, Any]:
        """What the snapshot shows of one asset (lock held)."""
        tracks = {
            regime: {"figures": figures(track), "updated_at_ns": track.updated_at_ns}
            for regime, track in state.tracks.items()
        }
        regime = None
        if state.regimes is not None and state.judged is not None and self.regimes is not None:
            center = state.regimes.center(state.judged)
            settings = {name: float(v) for name, v in zip(self.regimes.settings, center, strict=True)}
            regime = {"id": state.judged, "settings": settings, "source": self.regimes.source}
        return {"judged": state.judged, "tracks": tracks, "regime": regime, "between": state.between}


def _judged_index(state: AssetTrends | None) -> HealthIndex | None:
    """The health index of the regime the asset's latest tracked verdict was judged in."""
    track = state.tracks.get(state.judged) if state is not None else None
    return track.monitor.health if track is not None else None


def _value_of(index: HealthIndex | None) -> float:
    """The index's value for a RUL forecast: 0 before it has one."""
    return 0.0 if index is None or index.value_ is None else index.value_
