"""Live remaining useful life: a model fitted by ``plantwatch rul fit`` applied to each asset's readings.

:class:`RulTracker` keeps, per asset, a bounded history (``history_rows``) of the rows that carry every sensor
the model was trained on (rows missing one are skipped; rows not later in event time than the previous kept row
are skipped too, since the model needs strictly increasing times). Every ``every_rows`` kept rows it builds the
asset's history in the model's column order, with ``times = (ts - first_ts) / 1e9 / time_unit_s`` (the unit of
the training logs' time column, e.g. 3600 s for one cycle = one hour) and calls :meth:`RulModel.predict`. The
prediction and its interval are stored in seconds, with the event time of the last row used.

Settings columns are passed when the model has some and every row of the history carries them as sensors;
otherwise the model sees ``None`` (one regime). Because the history is bounded, the asset's age as the model
sees it is at most ``history_rows`` rows.

Time is event time; nothing here reads a clock. A failing prediction is logged and leaves the previous one.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.regimes import FixedRegimes
from detector.rul import RulModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RulEstimate:
    rul_s: float
    low_s: float
    high_s: float
    updated_at_ns: int  # event time of the last row the prediction saw
    regime: int | None = None  # the model's operating regime of that row (None: the model has one regime)


@dataclass
class _AssetRows:
    rows: deque[tuple[int, tuple[float, ...], tuple[float, ...] | None]]
    since_predict: int = 0
    estimate: RulEstimate | None = None
    last_ts_ns: int | None = field(default=None)


class RulTracker:
    """Per-asset bounded history → periodic RUL prediction with an interval (see the module docstring)."""

    def __init__(
        self,
        model: RulModel,
        sensor_columns: Sequence[str],
        settings_columns: Sequence[str] = (),
        *,
        name: str = "rul",
        time_unit_s: float = 1.0,
        every_rows: int = 60,
        history_rows: int = 2000,
    ) -> None:
        if not (time_unit_s > 0 and math.isfinite(time_unit_s)):
            raise ValueError(f"time_unit_s must be a positive number, got {time_unit_s}")
        if every_rows < 1 or history_rows < 1:
            raise ValueError(f"every_rows and history_rows must be >= 1, got {every_rows}, {history_rows}")
        self.model = model
        self.sensor_columns = tuple(sensor_columns)
        self.settings_columns = tuple(settings_columns)
        self.name = name
        self.time_unit_s = float(time_unit_s)
        self.every_rows = every_rows
        self.history_rows = history_rows
        # The model's regimes, which also serve the health trends when no operating settings are configured;
        # None when it has one (or was fitted without settings columns).
        several = bool(self.settings_columns) and model.normalizer_.k_ >= 2
        self.regimes = FixedRegimes(model.normalizer_) if several else None
        self._assets: dict[str, _AssetRows] = {}
        self._lock = threading.Lock()  # the detector thread writes, the API threadpool reads

    @property
    def model_name(self) -> str:
        return f"rul:{self.name}"

    def observe(self, asset: str, rows: Sequence[tuple[int, Mapping[str, float]]]) -> RulEstimate | None:
        """Feed one asset's rows ``(ts_ns, values by sensor)``; returns the estimate when one was made."""
        state = self._assets.get(asset)
        if state is None:
            with self._lock:
                state = self._assets[asset] = _AssetRows(deque(maxlen=self.history_rows))
        made: RulEstimate | None = None
        for ts_ns, values in rows:
            x = _pick(values, self.sensor_columns)
            if x is None or (state.last_ts_ns is not None and ts_ns <= state.last_ts_ns):
                continue
            s = _pick(values, self.settings_columns) if self.settings_columns else None
            state.rows.append((ts_ns, x, s))
            state.last_ts_ns = ts_ns
            state.since_predict += 1
            if state.since_predict >= self.every_rows:
                state.since_predict = 0
                estimate = self._predict(asset, state)
                if estimate is not None:
                    made = estimate
                    with self._lock:
                        state.estimate = estimate
        return made

    def _predict(self, asset: str, state: _AssetRows) -> RulEstimate | None:
        rows = list(state.rows)
        ts = np.array([r[0] for r in rows], dtype=np.int64)
        times = (ts - ts[0]).astype(np.float64) / 1e9 / self.time_unit_s
        X = np.array([r[1] for r in rows], dtype=np.float64).reshape(len(rows), len(self.sensor_columns))
        S: np.ndarray | None = None
        if self.settings_columns and all(r[2] is not None for r in rows):
            S = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), len(self.settings_columns))
        try:
            [p] = self.model.predict([(times, X, S)])
        except Exception:  # a model problem must not stop detection
            log.exception("RUL prediction failed for asset %s", asset)
            return None
        u = self.time_unit_s
        return RulEstimate(p.rul * u, p.low * u, p.high * u, int(ts[-1]), self._regime(S))

    def _regime(self, S: np.ndarray | None) -> int | None:
        """The regime the model assigns the last row (what its per-regime standardisation judged it in)."""
        return None if S is None or self.regimes is None else self.regimes.label(S[-1])

    def regime_of(self, estimate: RulEstimate) -> dict[str, Any] | None:
        """``estimate``'s regime for ``GET /maintenance``: its number, the settings at its centre and the
        source; None when the model has one regime."""
        if estimate.regime is None or self.regimes is None:
            return None
        center = self.regimes.center(estimate.regime)
        settings = {name: float(v) for name, v in zip(self.settings_columns, center, strict=True)}
        return {"id": estimate.regime, "settings": settings, "source": self.model_name}

    # -- persistence -------------------------------------------------------------------------

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Every asset's row history, counters and last estimate as (JSON metadata, arrays)."""
        entries: list[dict[str, Any]] = []
        arrays: dict[str, np.ndarray] = {}
        with self._lock:
            assets = sorted(self._assets.items())
        for i, (asset, state) in enumerate(assets):
            rows = list(state.rows)
            est = state.estimate
            entries.append(
                {
                    "asset": asset,
                    "since_predict": state.since_predict,
                    "last_ts_ns": state.last_ts_ns,
                    "estimate": None
                    if est is None
                    else [est.rul_s, est.low_s, est.high_s, est.updated_at_ns, est.regime],
                }
            )
            arrays[f"ts/{i}"] = np.array([r[0] for r in rows], dtype=np.int64)
            arrays[f"x/{i}"] = np.array([r[1] for r in rows], dtype=np.float64).reshape(
                len(rows), len(self.sensor_columns)
            )
            if self.settings_columns:  # NaN rows: readings that came without the settings
                nan_row = (math.nan,) * len(self.settings_columns)
                settings = [r[2] if r[2] is not None else nan_row for r in rows]
                arrays[f"s/{i}"] = np.array(settings, dtype=np.float64).reshape(len(rows), len(self.settings_columns))
        meta = {
            "model": self.name,
            "sensor_columns": list(self.sensor_columns),
            "settings_columns": list(self.settings_columns),
            "assets": entries,
        }
        return meta, arrays

    def set_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`get_state` output; ``ValueError`` if it was saved for other model columns."""
        columns = (list(self.sensor_columns), list(self.settings_columns))
        if (meta["sensor_columns"], meta["settings_columns"]) != columns:
            raise ValueError(f"saved RUL history is for model {meta['model']!r} with other columns")
        restored: dict[str, _AssetRows] = {}
        for i, entry in enumerate(meta["assets"]):
            ts = np.asarray(arrays[f"ts/{i}"], dtype=np.int64)
            X = np.asarray(arrays[f"x/{i}"], dtype=np.float64).reshape(ts.size, len(self.sensor_columns))
            S = arrays.get(f"s/{i}")
            state = _AssetRows(deque(maxlen=self.history_rows))
            for j in range(ts.size):
                settings: tuple[float, ...] | None = None
                if S is not None and np.isfinite(S[j]).all():
                    settings = tuple(float(v) for v in S[j])
                state.rows.append((int(ts[j]), tuple(float(v) for v in X[j]), settings))
            state.since_predict = int(entry["since_predict"])
            state.last_ts_ns = None if entry["last_ts_ns"] is None else int(entry["last_ts_ns"])
            est = entry["estimate"]
            state.estimate = None if est is None else _restored_estimate(est)
            restored[str(entry["asset"])] = state
        with self._lock:
            self._assets = restored

    def forget(self, asset: str) -> None:
        """Drop ``asset``'s history and estimate (it was overhauled: its life starts again)."""
        with self._lock:
            self._assets.pop(asset, None)

    def estimates(self) -> dict[str, RulEstimate]:
        with self._lock:
            return {a: s.estimate for a, s in self._assets.items() if s.estimate is not None}


def _restored_estimate(saved: Sequence[Any]) -> RulEstimate:
    regime = int(saved[4]) if len(saved) > 4 and saved[4] is not None else None  # none saved before regimes
    return RulEstimate(float(saved[0]), float(saved[1]), float(saved[2]), int(saved[3]), regime)


def _pick(values: Mapping[str, float], names: Sequence[str]) -> tuple[float, ...] | None:
    out = []
    for n in names:
        v = values.get(n)
        if v is None:
            return None
        f = float(v)
        if not math.isfinite(f):
            return None
        out.append(f)
    return tuple(out)


def load_rul_tracker(
    directory: str | Path, *, time_unit_s: float = 1.0, every_rows: int = 60, history_rows: int = 2000
) -> RulTracker:
    """Load a ``plantwatch rul fit`` model directory into a tracker named after the directory."""
    from plantwatch.maintenance.rul_files import load_model

    model, sensors, settings = load_model(directory)
    return RulTracker(
        model,
        sensors,
        settings,
        name=Path(directory).resolve().name,
        time_unit_s=time_unit_s,
        every_rows=every_rows,
        history_rows=history_rows,
    )
