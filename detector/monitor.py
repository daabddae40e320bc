"""One asset's detection chain — the single object the live service and the backtest both run.

    aligned rows → rolling features → detector (raw score) → calibrator (probability)
                 → alarm rule (hysteresis, duration, suppression) → verdicts with explanations

Baseline. The first ``baseline_rows`` finite rows are learned as normal. When the last of them
arrives: the feature window is fixed (``window_s``, or ``window_samples`` × the baseline's median
sampling interval, so one setting serves 1 s and 5 min data alike), features are computed over the
baseline, the first rows whose window is not yet full are left out, and the calibrator learns the
distribution of *out-of-sample* baseline scores: with ``calibration_folds`` ≥ 2 (the default, 10)
by cross-fitting — each contiguous block of the baseline is scored by a detector fitted on the
other blocks, and the live detector is then fitted on all rows; with 0, the detector is fitted on
the older part and the calibrator on the newest ``calibration_fraction``. Calibrating on rows the
detector has seen would make new normal rows look rarer than they are (flexible detectors such as
PCA and IForest fit their own baseline closely), so "probability 0.99" would not mean 1 %.

Drifting sensors. A short baseline cannot say where a slowly wandering sensor (a motor or fluid
temperature following ambient and load) will be an hour later: judged by its level, every normal
excursion beyond the baseline's few minutes would alarm. So, at the end of the baseline, each
sensor's ``level_drift_ratio`` (variance of its rolling level that the other sensors' levels do
not account for ÷ what its sample noise explains; about 1 for a steady sensor, and for sensors
that move together with others, whose joint movement the model learns) is compared with
``drift_ratio``: above it, the sensor's level features (``raw``, ``level``) are left out of the
model and it is judged only by how it moves (``spread``, ``slope``, ``residual``, ``range``,
whichever are configured; with none of those it is not judged at all). ``drifting_sensors`` names
them. When every sensor drifts (a single-sensor stream) none is left out; ``drift_ratio=0`` turns
the rule off.

Causality. Features only look back; detectors score row-wise; the alarm is sequential; adaptation
refits at fixed row counts. So any split of the rows into micro-batches gives identical results,
and truncating the input never changes earlier outputs.

Adaptation (``adapt=True``). Every ``adapt_every`` scored rows the detector and calibrator are
refitted, exactly as at the baseline, on a memory of normal rows: the baseline's rows, then every
scored row with the alarm off and a probability below ``enter``. Rows judged anomalous are never
learned. The memory (``detector.memory.NormalMemory``) holds ``ADAPT_MEMORY`` × ``baseline_rows``
rows, a uniform sample of all such rows since the baseline (the same for any batching and after a
restart), handed to the refit in time order so that cross-fitting still scores each block of time
with a model that did not see it. Two choices matter (measured on the
SKAB and NAB dev halves, see the README): a sliding window of only the latest rows forgets
operating conditions that come back; and learning only from rows below ``exit`` cuts the top of
the normal distribution off at every refit, so each model is narrower than the last and false
alarms spiral (NAB, 13 files: 20 false alarms without adaptation, ~290 with that rule).

Rows with any non-finite value (or one beyond ±``MAX_ABS_VALUE``, whose square overflows), and
rows stamped before an earlier row, are skipped: no verdict, no effect on features, baseline or
alarm. After a gap in usable rows longer than the feature window, rows are skipped (no verdict,
alarm state held) until the window has refilled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from detector.alarm import HysteresisAlarm
from detector.align import FrameAligner
from detector.base import Detector
from detector.calibration import EmpiricalCalibrator, PotCalibrator, holdout_split
from detector.features import LEVEL_FEATURES, RollingFeatures, level_drift_ratio, settled_rows, window_to_ns
from detector.memory import NormalMemory
from detector.registry import make_detector
from detector.types import MAX_ABS_VALUE, Contribution, Verdict

# Row status codes in ``ScoredRows.status``.
WARMING_UP = 0
SCORED = 1
SKIPPED = 2

ADAPT_MEMORY = 4  # adaptation memory, in baseline lengths (chosen on the dev halves, see the README)
DEFAULT_MAX_STALENESS_NS = 10_000_000_000  # 10 s: a few missed samples of a 1 Hz sensor
CALIBRATORS = {"pot": PotCalibrator, "empirical": EmpiricalCalibrator}
# Fewer baseline scores beyond the alarm entry level than this make that level a guess (the usual
# minimum number of exceedances for a tail estimate; with 10 the false-alarm rate is known to ~±30 %).
MIN_SCORES_BEYOND_ENTER = 10
MIN_BASELINE_ROWS = 10
# How long (in max_staleness periods of event time) an asset without a baseline may go without a
# complete row before it discovers its sensors again: a sensor silent that long is gone, not late.
REDISCOVER_AFTER = 10
EXPECTED_RANGE_QUANTILES = (0.5, 99.5)  # percent: the baseline's central 99 % of values
# A baseline episode "sets the alarm level" when one cross-fitting block (or two adjacent ones) holds
# at least this share of the scores beyond it and, left out, the rest of the baseline would reach
# that level this many times less often than ``1 - enter``.
EPISODE_SHARE = 0.5
EPISODE_RARITY = 10.0


@dataclass(frozen=True, slots=True)
class BaselineEpisode:
    """One stretch of the baseline that set the alarm level (see ``AssetMonitor.baseline_advice``).

    Scored in cross-fitting by a model that never saw anything like it, it looked abnormal, and the
    alarm level was put above it; the live model learned it, so rows as unusual will not alarm.
    """

    start_ns: int  # first and last baseline row of the episode beyond the alarm level
    end_ns: int
    scores_beyond: int  # of the baseline's scores beyond the alarm level, how many are the episode's
    scores_beyond_total: int
    rarity: float  # how many times less often the rest of the baseline reaches the alarm level


@dataclass(frozen=True, slots=True)
class ScoredRows:
    """Per-row results of one ``process_arrays`` call, aligned with its input rows.

    Warm-up rows: score 0, probability 0, anomaly False. Skipped rows (any non-finite value):
    score and probability NaN, anomaly = the alarm state held from the previous scored row.
    """

    ts_ns: np.ndarray  # int64
    score: np.ndarray  # float64
    probability: np.ndarray  # float64
    anomaly: np.ndarray  # bool
    status: np.ndarray  # int8: WARMING_UP / SCORED / SKIPPED


class AssetMonitor:
    """Baseline learning, features, scoring, calibration, alarm and explanations for one asset."""

    def __init__(
        self,
        asset: str,
        sensors: Sequence[str] | None,
        *,
        baseline_rows: int = 600,
        detector: str = "pca_spc",
        detector_params: Mapping[str, Any] | None = None,
        features: Sequence[str] | None = ("level", "spread"),
        window_s: float | None = None,
        window_samples: int = 15,
        calibration: str = "empirical",
        calibration_fraction: float = 0.3,
        calibration_folds: int = 10,
        enter: float = 0.995,
        exit: float = 0.98,
        min_duration: int = 5,
        exit_duration: int = 5,
        suppress_rows: int = 0,
        top_k: int = 3,
        max_staleness_ns: int = DEFAULT_MAX_STALENESS_NS,
        discovery_ns: int | None = None,
        adapt: bool = False,
        adapt_every: int = 500,
        drift_ratio: float = 20.0,
    ) -> None:
        self.asset = asset
        self.sensors = sensors
        self.baseline_rows = baseline_rows
        self.detector = detector
        self.detector_params = detector_params
        self.features = features
        self.window_s = window_s
        self.window_samples = window_samples
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.calibration_folds = calibration_folds
        self.enter = enter
        self.exit = exit
        self.min_duration = min_duration
        self.exit_duration = exit_duration
        self.suppress_rows = suppress_rows
        self.top_k = top_k
        self.max_staleness_ns = max_staleness_ns
        self.discovery_ns = discovery_ns
        self.adapt = adapt
        self.adapt_every = adapt_every
        self.drift_ratio = drift_ratio
        self.reset()

    # -- state -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the baseline, the models, the alarm state and the counters."""
        self._check_params()
        self.aligner_ = self._make_aligner(self.sensors)
        self.alarm_ = self._make_alarm()
        self.features_: RollingFeatures | None = None
        self.detector_: Detector | None = None
        self.calibrator_: Any = None
        self.window_s_: float | None = None
        self.sensor_names_: tuple[str, ...] | None = tuple(self.sensors) if self.sensors is not None else None
        self.expected_low_: np.ndarray | None = None
        self.expected_high_: np.ndarray | None = None
        # Baseline range of every feature column (all sensors, before any is left out), for explanations.
        self.feature_low_: np.ndarray | None = None
        self.feature_high_: np.ndarray | None = None
        self.center_: np.ndarray | None = None
        self.drifting_: np.ndarray | None = None  # per sensor: level wanders over the baseline
        self.columns_: np.ndarray | None = None  # feature columns the model uses (None = all)
        self._emitted_seen = self._incomplete_seen = 0  # aligner counters when a row last completed
        self._stuck_since_ns: int | None = None  # event time since which no row has completed
        self.rediscoveries_ = 0
        self.rediscovered_: tuple[str, ...] = ()  # the silent sensors the last rediscovery dropped
        self._baseline_ts: list[np.ndarray] = []
        self._baseline_X: list[np.ndarray] = []
        self._baseline_count = 0
        self.memory_: NormalMemory | None = None  # normal rows the adaptation refits on
        self._since_refit = 0
        self.refits_ = 0
        self.baseline_failures_ = 0
        self.baseline_error_: str | None = None  # what went wrong and what to change, for the log
        self.baseline_cause_: str | None = None  # the model's own error message alone
        self.baseline_episode_: BaselineEpisode | None = None
        self.rows_seen_ = 0
        self.scored_rows_ = 0
        self.skipped_rows_ = 0
        self.late_rows_ = 0
        self._last_ts = np.iinfo(np.int64).min
        self._refill_until = np.iinfo(np.int64).min  # rows before this refill the window after a gap

    def _check_params(self) -> None:
        if self.baseline_rows < MIN_BASELINE_ROWS:
            raise ValueError(f"baseline_rows must be >= {MIN_BASELINE_ROWS}, got {self.baseline_rows}")
        if self.calibration not in CALIBRATORS:
            raise ValueError(f"calibration must be one of {sorted(CALIBRATORS)}, got {self.calibration!r}")
        if self.calibration_folds == 1 or self.calibration_folds < 0:
            raise ValueError(f"calibration_folds must be 0 (hold-out) or >= 2, got {self.calibration_folds}")
        if not 0.0 < self.calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}")
        if self.window_s is not None and not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.window_samples < 2:
            raise ValueError(f"window_samples must be >= 2, got {self.window_samples}")
        if not self.drift_ratio >= 0:
            raise ValueError(f"drift_ratio must be >= 0 (0 = off), got {self.drift_ratio}")
        if self.adapt and self.adapt_every < 1:
            raise ValueError(f"adapt_every must be >= 1, got {self.adapt_every}")
        make_detector(self.detector, self.detector_params)  # fails early on unknown kinds/params

    def _make_aligner(self, sensors: Sequence[str] | None) -> FrameAligner:
        """An aligner for these sensors (None: discover them from the first readings)."""
        return FrameAligner(sensors, max_staleness_ns=self.max_staleness_ns, discovery_ns=self.discovery_ns)

    def _make_alarm(self) -> HysteresisAlarm:
        return HysteresisAlarm(self.enter, self.exit, self.min_duration, self.exit_duration, self.suppress_rows)

    @property
    def is_warm(self) -> bool:
        """True once the baseline is complete and rows are being scored."""
        return self.detector_ is not None

    @property
    def scores_beyond_enter(self) -> float | None:
        """How many baseline scores lie beyond the alarm entry level: ``n × (1 − enter)``.

        The entry level is a quantile of the baseline's (cross-fitted) scores, estimated from the
        scores beyond it; with ``k`` of them its false-alarm rate is uncertain by about ``1/√k``
        (``k`` = 3: ±60 %). ``None`` before the baseline is learned.
        """
        calibrator = self.calibrator_  # read once: /healthz asks from another thread
        if calibrator is None:
            return None
        return float(calibrator.n_baseline_) * (1.0 - self.enter)

    def short_baseline_advice(self) -> str | None:
        """What to change when too few baseline scores lie beyond the alarm level (None when enough)."""
        beyond = self.scores_beyond_enter
        if beyond is None or beyond >= MIN_SCORES_BEYOND_ENTER:
            return None
        scale = MIN_SCORES_BEYOND_ENTER / max(beyond, 1e-9)
        return (
            f"baseline of {self.asset}: only {beyond:.1f} of its scores lie beyond the alarm level "
            f"enter={self.enter:g}, so the false-alarm rate at that level is a rough guess; learn from "
            f"about {scale:.1f}x as many rows (baseline_rows >= {math.ceil(self.baseline_rows * scale)}) "
            "or lower enter"
        )

    def episode_advice(self) -> str | None:
        """What to check when one episode of the baseline set the alarm level (None otherwise)."""
        episode = self.baseline_episode_
        if episode is None:
            return None
        return (
            f"baseline of {self.asset}: {episode.scores_beyond} of its {episode.scores_beyond_total} scores "
            f"beyond the alarm level enter={self.enter:g} come from one episode, {_utc(episode.start_ns)} to "
            f"{_utc(episode.end_ns)}; the rest of the baseline reaches that level {episode.rarity:.0f}x less "
            "often than enter intends, so rows as unusual as that episode will not alarm. If it was not "
            "ordinary running (a start-up, a cleaning cycle, a fault), learn the baseline from a period without it"
        )

    def baseline_advice(self) -> str | None:
        """What to change about the baseline, if anything: too few scores beyond the alarm level
        (``short_baseline_advice``), or one episode setting it (``episode_advice``; only judged with
        enough such scores, so at most one of the two applies)."""
        return self.short_baseline_advice() or self.episode_advice()

    @property
    def sensor_names(self) -> tuple[str, ...] | None:
        """The sensor order of the rows: as configured, or as learned by the aligner."""
        if self.sensor_names_ is None and self.aligner_.sensors_ is not None:
            self.sensor_names_ = tuple(self.aligner_.sensors_)
        return self.sensor_names_

    # -- core --------------------------------------------------------------------------------

    def process_arrays(self, ts_ns: np.ndarray, X: np.ndarray) -> ScoredRows:
        """Score a batch of aligned rows (in time order); the backtest's fast path."""
        return self._process(ts_ns, X, explain=False)[0]

    def _process(
        self, ts_ns: np.ndarray, X: np.ndarray, explain: bool
    ) -> tuple[ScoredRows, dict[int, tuple[Contribution, ...]]]:
        """The scored rows, and with ``explain`` the explanation of every anomalous row by row index."""
        ts, X = self._check_input(ts_ns, X)
        n = X.shape[0]
        status = np.full(n, SKIPPED, dtype=np.int8)
        score = np.full(n, np.nan)
        probability = np.full(n, np.nan)
        anomaly = np.zeros(n, dtype=bool)
        held = self.alarm_.active_  # alarm state carried into skipped rows

        # A row stamped before an earlier row is late (a log that steps back in time): skipped and
        # counted, as the live aligner drops late readings, so features only ever move forward.
        # Rows that are skipped anyway (a NaN reading) do not move the cutoff: one of them with a
        # corrupt far-future stamp would otherwise make every later row "late".
        usable = usable_rows(X)
        stamps = np.where(usable, ts, np.iinfo(np.int64).min)
        running_max = np.maximum.accumulate(np.concatenate(([self._last_ts], stamps)))
        in_order = ts >= running_max[:-1]
        self._last_ts = int(running_max[-1])
        self.late_rows_ += int((~in_order & usable).sum())
        rows = np.flatnonzero(usable & in_order)
        # The cutoff before a usable row is the stamp of the usable row before it (late ones never raise it).
        previous = running_max[:-1]
        rows = self._absorb_baseline(ts, X, rows, status, score, probability)
        explanations: dict[int, tuple[Contribution, ...]] = {}
        if rows.size:
            assert self.features_ is not None
            F = self._feature_rows(self.features_.update(ts[rows], X[rows]), X[rows])
            settled = ~self._refilling(ts[rows], previous[rows])
            rows, F = rows[settled], F[settled]
        if rows.size:
            self._score_segments(rows, F, score, probability, anomaly, X if explain else None, explanations)
            status[rows] = SCORED
            self.scored_rows_ += int(rows.size)

        skipped = status == SKIPPED
        if skipped.any():
            anomaly[skipped] = _held_state(anomaly, status == SCORED, held)[skipped]
            self.skipped_rows_ += int(skipped.sum())
        self.rows_seen_ += n
        return ScoredRows(ts, score, probability, anomaly, status), explanations

    def _refilling(self, stamps: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Rows whose feature window is still refilling after a gap longer than the window.

        After an outage the window holds a handful of samples: a spread of one sample is 0 and a
        level of two is noisy, so the first rows would score as near-certain anomalies. They are
        skipped (alarm state held) until the window spans post-gap data only, as at the baseline.
        """
        if not self.features or self.window_s_ is None:
            return np.zeros(stamps.size, dtype=bool)
        window = window_to_ns(self.window_s_)
        never = np.iinfo(np.int64).min
        # A gap of a whole window leaves the first row alone in its window (t - w, t].
        after_gap = (previous != never) & (stamps - np.where(previous == never, stamps, previous) >= window)
        refill_ends = np.maximum.accumulate(
            np.concatenate(([self._refill_until], np.where(after_gap, stamps + window, never)))
        )
        self._refill_until = int(refill_ends[-1])
        return stamps < refill_ends[1:]

    def _check_input(self, ts_ns: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = np.asarray(ts_ns, dtype=np.int64).ravel()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != ts.shape[0]:
            raise ValueError(f"need X of shape (n, d) with n == len(ts_ns); got {X.shape} and {ts.shape}")
        names = self.sensor_names
        if names is not None and X.shape[1] != len(names):
            raise ValueError(f"asset {self.asset!r}: expected {len(names)} sensors, got {X.shape[1]}")
        return ts, X

    def _feature_rows(self, F: np.ndarray, X: np.ndarray) -> np.ndarray:
        rows = X if not self.features else F
        return rows if self.columns_ is None else rows[:, self.columns_]

    @property
    def _column_features(self) -> tuple[str, ...]:
        """The feature of each sensor's columns, in column order (``raw`` when features are off)."""
        return tuple(self.features) if self.features else ("raw",)

    @property
    def drifting_sensors(self) -> tuple[str, ...]:
        """Sensors whose level wandered over the baseline, judged only by how they move."""
        drifting = self.drifting_  # read once: /healthz asks from another thread than the one resetting
        if drifting is None:
            return ()
        names = self.sensor_names or tuple(f"x{j}" for j in range(drifting.size))
        return tuple(name for name, flag in zip(names, drifting.tolist(), strict=True) if flag)

    def _choose_columns(self, ts: np.ndarray, X: np.ndarray) -> None:
        """Leave the level features of drifting sensors out of the model (see the module docstring)."""
        assert self.window_s_ is not None
        d = X.shape[1]
        drifting = np.zeros(d, dtype=bool)
        if self.drift_ratio > 0:
            drifting = level_drift_ratio(ts, X, self.window_s_) > self.drift_ratio
            if drifting.all():
                drifting[:] = False  # nothing steady to lean on: judge every sensor by its level
        judged_by_level = np.array([f in LEVEL_FEATURES for f in self._column_features])
        # Some sensor is steady, so some columns always remain.
        columns = ~(drifting[:, None] & judged_by_level[None, :]).ravel()
        self.drifting_ = drifting
        self.columns_ = None if columns.all() else columns

    def _score_segments(
        self,
        rows: np.ndarray,
        F: np.ndarray,
        score: np.ndarray,
        probability: np.ndarray,
        anomaly: np.ndarray,
        X: np.ndarray | None,
        explanations: dict[int, tuple[Contribution, ...]],
    ) -> None:
        """Score in segments that end where adaptation refits, so batch splits never matter.

        With ``X`` (the batch's readings), anomalous rows are explained by the model that scored
        them, before any refit.
        """
        start = 0
        while start < rows.size:
            stop = rows.size if not self.adapt else min(rows.size, start + self.adapt_every - self._since_refit)
            seg = slice(start, stop)
            assert self.detector_ is not None
            raw = self.detector_.score(F[seg])
            prob = self.calibrator_.transform(raw)
            flags = self.alarm_.run(prob)
            idx = rows[seg]
            score[idx], probability[idx], anomaly[idx] = raw, prob, flags
            if X is not None and flags.any():
                explanations.update(self._explain_rows(X, idx[flags], F[seg][flags]))
            if self.adapt:
                assert self.memory_ is not None
                self.memory_.add(F[seg][~flags & (prob < self.enter)])
                self._since_refit += stop - start
                if self._since_refit >= self.adapt_every:
                    self._refit_from_memory()
            start = stop

    # -- baseline ----------------------------------------------------------------------------

    def _absorb_baseline(
        self,
        ts: np.ndarray,
        X: np.ndarray,
        rows: np.ndarray,
        status: np.ndarray,
        score: np.ndarray,
        probability: np.ndarray,
    ) -> np.ndarray:
        """Take finite rows into the baseline until it is full; return the rows left to score.

        A baseline that cannot be learned (say KNN on folds smaller than its neighbourhood) is
        dropped, counted in ``baseline_failures_`` with the reason in ``baseline_error_``, and the
        rows after it start the next one: the monitor is never stuck re-fitting the same rows.
        """
        while self.detector_ is None and rows.size:
            take = rows[: self.baseline_rows - self._baseline_count]
            self._baseline_ts.append(ts[take].copy())
            self._baseline_X.append(X[take].copy())
            self._baseline_count += int(take.size)
            status[take] = WARMING_UP
            score[take] = 0.0
            probability[take] = 0.0
            rows = rows[take.size :]
            if self._baseline_count >= self.baseline_rows:
                ts_b, X_b = np.concatenate(self._baseline_ts), np.vstack(self._baseline_X)
                self._baseline_ts, self._baseline_X, self._baseline_count = [], [], 0
                try:
                    self._fit_baseline(ts_b, X_b)
                except Exception as exc:  # any model error: report it and learn again
                    self._forget_fit()
                    self.baseline_failures_ += 1
                    self.baseline_cause_ = str(exc)
                    self.baseline_error_ = (
                        f"asset {self.asset!r}: learning the baseline from {ts_b.size} rows failed ({exc}); "
                        f"the next {self.baseline_rows} rows are learned instead. Check detector "
                        f"{self.detector!r}, its params and baseline_rows (with {self.calibration_folds} "
                        "cross-fitting folds each model learns from all folds but one)"
                    )
        return rows

    def _forget_fit(self) -> None:
        """Undo a baseline fit that failed half-way (nothing of it may be reported or used)."""
        self.detector_ = None
        self.calibrator_ = None
        self.features_ = None
        self.window_s_ = None
        self.drifting_ = None
        self.columns_ = None
        self.memory_ = None

    def _fit_baseline(self, ts: np.ndarray, X: np.ndarray) -> None:
        self.window_s_ = self.window_s if self.window_s is not None else _window_from_sampling(ts, self.window_samples)
        self.features_ = RollingFeatures(self.window_s_, self.features or ("raw",))
        self._choose_columns(ts, X)
        settled = settled_rows(ts, self.window_s_ if self.features else 0.0)
        F_all = self.features_.update(ts, X) if self.features else X
        self.feature_low_, self.feature_high_ = np.percentile(F_all[settled], EXPECTED_RANGE_QUANTILES, axis=0)
        F = self._feature_rows(F_all, X)[settled]
        low, high = np.percentile(X, EXPECTED_RANGE_QUANTILES, axis=0)
        self.expected_low_, self.expected_high_ = low, high
        self.center_ = np.median(X, axis=0)
        calibration_scores = self._fit_models(F)
        self.baseline_episode_ = (
            None if calibration_scores is None else self._episode_setting_level(ts[settled], calibration_scores)
        )
        # An outage in the baseline's last window leaves the first scored rows refilling it too.
        self._refilling(ts, np.concatenate((ts[:1], ts[:-1])))
        if self.adapt:
            self.memory_ = NormalMemory(ADAPT_MEMORY * self.baseline_rows, F.shape[1])
            self.memory_.add(F)

    def _fit_models(self, F: np.ndarray) -> np.ndarray | None:
        """Fit detector and calibrator; the cross-fitted calibration scores (None without cross-fitting)."""
        if self.calibration_folds >= 2:
            # Cross-fitting: every baseline row is scored by a model that did not see it, so the
            # calibrator learns from all of them; the live detector is then fitted on all rows.
            calibration_scores = self._cross_fitted_scores(F)
            detector = make_detector(self.detector, self.detector_params).fit(F)
        else:
            fit_idx, calib_idx = holdout_split(F.shape[0], self.calibration_fraction)
            detector = make_detector(self.detector, self.detector_params).fit(F[fit_idx])
            calibration_scores = detector.score(F[calib_idx])
        self.calibrator_ = CALIBRATORS[self.calibration]().fit(calibration_scores)
        self.detector_ = detector
        return calibration_scores if self.calibration_folds >= 2 else None

    def _cross_fitting_folds(self, n: int) -> list[np.ndarray]:
        return np.array_split(np.arange(n), self.calibration_folds)  # contiguous blocks of time

    def _episode_setting_level(self, ts: np.ndarray, scores: np.ndarray) -> BaselineEpisode | None:
        """The stretch of the baseline (one cross-fitting block, or two adjacent ones: an episode
        may straddle a boundary) that holds most scores beyond the alarm level, if it set that level.

        Only judged with ``MIN_SCORES_BEYOND_ENTER`` such scores (fewer say little about any block).
        """
        finite = np.isfinite(scores)
        beyond = finite & (self.calibrator_.transform(np.where(finite, scores, -np.inf)) >= self.enter)
        total = int(beyond.sum())
        if total < MIN_SCORES_BEYOND_ENTER:
            return None
        folds = self._cross_fitting_folds(scores.size)
        stretches = folds + [np.concatenate(pair) for pair in zip(folds, folds[1:], strict=False)]
        counts = [int(beyond[rows].sum()) for rows in stretches]
        k = int(np.argmax(counts))  # singles come first: a tie keeps the shorter stretch
        if counts[k] < EPISODE_SHARE * total:
            return None
        inside = np.zeros(scores.size, dtype=bool)
        inside[stretches[k]] = True
        without = CALIBRATORS[self.calibration]().fit(scores[~inside & finite])
        level = _score_at_probability(
            self.calibrator_, self.enter, float(scores[finite].min()), float(scores[finite].max())
        )
        reached = 1.0 - float(without.transform(np.array([level]))[0])  # how often the rest reach it
        rarity = (1.0 - self.enter) / max(reached, 1e-300)
        if not rarity >= EPISODE_RARITY:  # NaN too
            return None
        rows = stretches[k][beyond[stretches[k]]]
        return BaselineEpisode(int(ts[rows[0]]), int(ts[rows[-1]]), counts[k], total, rarity)

    def _cross_fitted_scores(self, F: np.ndarray) -> np.ndarray:
        scores = np.empty(F.shape[0])
        for fold in self._cross_fitting_folds(F.shape[0]):
            rest = np.setdiff1d(np.arange(F.shape[0]), fold)
            scores[fold] = make_detector(self.detector, self.detector_params).fit(F[rest]).score(F[fold])
        return scores

    # -- adaptation --------------------------------------------------------------------------

    def _refit_from_memory(self) -> None:
        self._since_refit = 0
        if self.memory_ is None:
            return
        self._fit_models(self.memory_.in_time_order())
        self.refits_ += 1

    # -- persistence -------------------------------------------------------------------------

    # Settings a saved model must share with the monitor restoring it.
    _MODEL_SETTINGS = (
        "baseline_rows",
        "detector",
        "detector_params",
        "features",
        "window_s",
        "window_samples",
        "calibration",
        "calibration_fraction",
        "calibration_folds",
        "adapt",
        "adapt_every",
        "drift_ratio",
    )

    def model_settings(self) -> dict[str, Any]:
        """The hyperparameters a saved state depends on, as plain JSON values."""
        values = {name: getattr(self, name) for name in self._MODEL_SETTINGS}
        values["detector_params"] = dict(self.detector_params or {})
        values["features"] = list(self.features) if self.features else None
        return values

    def get_state(self) -> dict[str, Any]:
        """Everything learned, as flat keys -> arrays or plain JSON values (no objects, no pickle).

        Alignment state is not kept: after a restart the first readings complete rows again.
        """
        state: dict[str, Any] = {
            "settings": json.dumps(self.model_settings(), sort_keys=True),  # nested params: one JSON text
            "sensors": list(self.sensor_names) if self.sensor_names else None,
            "counters": [self.rows_seen_, self.scored_rows_, self.skipped_rows_, self.late_rows_, self.refits_],
            "last_ts": int(self._last_ts),
            "refill_until": int(self._refill_until),
            "warm": self.is_warm,
        }
        state.update(_prefixed("alarm/", self.alarm_.get_state()))
        if not self.is_warm:
            if self._baseline_ts:
                state["baseline/ts"] = np.concatenate(self._baseline_ts)
                state["baseline/X"] = np.vstack(self._baseline_X)
            return state
        assert self.detector_ is not None and self.features_ is not None
        state["window_s"] = float(self.window_s_ or 0.0)
        state["expected_low"], state["expected_high"] = self.expected_low_, self.expected_high_
        state["center"] = self.center_
        state["feature_low"], state["feature_high"] = self.feature_low_, self.feature_high_
        assert self.drifting_ is not None
        state["drifting"] = self.drifting_.astype(np.int8)
        if self.columns_ is not None:
            state["columns"] = self.columns_.astype(np.int8)
        if self.baseline_episode_ is not None:
            e = self.baseline_episode_
            state["episode"] = [e.start_ns, e.end_ns, e.scores_beyond, e.scores_beyond_total, e.rarity]
        state.update(_prefixed("detector/", self.detector_.get_state()))
        state.update(_prefixed("calibrator/", self.calibrator_.get_state()))
        state.update(_prefixed("features/", self.features_.get_state()))
        if self.memory_ is not None:
            state["memory"], state["memory_seq"], seen = self.memory_.get_state()
            state["memory_counts"] = [seen, self._since_refit]
        return state

    def set_state(self, state: Mapping[str, Any]) -> AssetMonitor:
        """Restore :meth:`get_state` output; ``ValueError`` if it came from other model settings."""
        saved = json.loads(str(state["settings"]))
        if _comparable(saved) != _comparable(json.loads(json.dumps(self.model_settings()))):
            raise ValueError(f"saved model of {self.asset!r} was learned with other settings: {saved}")
        self.reset()
        if state["sensors"] is not None:
            self.sensor_names_ = tuple(state["sensors"])
            self.aligner_ = self._make_aligner(self.sensor_names_)
        counters = [int(v) for v in state["counters"]]
        self.rows_seen_, self.scored_rows_, self.skipped_rows_, self.late_rows_, self.refits_ = counters
        self._last_ts = int(state["last_ts"])
        if "refill_until" in state:  # absent from models saved before gaps were handled
            self._refill_until = int(state["refill_until"])
        self.alarm_.set_state(_unprefixed("alarm/", state))
        if not state["warm"]:
            if "baseline/ts" in state:
                self._baseline_ts = [np.asarray(state["baseline/ts"], dtype=np.int64)]
                self._baseline_X = [np.asarray(state["baseline/X"], dtype=np.float64)]
                self._baseline_count = int(self._baseline_ts[0].size)
            return self
        self.window_s_ = float(state["window_s"])
        self.expected_low_ = np.asarray(state["expected_low"])
        self.expected_high_ = np.asarray(state["expected_high"])
        self.center_ = np.asarray(state["center"])
        self.feature_low_ = np.asarray(state["feature_low"])
        self.feature_high_ = np.asarray(state["feature_high"])
        self.drifting_ = np.asarray(state["drifting"]).astype(bool)
        self.columns_ = np.asarray(state["columns"]).astype(bool) if "columns" in state else None
        if "episode" in state:  # absent when no episode set the level, and from older models
            start, end, inside, total, rarity = state["episode"]
            self.baseline_episode_ = BaselineEpisode(int(start), int(end), int(inside), int(total), float(rarity))
        detector = make_detector(self.detector, self.detector_params)
        self.detector_ = detector.set_state(_unprefixed("detector/", state))
        self.calibrator_ = CALIBRATORS[self.calibration]().set_state(_unprefixed("calibrator/", state))
        self.features_ = RollingFeatures(self.window_s_, self.features or ("raw",))
        self.features_.set_state(_unprefixed("features/", state))
        if self.adapt:
            self._restore_memory(state)
        self._check_restored_shapes()
        return self

    def _check_restored_shapes(self) -> None:
        """``ValueError`` unless the restored arrays fit together (a foreign or damaged file would
        otherwise load and then fail on every row)."""
        n = len(self.sensor_names) if self.sensor_names is not None else None
        per_sensor = {"expected_low": self.expected_low_, "expected_high": self.expected_high_}
        per_sensor |= {"center": self.center_, "drifting": self.drifting_}
        widths = {name: np.asarray(v).shape for name, v in per_sensor.items()}
        if n is None or any(shape != (n,) for shape in widths.values()):
            raise ValueError(f"saved model of {self.asset!r}: per-sensor arrays {widths} do not fit {n} sensors")
        n_columns = n * len(self.features or ("raw",))
        columns = {"feature_low": self.feature_low_, "feature_high": self.feature_high_}
        if self.columns_ is not None:
            columns["columns"] = self.columns_
        if any(np.asarray(v).shape != (n_columns,) for v in columns.values()):
            raise ValueError(f"saved model of {self.asset!r}: feature arrays do not fit {n_columns} feature columns")
        width = int(self.columns_.sum()) if self.columns_ is not None else n_columns
        assert self.detector_ is not None
        try:  # the detector and calibrator must take a row of that width
            self.calibrator_.transform(self.detector_.score(np.zeros((1, width))))
        except Exception as exc:
            raise ValueError(f"saved model of {self.asset!r} cannot score a row of {width} features: {exc}") from exc

    def _restore_memory(self, state: Mapping[str, Any]) -> None:
        if "memory" in state:
            rows, counts = state["memory"], state["memory_seq"]
            seen, self._since_refit = (int(v) for v in state["memory_counts"])
        elif "ring" in state:  # saved by a version that kept a ring of the latest rows
            size, next_slot = int(state["ring_pos"][0]), int(state["ring_pos"][1])
            ring = np.asarray(state["ring"], dtype=np.float64)
            # A full ring's oldest row is at the next slot to write; a filling one starts at 0.
            rows = np.roll(ring, -next_slot, axis=0) if size == ring.shape[0] else ring[:size]
            counts, seen = np.arange(1, rows.shape[0] + 1), rows.shape[0]
            self._since_refit = int(state["ring_pos"][2])
        else:
            return
        self.memory_ = NormalMemory.from_state(ADAPT_MEMORY * self.baseline_rows, rows, counts, seen)

    # -- verdicts ----------------------------------------------------------------------------

    def process(self, ts_ns: np.ndarray, X: np.ndarray) -> list[Verdict]:
        """Like ``process_arrays`` but as ``Verdict`` objects (skipped rows give none)."""
        out, contribs = self.process_explained(ts_ns, X)
        verdicts: list[Verdict] = []
        for i, (t, s, p, a, st) in enumerate(
            zip(
                out.ts_ns.tolist(),
                out.score.tolist(),
                out.probability.tolist(),
                out.anomaly.tolist(),
                out.status.tolist(),
                strict=True,
            )
        ):
            if st == SKIPPED:
                continue
            verdicts.append(Verdict(self.asset, t, s, p, a, contribs.get(i, ()), st == WARMING_UP))
        return verdicts

    def process_explained(
        self, ts_ns: np.ndarray, X: np.ndarray
    ) -> tuple[ScoredRows, dict[int, tuple[Contribution, ...]]]:
        """``process_arrays`` plus the explanation of every anomalous row, keyed by row index."""
        return self._process(ts_ns, np.asarray(X, dtype=np.float64), explain=True)

    def _explain_rows(self, X: np.ndarray, rows: np.ndarray, F: np.ndarray) -> dict[int, tuple[Contribution, ...]]:
        """Top contributing sensors of the given rows of ``X`` (their feature rows ``F``), by the
        current model: the one that scored them."""
        assert self.detector_ is not None
        names = self.sensor_names or tuple(f"x{j}" for j in range(X.shape[1]))
        per_feature = self.detector_.contributions(F)
        features = F
        if self.columns_ is not None:  # back to every sensor's columns; left-out ones contribute 0
            per_feature, features = _widen(per_feature, self.columns_, 0.0), _widen(features, self.columns_, np.nan)
        return {int(r): self._top(names, X[r], features[j], per_feature[j]) for j, r in enumerate(rows.tolist())}

    def _top(
        self, names: Sequence[str], values: np.ndarray, features: np.ndarray, contribution: np.ndarray
    ) -> tuple[Contribution, ...]:
        """Aggregate per-feature contributions to sensors: share, direction, value, expected range.

        The value and range are those of the sensor's driving feature: its reading against the
        baseline's readings for ``raw``, its rolling level against the baseline's levels for
        ``level`` (a level shift inside the readings' noise band is still far outside the levels'),
        "spread 0.8 against 0.05-0.2" for a fluctuation. The reading alone would not say how far off.
        """
        d = len(names)
        k = contribution.size // d
        per_sensor = np.abs(contribution).reshape(d, k)  # features are grouped by sensor
        magnitude = per_sensor.sum(axis=1)
        total = float(magnitude.sum())
        order = np.argsort(-magnitude, kind="stable")[: self.top_k]
        order = order[magnitude[order] > 0]  # a sensor that adds nothing to the score is no explanation
        assert self.expected_low_ is not None and self.expected_high_ is not None
        assert self.feature_low_ is not None and self.feature_high_ is not None
        out = []
        for i in order.tolist():
            dominant = int(np.argmax(per_sensor[i]))
            column = i * k + dominant
            feature = self._column_features[dominant]
            if feature == "raw":
                value, low, high = values[i], self.expected_low_[i], self.expected_high_[i]
            else:
                value, low, high = features[column], self.feature_low_[column], self.feature_high_[column]
            out.append(
                Contribution(
                    sensor=names[i],
                    share=float(magnitude[i] / total) if total > 0 else 0.0,
                    direction="high" if contribution[column] >= 0 else "low",
                    value=float(value),
                    expected_low=float(low),
                    expected_high=float(high),
                    feature=feature,
                )
            )
        return tuple(out)

    # -- live path ---------------------------------------------------------------------------

    def feed(self, reading_ts_ns: int, values: Mapping[str, float]) -> list[Verdict]:
        """Live path: one reading through the aligner; verdicts for the rows it completes."""
        rows = self.aligner_.update(reading_ts_ns, values)
        self._rediscover_if_stuck()
        return self.process_rows(rows)

    def feed_many(self, readings: Iterable[tuple[int, Mapping[str, float]]]) -> list[Verdict]:
        """Live path for a micro-batch: align every reading, then score all completed rows at once.

        Same verdicts as calling :meth:`feed` per reading (scoring is causal and batch-invariant),
        but one vectorized ``process`` call instead of one per row.
        """
        return self.process_rows(self.align(readings))

    def align(self, readings: Iterable[tuple[int, Mapping[str, float]]]) -> list[tuple[int, np.ndarray]]:
        """The aligned rows (in :attr:`sensor_names` order) that these readings complete."""
        rows: list[tuple[int, np.ndarray]] = []
        for ts_ns, values in readings:
            rows.extend(self.aligner_.update(ts_ns, values))
            self._rediscover_if_stuck()
        return rows

    def _rediscover_if_stuck(self) -> None:
        """Before a baseline is learned, a discovered sensor that never reports again (a one-off
        key in the first readings, a sensor that died) would leave every row incomplete for good.
        After ``REDISCOVER_AFTER`` × ``max_staleness_ns`` of event time with instants but no complete
        row, the sensors are discovered again (from the next readings) and the baseline starts
        over; ``rediscovered_`` names those that were silent. Configured sensors, and a learned
        model's, are never changed."""
        aligner = self.aligner_
        if aligner.rows_emitted_ != self._emitted_seen or aligner.incomplete_rows_ == self._incomplete_seen:
            self._emitted_seen, self._incomplete_seen = aligner.rows_emitted_, aligner.incomplete_rows_
            self._stuck_since_ns = aligner.current_ts_
            return
        if self.sensors is not None or self.is_warm or aligner.sensors_ is None:
            return
        stuck_since, now = self._stuck_since_ns, aligner.current_ts_
        if stuck_since is None or now is None or now - stuck_since < REDISCOVER_AFTER * self.max_staleness_ns:
            return
        self.rediscovered_ = aligner.stale_sensors()
        self.rediscoveries_ += 1
        self.aligner_ = self._make_aligner(None)
        self.sensor_names_ = None
        self._baseline_ts, self._baseline_X, self._baseline_count = [], [], 0
        self._emitted_seen = self._incomplete_seen = 0
        self._stuck_since_ns = None

    def flush(self) -> list[Verdict]:
        """End of stream: verdicts for what the aligner still holds (``FrameAligner.flush``)."""
        return self.process_rows(self.aligner_.flush())

    def process_rows(self, rows: Sequence[tuple[int, np.ndarray]]) -> list[Verdict]:
        if not rows:
            return []
        ts = np.fromiter((t for t, _ in rows), dtype=np.int64, count=len(rows))
        return self.process(ts, np.vstack([x for _, x in rows]))


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in values.items()}


def _unprefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in values.items() if key.startswith(prefix)}


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Model settings as far as they shape a saved model: without adaptation, ``adapt_every``
    does not (its default changed from 1,000 to 500; models saved before must still load)."""
    out = dict(settings)
    if not out.get("adapt"):
        out.pop("adapt_every", None)
    return out


def _widen(rows: np.ndarray, columns: np.ndarray, fill: float) -> np.ndarray:
    """Rows over the model's columns back to every feature column; the others get ``fill``."""
    wide = np.full((rows.shape[0], columns.size), fill)
    wide[:, columns] = rows
    return wide


def _window_from_sampling(ts: np.ndarray, samples: int) -> float:
    """``samples`` times the median interval between distinct timestamps (seconds; 1 s if unknown)."""
    steps = np.diff(np.unique(ts))
    step_s = float(np.median(steps)) / 1e9 if steps.size else 1.0
    return samples * (step_s if step_s > 0 else 1.0)


def _held_state(anomaly: np.ndarray, scored: np.ndarray, initial: bool) -> np.ndarray:
    """For every row, the anomaly state of the most recent scored row at or before it."""
    idx = np.where(scored, np.arange(anomaly.size), -1)
    last = np.maximum.accumulate(idx)
    return np.where(last >= 0, anomaly[np.maximum(last, 0)], initial)


def _score_at_probability(calibrator: Any, probability: float, low: float, high: float) -> float:
    """The smallest score the calibrator maps to ``probability`` or more (bisection; it is monotone)."""
    for _ in range(200):  # widen until the level is inside: it may lie in the tail beyond the baseline
        if calibrator.transform(np.array([high]))[0] >= probability:
            break
        high += 2.0 * (high - low) + 1.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        if calibrator.transform(np.array([mid]))[0] >= probability:
            high = mid
        else:
            low = mid
    return high


def _utc(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def usable_values(X: np.ndarray) -> np.ndarray:
    """Per value: finite and within ±``MAX_ABS_VALUE`` (NaN compares False)."""
    return np.asarray(np.abs(X) <= MAX_ABS_VALUE)


def usable_rows(X: np.ndarray) -> np.ndarray:
    """Per row: every value usable (``usable_values``)."""
    return np.asarray(usable_values(X).all(axis=1))
