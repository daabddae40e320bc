"""The alarm entry level that gives a target number of false alerts per week (``false_alerts_per_week``).

An operator is paged per alert, not per row, so the rule is set by how often an *alert* opens on
normal running. Rare events cannot be counted in an hour of baseline: a level met once a week at 1 Hz
is met once in 604,800 rows. The level is therefore extrapolated in two parts:

* **Rows.** The calibrator already extrapolates: its tail (exponential beyond the baseline's
  largest cross-fitted score, or a Generalized Pareto with ``pot``) says how often a normal row's
  score exceeds any level. In *surprise* units ``L = -ln S`` (``S``: the calibrated survival) a normal
  row exceeds ``L`` with probability ``e^-L``, by construction.
* **Rows per alert.** Scores are autocorrelated (rolling features), and an alert needs
  ``min_duration`` rows in a row and ends only after ``exit_duration`` quiet rows, so one alert spans
  many exceeding rows. ``rho`` = alerts per row exceeding the level, measured by running the alarm
  rule itself over the baseline's cross-fitted scores at the highest trial level that still opens
  ``MIN_ALERTS`` alerts there (an effective-sample-size correction: ``1/rho`` is about the length of a
  cluster of exceedances). ``rho`` is capped at 1 (every exceeding row its own alert, the
  conservative bound used when the baseline is too short to count).

Then alerts per week at level ``L`` are ``rho x rows_per_week x e^-L``, and the entry level is

    L = ln(rho x rows_per_week / false_alerts_per_week)

never below the configured ``enter`` (the floor; also the reference quantile of the baseline advice
and the episode check), and never beyond what rows far outside the baseline reach: detectors whose
scores stop growing (iforest, ecod, copod, hbos) would otherwise never alarm (``reachable``).
Measured in ``bench/normal_running.py`` (docs/detection.md): an hour of baseline gets the far tail
wrong by up to 17x either way on independent sensors, which :mod:`detector.recalibration` corrects
as live data accrue; ``rho`` itself held within ~25 % between the baseline and two weeks of live rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detector.alarm import HysteresisAlarm, alarm_onsets
from detector.base import Detector
from detector.calibration import SATURATION_SURVIVAL, Calibrator, log_survival_to_probability

WEEK_S = 7 * 24 * 3600.0
MIN_ALERTS = 10  # alerts the baseline must open at a trial level for rho to be measured there
TRIAL_LEVELS = tuple(np.arange(1.0, 8.01, 0.25).tolist())  # surprise levels tried, e^-1 .. e^-8 of rows
REACHABLE_SURPRISE = 30.0  # a model whose far rows reach this surprise (e^-30 of rows) is not capped
PROBE_DISTANCE = 1e3  # probe rows lie this many spreads of a column from the baseline's median


@dataclass(frozen=True, slots=True)
class AlertRate:
    """What the alarm level of one learned baseline rests on (saved with the model)."""

    rho: float  # alerts per exceeding row, measured on the baseline (1.0: not measurable, the bound)
    sample_s: float  # the baseline's median sampling interval, seconds
    # The probability a row reaches with any one feature column far outside the baseline
    # (``reachable_probability``): detectors whose scores stop growing (iforest, ecod, copod, hbos)
    # never reach a level beyond it.
    reachable: float = 1.0

    def cap(self, floor: float) -> float:
        """The highest alarm level rows far outside the baseline still reach (one nat of surprise below
        the most they reach), never below ``floor``; 1.0 when the model's scores grow without bound."""
        if self.reachable >= probability_at_surprise(REACHABLE_SURPRISE):
            return 1.0
        return max(floor, probability_at_surprise(surprise_at_probability(self.reachable) - 1.0))

    def surprise_level(self, false_alerts_per_week: float) -> float:
        """The entry level in surprise units ``-ln S`` for this target."""
        rows_per_week = WEEK_S / self.sample_s
        return math.log(max(self.rho * rows_per_week / false_alerts_per_week, 1.0))

    def derived(self, false_alerts_per_week: float, floor: float) -> float:
        """The entry level the target asks for, as a calibrated probability, at least ``floor``."""
        return max(floor, probability_at_surprise(self.surprise_level(false_alerts_per_week)))

    def enter(self, false_alerts_per_week: float, floor: float) -> float:
        """The entry level: ``derived``, at most ``cap(floor)``."""
        return min(self.derived(false_alerts_per_week, floor), self.cap(floor))


def probability_at_surprise(level: float) -> float:
    """The calibrated probability of a row whose survival is ``e^-level`` (the saturation rule)."""
    return float(log_survival_to_probability(np.array([math.exp(-level)]), np.array([-level]))[0])


def surprise_at_probability(probability: float) -> float:
    """The inverse of ``probability_at_surprise``: ``-ln S`` of a row with this calibrated probability."""
    q = 1.0 - probability
    if q >= SATURATION_SURVIVAL:
        return -math.log(q) if q > 0 else math.inf
    excess = math.expm1(min(SATURATION_SURVIVAL / q - 1.0, 700.0))  # the compressive map, inverted
    return -math.log(SATURATION_SURVIVAL) + excess


def measure_rho(scores: np.ndarray, calibrator: Calibrator, alarm: HysteresisAlarm) -> float:
    """Alerts per exceeding row of the alarm rule over these cross-fitted baseline ``scores`` (row
    order), at the highest trial level opening at least ``MIN_ALERTS`` alerts; 1.0 when none does.

    ``alarm`` gives the rule's durations and exit; each trial runs a copy entering at the trial level
    (its exit no higher than that level).
    """
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return 1.0
    probability = calibrator.transform(finite)
    exit_level = alarm.exit
    for level in reversed(TRIAL_LEVELS):
        enter = probability_at_surprise(level)
        exit = min(exit_level, enter)
        trial = HysteresisAlarm(enter, exit, alarm.min_duration, alarm.exit_duration, alarm.suppress_rows)
        flags = trial.run(probability)
        alerts = int(alarm_onsets(flags).size)
        if alerts >= MIN_ALERTS:
            return min(1.0, alerts / (finite.size * math.exp(-level)))
    return 1.0


def median_interval_s(ts_ns: np.ndarray) -> float:
    """The median interval between distinct timestamps, seconds (1 s when unknown)."""
    steps = np.diff(np.unique(np.asarray(ts_ns, dtype=np.int64)))
    step_s = float(np.median(steps)) / 1e9 if steps.size else 1.0
    return step_s if step_s > 0 else 1.0


def reachable_probability(detector: Detector, calibrator: Calibrator, F: np.ndarray) -> float:
    """The probability a row reaches when any one feature column lies far outside the feature rows
    ``F`` (``PROBE_DISTANCE`` spreads from the median, the farther-scoring side): the least over the
    columns, as a fault may show in one sensor's column alone."""
    center = np.median(F, axis=0)
    spread = np.maximum(np.std(F, axis=0), 1e-9)
    k = F.shape[1]
    offsets = np.eye(k) * PROBE_DISTANCE * spread
    scores = np.fmax(detector.score(center + offsets), detector.score(center - offsets))
    probability = calibrator.transform(np.where(np.isfinite(scores), scores, -np.inf))
    return float(np.min(probability, initial=1.0))
