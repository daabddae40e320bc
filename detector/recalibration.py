"""Recalibration (``recalibrate: true``): the calibrator keeps learning the live model's normal scores.

An hour of baseline holds few independent rows (rolling windows make neighbours alike: ~240 at 1 Hz
with 15-row windows), so the far tail of its cross-fitted scores, from which the alarm level is
extrapolated (:mod:`detector.alert_rate`), rests on a dozen independent events. Measured on
independent Gaussian sensors, the live model's scores exceeded the baseline's largest score 0.4x to
17x as often as the calibration promised, depending on the seed alone. The live service sees normal
running after the baseline; the scores the live model gives it are the most relevant data there is.

So every ``RECALIBRATION_EVERY`` baseline lengths of scored rows a calibrator is fitted on the
baseline's scores plus a memory of live scores (a uniform sample of the scored rows outside alerts,
up to ``RECALIBRATION_MEMORY`` baseline lengths: :class:`detector.memory.NormalMemory`, the same for
any batching and across restarts), and the score at which *it* reaches the alarm level is found.
When that score is higher than the one at which the baseline's calibrator reaches the level, the
live scores say the tail is heavier than the baseline showed, and the alarm level is raised to it
(``enter_``, a probability on the baseline calibrator's scale). It is never lowered below the level
derived from the baseline: where the baseline's scores were *higher* than the live model's (a
process that moves between operating points gives cross-fitted scores that no live row reaches),
trusting the live scores lowered the level and measured more alerts on normal running, not fewer.
The calibrator and the probabilities it reports are not changed. Nor is the level raised while
the live scores climb (the medians of six consecutive stretches of the memory all rising): a slow
drift or wear passes through moderate scores before it alarms, and learning those would chase it.
The detector is not refitted (that is ``adapt``, which refits the calibrator too: recalibration is
off when ``adapt`` is on).

Rows in an alert are never learned; rows with high scores that did not open an alert are, as the
tail needs them. A fault's first rows score high before its alert opens, and its last ones after
the alert closes: learned, they would make the same fault look ordinary. So a row is learned only
once ``guard`` newer rows have been scored without an alert opening (``GUARD_WINDOWS`` feature
windows, in rows), and the ``guard`` rows after an alert closes are not learned.
"""

from __future__ import annotations

import math

import numpy as np

from detector.calibration import Calibrator
from detector.config import MonitorConfig
from detector.episode import score_at_probability
from detector.memory import NormalMemory

RECALIBRATION_MEMORY = 10  # live scores kept, in baseline lengths
RECALIBRATION_EVERY = 1  # scored rows between refits, in baseline lengths
TREND_BLOCKS = 6  # stretches of the live memory whose medians must not all rise for the level to be raised
# Live scores are kept in single precision: a relative error of 6e-8 in a score moves the recalibrated
# level by as little, and a full memory holds 47 KB an asset instead of 94.
LIVE_SCORES_DTYPE = np.float32
GUARD_WINDOWS = 4  # rows before an alert opens and after it closes that are not learned, in feature windows


class Recalibration:
    """The baseline's calibration scores, the memory of live normal scores, and rows since the last refit."""

    def __init__(
        self,
        baseline_scores: np.ndarray,
        memory: NormalMemory,
        since_refit: int = 0,
        pending: np.ndarray | None = None,
        guard_left: int = 0,
        in_alert: bool = False,
        enter: float = 0.0,
    ) -> None:
        self.baseline_scores = np.asarray(baseline_scores, dtype=np.float64).ravel()
        self.memory = memory
        self.since_refit = since_refit
        self.pending = [] if pending is None else np.asarray(pending, dtype=np.float64).ravel().tolist()
        self.guard_left = guard_left  # rows still to skip after an alert closed
        self.in_alert = in_alert
        self.enter_ = enter  # the alarm level the live scores call for (0: none yet)

    @classmethod
    def start(cls, config: MonitorConfig, calibrator: Calibrator) -> Recalibration:
        """From the scores ``calibrator`` learned (both calibrators keep them), with an empty memory."""
        scores = np.asarray(calibrator.get_state()["baseline_scores"], dtype=np.float64)
        return cls(scores, live_memory(config))

    def rows_to_refit(self, config: MonitorConfig) -> int:
        """How many more rows may be scored by the current calibrator."""
        return RECALIBRATION_EVERY * config.baseline_rows - self.since_refit

    def learn(self, scores: np.ndarray, flags: np.ndarray, guard: int) -> None:
        """Remember the finite scores of rows outside an alert and ``guard`` rows away from one."""
        if not self.in_alert and not self.guard_left and not flags.any():
            self._learn_all(scores, guard)  # the usual batch: no alert near it
            return
        pending, learned = self.pending, []
        for score, alerting in zip(scores.tolist(), flags.tolist(), strict=True):
            if alerting:
                if not self.in_alert:
                    pending.clear()  # the rows before an alert opened: perhaps the fault's first ones
                self.in_alert = True
            elif self.in_alert or self.guard_left:
                self.guard_left = max(guard - 1, 0) if self.in_alert else self.guard_left - 1  # this row is one
                self.in_alert = False
            elif math.isfinite(score):
                pending.append(score)
                if len(pending) > guard:
                    learned.append(pending.pop(0))
        self.memory.add(np.array(learned, dtype=np.float64)[:, None])
        self.since_refit += int(scores.size)

    def _learn_all(self, scores: np.ndarray, guard: int) -> None:
        """:meth:`learn` of a batch with no alert in it and none just closed, without the loop: each
        finite score joins ``pending``, and each one that joins a ``pending`` of more than ``guard``
        pushes its oldest out into the memory (one each: a ``pending`` longer than ``guard``, left by
        a model with a longer guard, stays as long)."""
        finite = scores[np.isfinite(scores)].tolist()
        combined = self.pending + finite
        pushed = min(len(finite), max(0, len(combined) - guard))
        self.memory.add(np.array(combined[:pushed], dtype=np.float64)[:, None])
        self.pending = combined[pushed:]
        self.since_refit += int(scores.size)

    def refit_due(self, config: MonitorConfig) -> bool:
        return self.since_refit >= RECALIBRATION_EVERY * config.baseline_rows

    def refit(self, config: MonitorConfig, calibrator: Calibrator, enter: float) -> float:
        """The alarm level (on ``calibrator``'s scale) at which a calibrator fitted on the baseline's
        and the remembered live scores reaches ``enter``; also kept as ``enter_``."""
        self.since_refit = 0
        live = self.memory.in_time_order().ravel()
        if rising(live):
            self.enter_ = 0.0  # the scores climb: wear or drift, not a heavier tail; keep the baseline's level
            return self.enter_
        scores = np.concatenate([self.baseline_scores, live])
        scores = scores[np.isfinite(scores)]
        recalibrated = config.make_calibrator().fit(scores)
        level = score_at_probability(recalibrated, enter, float(scores.min()), float(scores.max()))
        self.enter_ = float(calibrator.transform(np.array([level]))[0])
        return self.enter_


def live_memory(config: MonitorConfig) -> NormalMemory:
    """An empty memory of live scores."""
    return NormalMemory(RECALIBRATION_MEMORY * config.baseline_rows, 1, LIVE_SCORES_DTYPE)


def restored_live_memory(config: MonitorConfig, scores: np.ndarray, counts: np.ndarray, seen: int) -> NormalMemory:
    """The memory of live scores :meth:`NormalMemory.get_state` saved (``scores`` in slot order)."""
    rows = np.asarray(scores).reshape(-1, 1)
    return NormalMemory.from_state(RECALIBRATION_MEMORY * config.baseline_rows, rows, counts, seen, LIVE_SCORES_DTYPE)


def rising(scores: np.ndarray, blocks: int = TREND_BLOCKS) -> bool:
    """Whether the medians of ``blocks`` consecutive stretches of ``scores`` (oldest first) strictly
    increase: a slow drift or wear, which must reach the alarm, not be learned as a heavier tail.
    Stationary scores give strictly increasing medians by chance once in ``blocks!`` refits (720 for
    6), and then the level merely falls back to where the baseline put it."""
    if scores.size < blocks:
        return False
    medians = [float(np.median(part)) for part in np.array_split(scores, blocks)]
    return all(b > a for a, b in zip(medians, medians[1:], strict=False))
