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

import functools
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

    def reaches(columns: Sequence[int], sign: float, steps: np.ndarray) -> np.ndarray:
        """Per shift (``sign`` x ``steps``): does it take at least half the sample to the alarm level?"""
        shifted = np.repeat(sample[None, :, :], steps.size, axis=0)
        shifted[:, :, list(columns)] += sign * steps[:, None, None]
        scores = detector.score(shifted.reshape(-1, sample.shape[1]))
        surprises = -calibrator.log_survival(np.where(np.isfinite(scores), scores, -np.inf))
        return np.asarray(np.median(surprises.reshape(steps.size, -1), axis=1) >= surprise)

    up, down = np.full(len(sensors), np.inf), np.full(len(sensors), np.inf)
    for j, columns in enumerate(level_columns):
        if not columns:
            continue
        unit = float(ranges[j]) if np.isfinite(ranges[j]) and ranges[j] > 0 else 1.0
        for sign, out in ((1.0, up), (-1.0, down)):
            out[j] = _search(functools.partial(reaches, columns, sign), unit)
    return SmallestShifts(tuple(sensors), up, down)


def _search(reaches: Callable[[np.ndarray], np.ndarray], unit: float) -> float:
    """The smallest shift (``unit`` x grid, then bisected) for which ``reaches(shifts)`` holds; ``inf`` if none."""
    grid = np.asarray(GRID) * unit
    hit = np.flatnonzero(reaches(grid))
    if hit.size == 0:
        return float("inf")
    first = int(hit[0])
    if first == 0:
        return float(grid[0])
    lo, hi = float(grid[first - 1]), float(grid[first])
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        if bool(reaches(np.array([mid]))[0]):
            hi = mid
        else:
            lo = mid
    return hi


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
