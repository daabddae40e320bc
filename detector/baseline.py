"""Learning a baseline: the rows it is learned from, and the model learned at their end.

When the last of ``baseline_rows`` usable rows arrives (:class:`BaselineRows`; more where the rows
saw a sensor move one way only and the baseline goes on, ``baseline_extensions``), :func:`learn_baseline`
fixes the feature window (``window_s``, or ``window_samples`` x the baseline's median sampling
interval, so one setting serves 1 s and 5 min data alike), computes the features over the baseline,
leaves out the first rows whose window is not yet full, and fits the detector and calibrator
(:func:`fit_models`). The calibrator learns the distribution of *out-of-sample* baseline scores: with
``calibration_folds`` >= 2 (the default, 10) by cross-fitting — each contiguous block of the baseline
is scored by a detector fitted on the other blocks, and the live detector is then fitted on all rows;
with 0, the detector is fitted on the older part and the calibrator on the newest
``calibration_fraction``. Calibrating on rows the detector has seen would make new normal rows look
rarer than they are (flexible detectors such as PCA and IForest fit their own baseline closely), so
"probability 0.99" would not mean 1 %.

Drifting sensors. A short baseline cannot say where a slowly wandering sensor (a motor or fluid
temperature following ambient and load) will be an hour later: judged by its level, every normal
excursion beyond the baseline's few minutes would alarm. So each sensor's ``level_drift_ratio``
(variance of its rolling level that the other sensors' levels do not account for ÷ what its sample
noise explains; about 1 for a steady sensor, and for sensors that move together with others, whose
joint movement the model learns) is compared with ``drift_ratio``: above it, the sensor's level
features (``raw``, ``level``) are left out of the model and it is judged only by how it moves
(``spread``, ``slope``, ``residual``, ``range``, whichever are configured; with none of those it is
not judged at all). When every sensor drifts (a single-sensor stream) none is left out;
``drift_ratio=0`` turns the rule off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from detector.alert_rate import AlertRate, measure_rho, median_interval_s, reachable_probability
from detector.base import Detector
from detector.calibration import Calibrator, cross_fitting_folds, holdout_split
from detector.config import MonitorConfig
from detector.episode import BaselineEpisode, find_episode
from detector.features import LEVEL_FEATURES, RollingFeatures, level_drift_ratio, settled_rows
from detector.transitions import one_way_moves

EXPECTED_RANGE_QUANTILES = (0.5, 99.5)  # percent: the baseline's central 99 % of values


class BaselineRows:
    """The usable rows collected towards the next baseline (saved while warming up).

    ``size`` rows make it :attr:`full`; :meth:`extend` asks for ``step`` more (a baseline that saw a
    sensor move one way only goes on, :func:`one_way_sensors`), :meth:`pop` starts the next at ``step``.
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self.size = step
        self._ts: list[np.ndarray] = []
        self._X: list[np.ndarray] = []
        self.count = 0

    def take(self, ts: np.ndarray, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Add the first of ``rows`` (indices into ``ts``/``X``) until full; return those taken."""
        taken = rows[: max(self.size - self.count, 0)]  # none once full (a restore may hold more)
        self._ts.append(ts[taken].copy())
        self._X.append(X[taken].copy())
        self.count += int(taken.size)
        return taken

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(ts, X)`` of the rows so far (None when there are none)."""
        if not self._ts:
            return None
        return np.concatenate(self._ts), np.vstack(self._X)

    @property
    def extensions(self) -> int:
        """How many times this baseline was extended so far."""
        return self.size // self.step - 1

    def extend(self) -> None:
        """``step`` more rows before it is full."""
        self.size += self.step

    def pop(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row so far, and start the next baseline empty."""
        arrays = self.arrays()
        assert arrays is not None
        self.clear()
        return arrays

    def clear(self) -> None:
        self._ts, self._X, self.count, self.size = [], [], 0, self.step

    def restore(self, ts: np.ndarray, X: np.ndarray, extensions: int) -> None:
        """Rows saved while warming up. A baseline is only ever saved short of full, so one holding
        ``k`` steps' rows or more had been extended: it goes on to the next step, unless
        ``extensions`` (now allowed) ends it sooner. Then it is full, and learned at the next row from
        its first ``(extensions + 1) * step`` rows: those it would have learned from with that setting."""
        self.size = min(len(ts) // self.step + 1, extensions + 1) * self.step
        self._ts = [np.asarray(ts, dtype=np.int64)[: self.size]]
        self._X = [np.asarray(X, dtype=np.float64)[: self.size]]
        self.count = int(self._ts[0].size)


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare fields, not these
class FittedModels:
    """A detector and its calibrator, and the out-of-sample scores the calibrator learned from."""

    detector: Detector
    calibrator: Calibrator
    calibration_scores: np.ndarray | None  # cross-fitted, in row order (None with a hold-out)


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare fields, not these
class BaselineModel:
    """What a baseline taught; adaptation replaces only ``detector`` and ``calibrator``.

    Per sensor: ``expected_low``/``expected_high`` (the central 99 % of the readings), ``center``
    (median), ``drifting``, ``one_way`` (+1 the baseline saw it rise only, -1 fall only, else 0:
    :mod:`detector.transitions`; None for a model saved before it). Per feature column, all sensors:
    ``feature_low``/``feature_high`` (the central 99 % of the settled baseline's features, for
    explanations). ``columns``: the feature columns the model uses (None = all).
    """

    window_s: float
    detector: Detector
    calibrator: Calibrator
    expected_low: np.ndarray
    expected_high: np.ndarray
    center: np.ndarray
    feature_low: np.ndarray
    feature_high: np.ndarray
    drifting: np.ndarray
    columns: np.ndarray | None
    episode: BaselineEpisode | None
    alert_rate: AlertRate
    one_way: np.ndarray | None = None

    def alarm_enter(self, config: MonitorConfig) -> float:
        """The alarm entry level: derived from ``false_alerts_per_week`` (see :mod:`detector.alert_rate`),
        never below ``enter``; ``enter`` itself without a target."""
        if config.false_alerts_per_week is None:
            return config.enter
        return self.alert_rate.enter(config.false_alerts_per_week, config.enter)

    def refitted(self, fitted: FittedModels, F: np.ndarray) -> BaselineModel:
        """This model with a refitted detector and calibrator (adaptation, feedback), fitted on rows
        like ``F``: what far rows reach is measured again."""
        reachable = reachable_probability(fitted.detector, fitted.calibrator, F)
        rate = dataclasses.replace(self.alert_rate, reachable=reachable)
        return dataclasses.replace(self, detector=fitted.detector, calibrator=fitted.calibrator, alert_rate=rate)

    def alarm_cap(self, config: MonitorConfig) -> float:
        """The highest level any raise (recalibration, feedback) may take: what far rows still reach."""
        return self.alert_rate.cap(config.enter)

    def model_rows(self, F: np.ndarray) -> np.ndarray:
        """Feature rows over every column → over the model's columns."""
        return F if self.columns is None else F[:, self.columns]


FitModels = Callable[[np.ndarray, MonitorConfig], FittedModels]


def fit_models(F: np.ndarray, config: MonitorConfig, normal: np.ndarray | None = None) -> FittedModels:
    """Fit detector and calibrator on the model's feature rows ``F`` (at the baseline and at each refit).

    ``normal``: more rows known to be normal (an operator marked them, :mod:`detector.feedback`): every
    model learns them, the calibrator never does. Scored by a model that had not seen them they look
    as unusual as a fault, and calibrating on that would put the alarm level above faults too.
    """
    extra = np.empty((0, F.shape[1])) if normal is None else normal
    if config.calibration_folds >= 2:
        # Cross-fitting: every row is scored by a model that did not see it, so the calibrator learns
        # from all of them; the live detector is then fitted on all rows.
        scores = cross_fitted_scores(F, config, extra)
        detector = config.make_detector().fit(np.vstack([F, extra]))
        return FittedModels(detector, config.make_calibrator().fit(scores), scores)
    fit_idx, calib_idx = holdout_split(F.shape[0], config.calibration_fraction)
    detector = config.make_detector().fit(np.vstack([F[fit_idx], extra]))
    return FittedModels(detector, config.make_calibrator().fit(detector.score(F[calib_idx])), None)


def cross_fitted_scores(F: np.ndarray, config: MonitorConfig, normal: np.ndarray | None = None) -> np.ndarray:
    """Each cross-fitting block of ``F`` scored by a model fitted on the other blocks (and ``normal``)."""
    extra = np.empty((0, F.shape[1])) if normal is None else normal
    scores = np.empty(F.shape[0])
    for fold in cross_fitting_folds(F.shape[0], config.calibration_folds):
        rest = np.setdiff1d(np.arange(F.shape[0]), fold)
        scores[fold] = config.make_detector().fit(np.vstack([F[rest], extra])).score(F[fold])
    return scores


def learn_baseline(
    ts: np.ndarray, X: np.ndarray, config: MonitorConfig, fit: FitModels = fit_models
) -> tuple[BaselineModel, RollingFeatures, np.ndarray]:
    """The model of these baseline rows, the rolling features that continue from them (primed with
    them when features are on), and the model's feature rows of the settled rows (where adaptation's
    memory starts). Raises whatever the detector raises when it cannot learn them.

    ``fit`` replaces :func:`fit_models` (``bench/baseline_episode.py`` measures an alternative).
    """
    window_s = baseline_window_s(ts, config)
    features = RollingFeatures(window_s, config.column_features)
    drifting, columns = choose_columns(ts, X, window_s, config)
    settled = settled_rows(ts, window_s if config.features else 0.0)
    F_all = features.update(ts, X) if config.features else X
    feature_low, feature_high = np.percentile(F_all[settled], EXPECTED_RANGE_QUANTILES, axis=0)
    F = (F_all if columns is None else F_all[:, columns])[settled]
    expected_low, expected_high = np.percentile(X, EXPECTED_RANGE_QUANTILES, axis=0)
    center = np.median(X, axis=0)
    fitted = fit(F, config)
    scores = fitted.calibration_scores
    episode = None if scores is None else find_episode(ts[settled], scores, fitted.calibrator, config)
    rho = 1.0 if scores is None else measure_rho(scores, fitted.calibrator, config.make_alarm())
    reachable = reachable_probability(fitted.detector, fitted.calibrator, F)
    alert_rate = AlertRate(rho, median_interval_s(ts), reachable)
    one_way = one_way_sensors(ts, X, window_s, drifting)
    model = BaselineModel(
        window_s,
        fitted.detector,
        fitted.calibrator,
        expected_low,
        expected_high,
        center,
        feature_low,
        feature_high,
        drifting,
        columns,
        episode,
        alert_rate,
        one_way,
    )
    return model, features, F


def one_way_sensors(ts: np.ndarray, X: np.ndarray, window_s: float, drifting: np.ndarray) -> np.ndarray:
    """Per sensor, +1 the rows saw it rise only, -1 fall only, else 0 (:mod:`detector.transitions`);
    0 for drifting sensors, whose levels are not judged."""
    return np.where(drifting, 0, one_way_moves(ts, X, window_s)).astype(np.int8)


def baseline_one_way(ts: np.ndarray, X: np.ndarray, config: MonitorConfig) -> np.ndarray:
    """:func:`one_way_sensors` of rows collected towards a baseline, before it is learned: what
    :func:`learn_baseline` would find, at a fraction of its cost (no features, no fits)."""
    window_s = baseline_window_s(ts, config)
    drifting, _ = choose_columns(ts, X, window_s, config)
    return one_way_sensors(ts, X, window_s, drifting)


def baseline_window_s(ts: np.ndarray, config: MonitorConfig) -> float:
    """The feature window of a baseline of these stamps: ``window_s``, or ``window_samples`` x their
    median sampling interval."""
    return config.window_s if config.window_s is not None else window_from_sampling(ts, config.window_samples)


def choose_columns(
    ts: np.ndarray, X: np.ndarray, window_s: float, config: MonitorConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(drifting, columns)``: per sensor, whether its level wanders; the feature columns the model
    uses (None = all), without the level features of drifting sensors (see the module docstring)."""
    d = X.shape[1]
    drifting = np.zeros(d, dtype=bool)
    if config.drift_ratio > 0:
        drifting = level_drift_ratio(ts, X, window_s) > config.drift_ratio
        if drifting.all():
            drifting[:] = False  # nothing steady to lean on: judge every sensor by its level
    judged_by_level = np.array([f in LEVEL_FEATURES for f in config.column_features])
    # Some sensor is steady, so some columns always remain.
    columns = ~(drifting[:, None] & judged_by_level[None, :]).ravel()
    return drifting, None if columns.all() else columns


def window_from_sampling(ts: np.ndarray, samples: int) -> float:
    """``samples`` times the median interval between distinct timestamps (seconds; 1 s if unknown)."""
    return samples * median_interval_s(ts)
