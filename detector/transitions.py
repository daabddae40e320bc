"""Which sensors a baseline saw move one way only: it rose and never fell, or fell and never rose.

A baseline teaches the states the process passed through, not only the levels it sat at. A pump whose
baseline hour stepped its load up 0.55 → 0.75 → 0.95 saw its temperatures lag *below* their level for
each new load, never above it: after a load fall, later, they lie above it, and by more than anything
the baseline held. On ``bench/normal_running.py``'s pump, 206 of 225 false alerts opened after a load
fell; the same pump whose baseline hour ran 0.95, 0.55, 0.75 gave 0.11 alerts a week instead of
10.3. No score can tell such a state from a fault, but the baseline itself shows the gap, and an
engineer can close it by learning over a stretch that holds changes both ways.

Per sensor, the means of consecutive feature windows (non-overlapping, ``window_s`` long) are
compared one window to the next. The noise of that difference is its median absolute deviation
(``1.4826 x MAD``, which the few moves of a mostly steady baseline barely touch; the standard
deviation when the MAD is zero, as for a quantised sensor). A difference beyond ``STEP_NOISE`` noise
widths is a real move. A sensor whose real moves add up to more than ``MIN_TRAVEL`` noise widths, at
least ``ONE_WAY`` of it in one direction, moved one way: +1 rose only, -1 fell only, else 0. Noise
alone, even AR(1) noise that wanders (phi 0.99 at 1 Hz), makes almost no real moves and both ways.
A slow drift of a few hundredths of a noise width per window is no move at all: drifting sensors
(:mod:`detector.baseline`) are judged by how they move, not by their level, and are left out anyway.
"""

from __future__ import annotations

import numpy as np

from detector.features import window_to_ns

STEP_NOISE = 2.5  # a change of a sensor's block mean beyond this many noise widths counts as a move
MIN_TRAVEL = 20.0  # moves adding up to fewer noise widths than this: the sensor did not move
ONE_WAY = 0.9  # at least this share of the moves' travel in one direction: it moved one way
BLOCK_WINDOWS = 4  # means over blocks of this many feature windows: a ramp's change per block stands out
MIN_BLOCKS = 8  # fewer blocks than this: too few differences to judge


def one_way_moves(ts_ns: np.ndarray, X: np.ndarray, window_s: float) -> np.ndarray:
    """Per sensor, +1 when the baseline's real moves all but rose, -1 when they all but fell, else 0
    (int8; see the module docstring). Rows finite and in time order, as a baseline's are."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros(X.shape[1], dtype=np.int8)
    if ts.size == 0:
        return out
    bucket = (ts - ts[0]) // (BLOCK_WINDOWS * window_to_ns(window_s))
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    if starts.size < MIN_BLOCKS:
        return out
    counts = np.diff(np.append(starts, ts.size))
    delta = np.diff(np.add.reduceat(X, starts, axis=0) / counts[:, None], axis=0)
    curve = np.diff(delta, axis=0)  # a steady move or a lag's smooth curve cancels here; noise does not
    noise = 1.4826 * np.median(np.abs(curve - np.median(curve, axis=0)), axis=0) / np.sqrt(3.0)
    noise = np.where(noise > 0, noise, np.std(curve, axis=0) / np.sqrt(3.0))
    moves = np.abs(delta) > STEP_NOISE * noise
    rise = np.where(moves & (delta > 0), delta, 0.0).sum(axis=0)
    fall = np.where(moves & (delta < 0), -delta, 0.0).sum(axis=0)
    travel = rise + fall
    moved = (noise > 0) & (travel > MIN_TRAVEL * noise)
    out[moved & (rise >= ONE_WAY * travel)] = 1
    out[moved & (fall >= ONE_WAY * travel)] = -1
    return out
