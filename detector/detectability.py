"""What a learned model can see: the smallest sustained shift of each sensor's level the alarm flags.

A false-alert target, recalibration and operator feedback all raise the alarm level, and a model
that learned more variety (a marked false alarm, load changes in the baseline) judges each sensor in
wider units. Both can make faults invisible, and no alert count shows it. So, for every sensor and
both directions, this module finds the smallest shift of its readings that, once the feature window
holds only shifted readings, takes the row's surprise to the alarm level on at least half of a
sample of the baseline's rows (half of the conditions the asset ran in): a figure in the sensor's
own units that a plant engineer can hold against the faults that matter.

It is the figure for a *slow* change (wear, fouling, a drifting calibration), which reaches the
alarm only through the level. A sudden step also moves the sensor's rolling ``spread`` while the
window straddles it, and often opens an alert there that hysteresis then holds; so sudden steps are
flagged at smaller sizes than this says, slow ramps only from this size on (``bench/sensitivity.py``
measures both).

A settled shift of ``s`` moves a sensor's ``raw`` and ``level`` features by ``s`` and leaves its
``spread``, ``slope``, ``range`` and ``residual`` as they were, so the probe adds ``s`` to those
columns of real baseline feature rows and scores them with the live detector and calibrator. A
sensor judged only by how it moves (a drifting sensor, or features without a level) has no shift
that reaches the alarm: ``inf``. So has one whose shift would be beyond the grid's last step (256
times its baseline range: detectors whose scores saturate, iforest or copod, stop growing there).

The search: a geometric grid of shifts from 1/64 of the sensor's baseline range (its central 99 %
of readings) up, then bisection between the last grid shift that fell short and the first that
reached. It costs ``2 x sensors x (grid + bisections) x SAMPLE_ROWS`` scored rows (about 20 ms for
8 sensors), so the service works it out on the detector thread once per model and alarm level
(:meth:`detector.monitor.AssetMonitor.smallest_shifts`); above ``MAX_SENSORS`` it is not computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detector.base import Detector
from detector.calibration import Calibrator

LEVEL_SHIFTED = ("raw", "level")  # the features a settled shift moves by the shift itself
SAMPLE_ROWS = 48  # baseline rows the shift is tried on (evenly spaced through the baseline)
GRID = tuple(2.0**k for k in range(-6, 9))  # shifts in baseline ranges: 1/64 .. 256
BISECTIONS = 8  # halvings of the bracket: the shift is known to about 2^-8 of it (bracket 2x: 0.4 %)
MAX_SENSORS = 200  # beyond this the probe costs seconds on the detector thread: not computed


@dataclass(frozen=True, slots=True)
class SmallestShifts:
    """Per sensor, the smallest settled shift up and down (sensor units) the alarm flags; ``inf``: none."""

    sensors: tuple[str, ...]
    up: np.ndarray
    down: np.ndarray

    def as_dict(self) -> dict[str, dict[str, float | None]]:
        """JSON-ready: ``{sensor: {"up": shift, "down": shift}}``, ``None`` where no shift reaches the alarm."""
        return {
            name: {"up": _finite_or_none(u), "down": _finite_or_none(d)}
            for name, u, d in zip(self.sensors, self.up.tolist(), self.down.tolist(), strict=True)
        }

    def describe(self) -> str:
        """One line: ``flow +2.1/-2.0, speed +15/-14, motor_temp not by its level``."""
        return describe_shifts(self.as_dict())


def describe_shifts(shifts: Mapping[str, Mapping[str, float | None]]) -> str:
    """:meth:`SmallestShifts.as_dict` output (as a backtest summary holds it) as one line."""
    parts = []
    for name, both in shifts.items():
        up, down = both.get("up"), both.get("down")
        if up is None and down is None:
            parts.append(f"{name} not by its level")
        else:
            parts.append(f"{name} +{_fmt(up)}/-{_fmt(down)}")
    return ", ".join(parts)


def smallest_shifts(
    detector: Detector,
    calibrator: Calibrator,
    surprise: float,
    rows: np.ndarray,
    level_columns: Sequence[Sequence[int]],
    ranges: np.ndarray,
    sensors: Sequence[str],
) -> SmallestShifts | None:
    """The smallest settled shifts per sensor (see the module docstring); None above ``MAX_SENSORS``.

    ``rows``: baseline feature rows over the model's columns; ``level_columns[j]``: the model columns
    a shift of sensor ``j`` moves by the shift itself; ``ranges``: each sensor's baseline range of
    readings (the grid's unit); ``surprise``: the alarm level as ``-ln`` of the calibrated survival.
    """
    if len(sensors) > MAX_SENSORS:
        return None
    sample = rows[np.unique(np.linspace(0, rows.shape[0] - 1, min(SAMPLE_ROWS, rows.shape[0])).astype(int))]
    # One search per sensor and direction, all run in step: each grid or bisection step scores every
    # search's shifted rows in one call (9 calls rather than 144 for 8 sensors; the same figures, as
    # scores do not depend on what else is in the batch).
    searches = [(j, sign) for j, columns in enumerate(level_columns) if columns for sign in (1.0, -1.0)]
    units = np.array([_unit(ranges[j]) for j, _ in searches])

    def reaches(which: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """``shifts[i, k]``: the k-th shift tried by search ``which[i]``; whether each takes at least
        half the sample to the alarm level."""
        n_search, n_step = shifts.shape
        shifted = np.repeat(sample[None, :, :], n_search * n_step, axis=0).reshape(n_search, n_step, *sample.shape)
        for i, s in enumerate(which.tolist()):
            j, sign = searches[s]
            shifted[i][:, :, list(level_columns[j])] += sign * shifts[i][:, None, None]
        scores = detector.score(shifted.reshape(-1, sample.shape[1]))
        surprises = -calibrator.log_survival(np.where(np.isfinite(scores), scores, -np.inf))
        return np.asarray(np.median(surprises.reshape(n_search, n_step, -1), axis=2) >= surprise)

    up, down = np.full(len(sensors), np.inf), np.full(len(sensors), np.inf)
    if searches:
        found = _search(reaches, units)
        for (j, sign), shift in zip(searches, found.tolist(), strict=True):
            (up if sign > 0 else down)[j] = shift
    return SmallestShifts(tuple(sensors), up, down)


def _unit(span: float) -> float:
    """A sensor's grid unit: its baseline range of readings, or 1 where that is not a positive number."""
    return float(span) if np.isfinite(span) and span > 0 else 1.0


def _search(reaches: Callable[[np.ndarray, np.ndarray], np.ndarray], units: np.ndarray) -> np.ndarray:
    """Per search, the smallest shift (its ``unit`` x grid, then bisected) for which ``reaches`` holds;
    ``inf`` if none. ``reaches(which, shifts)`` answers one row of shifts per search in ``which``."""
    grid = units[:, None] * np.asarray(GRID)[None, :]
    hit = reaches(np.arange(units.size), grid)
    found = hit.any(axis=1)
    first = np.argmax(hit, axis=1)
    rows = np.arange(units.size)
    hi = grid[rows, first]
    lo = np.where(first > 0, grid[rows, np.maximum(first - 1, 0)], hi)
    bracketed = found & (first > 0)
    if bracketed.any():
        which = np.flatnonzero(bracketed)
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            ok = reaches(which, mid[bracketed][:, None])[:, 0]
            hi[bracketed] = np.where(ok, mid[bracketed], hi[bracketed])
            lo[bracketed] = np.where(ok, lo[bracketed], mid[bracketed])
    return np.where(found, hi, np.inf)


def level_columns(sensors: int, column_features: Sequence[str], kept: np.ndarray | None) -> list[list[int]]:
    """Per sensor, the model columns (after ``kept``, the model's column mask) a shift moves by itself.

    Columns are sensor-major over ``column_features`` (``detector.features``); with no features the
    readings themselves are the columns (``column_features`` is ``("raw",)`` then)."""
    nf = len(column_features)
    shifted = np.array([f in LEVEL_SHIFTED for f in column_features] * sensors, dtype=bool)
    keep = np.ones(sensors * nf, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    model_index = np.cumsum(keep) - 1
    return [
        [int(model_index[c]) for c in range(j * nf, (j + 1) * nf) if shifted[c] and keep[c]] for j in range(sensors)
    ]


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.3g}"
