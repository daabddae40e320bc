"""Recalibration (``recalibrate: true``): the calibrator keeps learning the live model's normal scores.

An hour of baseline holds few independent rows (rolling windows make neighbours alike: ~240 at 1 Hz
with 15-row windows), so the far tail of its cross-fitted scores, from which the alarm level is
extrapolated (:mod:`detector.alert_rate`), rests on a dozen independent events. Measured on
independent Gaussian sensors, the live model's scores exceeded the baseline's largest score 0.4x to
17x as often as the calibration promised, depending on the seed alone. The live service sees normal
running after the baseline; the scores the live model gives it are the most relevant data there is.

So every ``RECALIBRATION_EVERY`` baseline lengths of scored rows the score a normal row exceeds as
rarely as the alarm level says is read again from the baseline's scores and the live ones learned
since (rows outside alerts, below). The tail is a Generalized Pareto above a threshold, the
baseline's ``TAIL_QUANTILE`` (0.99) quantile, fitted to the excesses over it, whatever the baseline's
calibrator: the live scores' tail is heavier than an exponential one (on independent sensors, the
score gained 0.91, 1.03 and 1.42 per decade of survival from 1e-2 to 1e-5), so an exponential tail
put the level too low; a threshold at the 0.95 quantile put it so high that 0.1 alerts a week came,
and 3-width faults were flagged later.

Every learned live score beyond the threshold counts, however long the asset has run (peaks over
threshold as in SPOT, Siffer et al., KDD 2017): the share of rows beyond it is counted over all the
rows learned, and the excesses are fitted on a uniform sample of up to ``PEAKS_KEPT`` of them. Until
2026-12-07 the tail was fitted on a uniform sample of the live scores themselves (``memory``, up to
``RECALIBRATION_MEMORY`` baseline lengths: 36,000 of the 604,800 rows of a week at 1 Hz): the level one row in
~100,000 reaches was then extrapolated over three decades from a few hundred excesses, it wandered
with them (on one generated asset from surprise 16 down to 12.5 over days 5-9, and 11 alerts came in
the five days after), and an alert that was learned entered the sample with a chance of 3 % two
weeks in. With every peak, independent sensors (``bench/normal_running.py``) gave 0.83 alerts a week
over seeds 1-18 instead of 1.11, and 0.78 instead of 1.36 over seeds 19-36.

The memory of live scores (:class:`detector.memory.NormalMemory`, the same for any batching and
across restarts) still tells whether they climb (below).

When that score is higher than the one at which the baseline's calibrator reaches the level, the
live scores say the tail is heavier than the baseline showed, and the alarm
level is raised to it (``enter_``, a probability on the baseline calibrator's scale). It is never
lowered below the level derived from the baseline: where the baseline's scores were *higher* than
the live model's (a process that moves between operating points gives cross-fitted scores that no
live row reaches), trusting the live scores lowered the level and measured more alerts on normal
running, not fewer. The calibrator and the probabilities it reports are not changed. Nor is the
level raised while the live scores climb (the medians of six consecutive stretches of the memory all
rising): a slow drift or wear passes through moderate scores before it alarms, and learning those
would chase it. The detector is not refitted (that is ``adapt``, which refits the calibrator too:
recalibration is off when ``adapt`` is on).

Rows with high scores that did not open an alert are learned, as the tail needs them. A fault's
first rows score high before its alert opens, and its last ones after the alert closes: learned,
they would make the same fault look ordinary. So a row is learned only once ``guard`` newer rows
have been scored without an alert opening (``GUARD_WINDOWS`` feature windows, in rows), and the rows
of a long alert, the ``guard`` rows before it and the ``guard`` rows after it are never learned.

A *short* alert, closed by itself within ``SHORT_ALERT_WINDOWS`` feature windows, none of whose
scores lies beyond the baseline's largest by more than ``SHORT_ALERT_REACH`` times that score's
distance from the baseline's median (``ceiling``), is learned with the rows around it. Without that,
the memory was censored just where the level is read: live rows beyond the level open alerts, so
they never reached the memory, whose tail therefore looked lighter than the live scores'; the level
stayed too low, and the same excursions alerted again. Measured on independent Gaussian sensors (14
days, seed 7), the memory's 0.9999 quantile was 3.14 where the live scores' was 3.43, and 16 alerts
came where the target allows 2. Learning short alerts took seeds 1-9 from 2.9 to 1.5 alerts a week,
and seeds 10-18 (not looked at while choosing) from 3.0 to 1.2 (docs/detection.md). A fault that
persists alerts for longer than two windows and is never learned. Brief excursions far beyond
anything the baseline scored are not learned either: without that bound (found in review), a loose
contact that sent one sensor 40 noise widths off for three rows every 400 alerted twice, was then
learned, and its excursions lifted the level so far that a later 6-width fault of another sensor
went unflagged (``tests/test_recalibration.py``).
"""

from __future__ import annotations

import math

import numpy as np

from detector.alert_rate import surprise_at_probability
from detector.calibration import Calibrator, fit_gpd_tail, gpd_excess_at_log_sf
from detector.config import MonitorConfig
from detector.memory import NormalMemory

RECALIBRATION_MEMORY = 10  # live scores kept, in baseline lengths
RECALIBRATION_EVERY = 1  # scored rows between refits, in baseline lengths
TREND_BLOCKS = 6  # stretches of the live memory whose medians must not all rise for the level to be raised
# Live scores are kept in single precision: a relative error of 6e-8 in a score moves the recalibrated
# level by as little, and a full memory holds 47 KB an asset instead of 94.
LIVE_SCORES_DTYPE = np.float32
GUARD_WINDOWS = 4  # rows before an alert opens and after it closes that are not learned, in feature windows
# The recalibrated level is read from a Generalized Pareto tail above this quantile of the baseline's and
# the remembered live scores (module docstring).
TAIL_QUANTILE = 0.99
# A short alert is learned only if none of its scores exceeds the baseline's largest score by more than
# this many times that score's distance from the baseline's median (module docstring).
SHORT_ALERT_REACH = 2.0
SHORT_ALERT_WINDOWS = 2  # an alert of at most this many feature windows (in rows) is learned with the rows around it
PEAKS_KEPT = 4000  # live scores above the tail threshold kept (a uniform sample of all of them), per asset
MIN_EXCESSES = 10  # fewer excesses over the threshold than this: an exponential tail
XI_BOUNDS = (-0.5, 0.5)  # the Generalized Pareto shape is clamped to these (PotCalibrator's default)


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
        held: np.ndarray | None = None,
        peaks: NormalMemory | None = None,
        peaks_of: int = 0,
    ) -> None:
        self.baseline_scores = np.asarray(baseline_scores, dtype=np.float64).ravel()
        finite = self.baseline_scores[np.isfinite(self.baseline_scores)]
        top, middle = (float(np.max(finite)), float(np.median(finite))) if finite.size else (math.inf, 0.0)
        self.ceiling = top + SHORT_ALERT_REACH * (top - middle)  # a short alert scoring above it is not learned
        self.threshold = float(np.quantile(finite, TAIL_QUANTILE)) if finite.size else math.inf
        self.memory = memory
        # Every learned score beyond ``threshold`` (a uniform sample of them) and how many rows were
        # learned since the peaks began (an older saved model has none: they begin at its restart).
        self.peaks = peaks if peaks is not None else live_peaks()
        self.peaks_of = peaks_of
        self.since_refit = since_refit
        self.pending = [] if pending is None else np.asarray(pending, dtype=np.float64).ravel().tolist()
        self.guard_left = guard_left  # rows still to skip after an alert closed
        self.in_alert = in_alert
        # The scores of the open alert while it is short; None once it is long (or, restored from a
        # model saved before short alerts were learned, when its length is unknown).
        self.held: list[float] | None = (
            None if held is None and in_alert else [] if held is None else np.asarray(held, float).ravel().tolist()
        )
        self.enter_ = enter  # the alarm level the live scores call for (0: none yet)

    @classmethod
    def start(cls, config: MonitorConfig, calibrator: Calibrator) -> Recalibration:
        """From the scores ``calibrator`` learned (shared, not copied: ~5 KB an asset), with an empty memory."""
        return cls(calibrator.baseline_scores_, live_memory(config))

    def rows_to_refit(self, config: MonitorConfig) -> int:
        """How many more rows may be scored by the current calibrator."""
        return RECALIBRATION_EVERY * config.baseline_rows - self.since_refit

    def learn(self, scores: np.ndarray, flags: np.ndarray, guard: int, short: int = 0) -> None:
        """Remember the finite scores of rows outside an alert and ``guard`` rows away from one, and those
        of an alert of at most ``short`` rows with the rows around it (module docstring)."""
        if not self.in_alert and not self.guard_left and not flags.any():
            self._learn_all(scores, guard)  # the usual batch: no alert near it
            return
        pending, learned = self.pending, []
        for score, alerting in zip(scores.tolist(), flags.tolist(), strict=True):
            if alerting:
                self.in_alert = True
                if self.held is not None:
                    self.held.append(score)
                    if len(self.held) > short or score > self.ceiling:
                        self.held = None  # long, or far beyond normal running: perhaps a fault, never learned
                continue
            if self.in_alert:  # the first row after an alert
                self.in_alert = False
                if self.held is not None:  # a short one: a tail excursion of normal running
                    pending.extend(v for v in self.held if math.isfinite(v))
                    self.held = []
                else:  # neither its rows nor those before it (a fault's first ones) nor ``guard`` after it
                    pending.clear()
                    self.held = []
                    self.guard_left = max(guard - 1, 0)  # this row is one
                    continue
            elif self.guard_left:
                self.guard_left -= 1
                continue
            if math.isfinite(score):
                pending.append(score)
                if len(pending) > guard:  # one a row, as in _learn_all
                    learned.append(pending.pop(0))
        self._remember(np.array(learned, dtype=np.float64))
        self.since_refit += int(scores.size)

    def _learn_all(self, scores: np.ndarray, guard: int) -> None:
        """:meth:`learn` of a batch with no alert in it and none just closed, without the loop: each
        finite score joins ``pending``, and each one that joins a ``pending`` of more than ``guard``
        pushes its oldest out into the memory (one each: a ``pending`` longer than ``guard``, left by
        a model with a longer guard, stays as long)."""
        finite = scores[np.isfinite(scores)].tolist()
        combined = self.pending + finite
        pushed = min(len(finite), max(0, len(combined) - guard))
        self._remember(np.array(combined[:pushed], dtype=np.float64))
        self.pending = combined[pushed:]
        self.since_refit += int(scores.size)

    def _remember(self, scores: np.ndarray) -> None:
        """Learn these scores: all into the memory, those beyond the tail threshold into the peaks too.
        An empty add is skipped: it changes nothing and costs ~45 µs, per asset and call."""
        if not scores.size:
            return
        self.memory.add(scores[:, None])
        beyond = scores[scores > self.threshold]
        if beyond.size:  # most batches hold none
            self.peaks.add(beyond[:, None])
        self.peaks_of += int(scores.size)

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
        level = self.tail_level(surprise_at_probability(enter))
        self.enter_ = float(calibrator.transform(np.array([level]))[0])
        return self.enter_

    def tail_level(self, surprise: float) -> float:
        """The score a normal row exceeds with probability ``e^-surprise``: a Generalized Pareto tail over
        the excesses of the baseline's and every learned live score beyond ``threshold`` (module
        docstring); ``-inf`` (no raise) when the baseline has no finite score."""
        baseline = self.baseline_scores[np.isfinite(self.baseline_scores)]
        if not math.isfinite(self.threshold):
            return -math.inf
        beyond = baseline[baseline > self.threshold]
        peaks = self.peaks.in_time_order().ravel().astype(np.float64)
        excess = np.concatenate([beyond, peaks]) - self.threshold
        if excess.size == 0:  # nothing lies beyond it (a constant baseline): the threshold itself
            return self.threshold
        share = (beyond.size + self.peaks.seen) / max(baseline.size + self.peaks_of, 1)
        # how much rarer than the threshold the level is, among the rows beyond it (log, <= 0)
        log_ratio = min(-surprise - math.log(share), 0.0)
        xi, sigma = fit_gpd_tail(excess, MIN_EXCESSES, XI_BOUNDS)  # PotCalibrator's tail, and its continuation
        return self.threshold + gpd_excess_at_log_sf(log_ratio, xi, sigma)


def live_memory(config: MonitorConfig) -> NormalMemory:
    """An empty memory of live scores."""
    return NormalMemory(RECALIBRATION_MEMORY * config.baseline_rows, 1, LIVE_SCORES_DTYPE)


def restored_live_memory(config: MonitorConfig, scores: np.ndarray, counts: np.ndarray, seen: int) -> NormalMemory:
    """The memory of live scores :meth:`NormalMemory.get_state` saved (``scores`` in slot order)."""
    rows = np.asarray(scores).reshape(-1, 1)
    return NormalMemory.from_state(RECALIBRATION_MEMORY * config.baseline_rows, rows, counts, seen, LIVE_SCORES_DTYPE)


def live_peaks() -> NormalMemory:
    """An empty store of live scores beyond the tail threshold."""
    return NormalMemory(PEAKS_KEPT, 1, LIVE_SCORES_DTYPE)


def restored_live_peaks(scores: np.ndarray, counts: np.ndarray, seen: int) -> NormalMemory:
    """The peaks :meth:`NormalMemory.get_state` saved (``scores`` in slot order)."""
    return NormalMemory.from_state(PEAKS_KEPT, np.asarray(scores).reshape(-1, 1), counts, seen, LIVE_SCORES_DTYPE)


def rising(scores: np.ndarray, blocks: int = TREND_BLOCKS) -> bool:
    """Whether the medians of ``blocks`` consecutive stretches of ``scores`` (oldest first) strictly
    increase: a slow drift or wear, which must reach the alarm, not be learned as a heavier tail.
    Stationary scores give strictly increasing medians by chance once in ``blocks!`` refits (720 for
    6), and then the level merely falls back to where the baseline put it."""
    if scores.size < blocks:
        return False
    medians = [float(np.median(part)) for part in np.array_split(scores, blocks)]
    return all(b > a for a, b in zip(medians, medians[1:], strict=False))
