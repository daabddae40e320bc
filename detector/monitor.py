"""One asset's detection chain — the single object the live service and the backtest both run.

    readings → aligned rows → usable rows → baseline, then
    rolling features → detector (raw score) → calibrator (probability)
    → alarm rule (hysteresis, duration, suppression) → verdicts with explanations

:class:`AssetMonitor` coordinates small parts, configured by one frozen :class:`MonitorConfig`:

* ``intake`` (:mod:`detector.intake`): live readings into aligned rows; rediscovery of a sensor
  that went silent before the baseline;
* ``gate`` (:mod:`detector.gate`): which rows are usable (finite, in time order, window refilled);
* ``operating`` (:mod:`detector.running`): which usable rows are of a running machine, settled after
  its start (``running_when``, ``settle_s``); only those are learned and scored;
* :mod:`detector.baseline`: the baseline rows, and the model learned at their end (window, drifting
  sensors, cross-fitted calibration, :mod:`detector.episode`);
* :mod:`detector.adaptation`: refits on a memory of normal rows (``adapt``);
* :mod:`detector.recalibration`: raises the alarm level when live normal scores show a heavier tail;
* :mod:`detector.explain` and :mod:`detector.advice`: top sensors of anomalous rows, and what to
  change about a baseline;
* :mod:`detector.state`: the saved state, and every older layout of it.

The live path (:meth:`AssetMonitor.observe`) returns verdicts together with events
(:mod:`detector.events`): baseline learned or failed, sensors rediscovered, unknown sensors, model
refitted, what was left out. The backtest's fast path is :meth:`AssetMonitor.process_arrays`; both
score with the same code.

Causality. Features only look back; detectors score row-wise; the alarm is sequential; adaptation
refits at fixed row counts. So any split of the rows into micro-batches gives identical results,
and truncating the input never changes earlier outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.adaptation import Adaptation
from detector.advice import (
    capped_advice,
    episode_advice,
    joined,
    one_way_advice,
    rose_and_fell,
    scores_beyond_enter,
    short_baseline_advice,
)
from detector.alert_rate import probability_at_surprise, surprise_at_probability
from detector.align import Row
from detector.base import Detector
from detector.baseline import BaselineModel, BaselineRows, FittedModels, baseline_one_way, fit_models, learn_baseline
from detector.calibration import Calibrator
from detector.config import MonitorConfig
from detector.detectability import SmallestShifts, level_columns, smallest_shifts
from detector.events import (
    BaselineExtended,
    BaselineFailed,
    BaselineLearned,
    Event,
    LeftOut,
    ModelRefitted,
    SensorsRediscovered,
)
from detector.explain import Explainer
from detector.features import RollingFeatures
from detector.feedback import FEEDBACK_MAX_RAISE, Feedback
from detector.fleet import Scored
from detector.gate import NEVER, RowGate
from detector.intake import AlignerCounts, SensorIntake, rows_to_arrays
from detector.recalibration import GUARD_WINDOWS, SHORT_ALERT_WINDOWS, Recalibration
from detector.running import OperatingStates, alarm_resets
from detector.state import Learned, MonitorState, decode, encode
from detector.types import Explanation, Verdict

# Row status codes in ``ScoredRows.status``.
WARMING_UP = 0
SCORED = 1
SKIPPED = 2
STOPPED = 3  # running_when is false
SETTLING = 4  # started, not yet scored: settle_s, then the feature window refilling
NOT_RUNNING = (STOPPED, SETTLING)

UNEXPLAINED = Explanation(())  # rows that are not anomalous, or were not asked to be explained


@dataclass(frozen=True, slots=True)
class ScoredRows:
    """Per-row results of one ``process_arrays`` call, aligned with its input rows.

    Warm-up rows: score 0, probability 0, anomaly False. Skipped rows (any non-finite value):
    score and probability NaN, anomaly = the alarm state held from the previous scored row. Stopped
    and settling rows (:mod:`detector.running`): score and probability NaN, anomaly False.
    """

    ts_ns: np.ndarray  # int64
    score: np.ndarray  # float64
    probability: np.ndarray  # float64
    anomaly: np.ndarray  # bool
    status: np.ndarray  # int8: WARMING_UP / SCORED / SKIPPED / STOPPED / SETTLING
    alarm_enter: np.ndarray  # float64: the level each scored row was judged by (NaN for the others)

    @classmethod
    def skipped(cls, ts: np.ndarray) -> ScoredRows:
        """Every row skipped, to be filled in."""
        n = ts.size
        nan = np.full(n, np.nan)
        return cls(ts, nan, nan.copy(), np.zeros(n, dtype=bool), np.full(n, SKIPPED, np.int8), nan.copy())


@dataclass(frozen=True, slots=True, eq=False)
class Observation:
    """What one :meth:`AssetMonitor.observe` call gave."""

    rows: list[Row]  # the aligned rows the readings completed, in ``sensor_names`` order
    verdicts: list[Verdict]  # one per row that was learned, scored or stopped
    events: tuple[Event, ...]


class AssetMonitor:
    """Baseline learning, features, scoring, calibration, alarm and explanations for one asset.

    ``sensors``: the sensor order of the rows, or None to discover it from the first readings.
    """

    def __init__(self, asset: str, config: MonitorConfig | None = None, sensors: Sequence[str] | None = None) -> None:
        if config is not None and not isinstance(config, MonitorConfig):
            raise TypeError(f"config must be a MonitorConfig, got {type(config).__name__}")
        self.asset = asset
        self.config = config if config is not None else MonitorConfig()
        self.sensors = sensors
        self.reset()

    def reset(self) -> None:
        """Forget the baseline, the models, the alarm state and the counters."""
        self.intake = SensorIntake(self.config, self.sensors)
        self.gate = RowGate()
        self.operating = OperatingStates(self.config.running_rule, self.config.settle_s)
        unusable = self.operating.bind(self.asset, self.sensors) if self.sensors is not None else None
        if unusable is not None:  # configured sensors: refused now, as a bad setting
            raise ValueError(unusable.problem)
        self.alarm_ = self.config.make_alarm()
        self.baseline_ = BaselineRows(self.config.baseline_rows)
        self.baseline_extensions_ = 0  # how often the learned baseline was extended (saved with the model)
        # Replaced whole, never changed in place (a refit swaps in a new one): /healthz reads it from
        # another thread. The rolling features and the adaptation memory move on with every row.
        self.model_: BaselineModel | None = None
        self.features_: RollingFeatures | None = None
        self.adaptation_: Adaptation | None = None
        self.recalibration_: Recalibration | None = None
        self.feedback_: Feedback | None = None
        self.rows_seen_ = self.scored_rows_ = self.skipped_rows_ = self.late_rows_ = self.refits_ = 0
        self.baseline_failures_ = self.recalibrations_ = 0
        self.baseline_failure_: BaselineFailed | None = None  # the last one: why, and what to change
        # (detector, alarm level, shifts): worked out for that detector at that level
        self._shifts: tuple[object, float, SmallestShifts | None] | None = None

    # -- what it knows ---------------------------------------------------------------------------

    @property
    def is_warm(self) -> bool:
        """True once the baseline is complete and rows are being scored."""
        return self.model_ is not None

    @property
    def sensor_names(self) -> tuple[str, ...] | None:
        """The sensor order of the rows: as configured, restored, or discovered (None until then)."""
        return self.intake.sensor_names

    @property
    def unknown_sensors(self) -> frozenset[str]:
        """Sensors published outside the sensor set (their values are ignored)."""
        return self.intake.unknown_sensors

    def stale_sensors(self) -> tuple[str, ...]:
        """Sensors without a fresh value: until they report again, no row completes."""
        return self.intake.stale_sensors()

    @property
    def rediscoveries_(self) -> int:
        return self.intake.rediscoveries_

    @property
    def rediscovered_(self) -> tuple[str, ...]:
        """The silent sensors the last rediscovery dropped."""
        return self.intake.rediscovered_

    @property
    def drifting_sensors(self) -> tuple[str, ...]:
        """Sensors whose level wandered over the baseline, judged only by how they move."""
        model = self.model_  # read once: /healthz asks from another thread than the one resetting
        if model is None:
            return ()
        names = self._names(model.drifting.size)
        return tuple(name for name, flag in zip(names, model.drifting.tolist(), strict=True) if flag)

    @property
    def alarm_enter(self) -> float:
        """The calibrated probability at which the alarm enters: derived from ``false_alerts_per_week``
        once a baseline is learned, raised when recalibration finds the live tail heavier
        (:mod:`detector.recalibration`) and above rows operators marked normal (:mod:`detector.feedback`);
        ``enter`` before that and without a target."""
        model, recalibration = self.model_, self.recalibration_
        if model is None:
            return self.config.enter
        derived = model.alarm_enter(self.config)
        raised = [derived]
        feedback = self.feedback_  # read once: a relearn on the detector thread may reset it
        if recalibration is not None:
            raised.append(recalibration.enter_)
        if feedback is not None:  # bounded: one mistaken mark must not silence the asset
            ceiling = probability_at_surprise(surprise_at_probability(derived) + FEEDBACK_MAX_RAISE)
            raised.append(min(feedback.enter_, ceiling))
        return min(max(raised), max(derived, model.alarm_cap(self.config)))

    def smallest_shifts(self, *, work_out: bool = True) -> SmallestShifts | None:
        """The smallest settled shift of each sensor's level the alarm flags now (:mod:`detector.detectability`),
        worked out again when the model or the alarm level changed; None before a baseline, for a
        model restored without its baseline rows, and above ``MAX_SENSORS`` sensors. With ``work_out``
        False (another thread asking, /healthz) only what was worked out for the current model and
        level, else None: the work belongs to the thread that scores."""
        model, feedback, level = self.model_, self.feedback_, self.alarm_enter
        if model is None or feedback is None:
            return None
        cached = self._shifts
        if cached is not None and cached[0] is model.detector and cached[1] == level:
            return cached[2]
        if not work_out:
            return None
        d = model.drifting.size
        shifts = smallest_shifts(
            model.detector,
            model.calibrator,
            surprise_at_probability(level),
            feedback.baseline,
            level_columns(d, self.config.column_features, model.columns),
            model.expected_high - model.expected_low,
            self._names(d),
        )
        self._shifts = (model.detector, level, shifts)
        return shifts

    def _names(self, d: int) -> tuple[str, ...]:
        """The sensor names, or ``x0``, ``x1``, ... for a monitor given arrays without names."""
        return self.sensor_names or tuple(f"x{j}" for j in range(d))

    @property
    def scores_beyond_enter(self) -> float | None:
        """How many baseline scores lie beyond the alarm entry level (``advice.scores_beyond_enter``)."""
        model = self.model_
        return scores_beyond_enter(model.calibrator if model is not None else None, self.config.enter)

    @property
    def learned_baseline_rows(self) -> int:
        """The rows the learned baseline used: ``baseline_rows``, more where it went on."""
        return self.config.baseline_rows * (1 + self.baseline_extensions_)

    def short_baseline_advice(self) -> str | None:
        """What to change when too few baseline scores lie beyond the alarm level (None when enough)."""
        return short_baseline_advice(self.asset, self.scores_beyond_enter, self.config, self.learned_baseline_rows)

    def episode_advice(self) -> str | None:
        """What to check when one episode of the baseline set the alarm level (None otherwise)."""
        model = self.model_
        return episode_advice(self.asset, model.episode if model is not None else None, self.config)

    def baseline_advice(self) -> str | None:
        """What to change about the baseline, if anything: a detector that cannot reach the derived
        alarm level, too few scores beyond ``enter``, or one episode setting the level (only judged
        with enough such scores, so at most one of the last two applies); and, besides, sensors the
        baseline saw move one way only."""
        level = self.capped_advice() or self.short_baseline_advice() or self.episode_advice()
        return joined(self.asset, [level, self.one_way_advice()])

    def one_way_advice(self) -> str | None:
        """What to change when the baseline saw sensors move one way only (:mod:`detector.transitions`)."""
        model = self.model_
        if model is None or model.one_way is None:
            return None
        return one_way_advice(self.asset, self._names(model.one_way.size), model.one_way)

    def capped_advice(self) -> str | None:
        """What to change when the detector cannot reach the level the false-alert target asks for."""
        model, config = self.model_, self.config
        target = config.false_alerts_per_week
        if model is None or target is None:
            return None
        derived = model.alert_rate.derived(target, config.enter)
        return capped_advice(self.asset, derived, model.alarm_cap(config), config)

    # -- live path -------------------------------------------------------------------------------

    def observe(self, readings: Iterable[tuple[int, Mapping[str, float]]]) -> Observation:
        """Align these readings, score every row they complete at once; verdicts and events.

        Same verdicts as feeding the readings one at a time (scoring is causal and batch-invariant).
        """
        return self.finish_observe(self.begin_observe(readings))

    def begin_observe(self, readings: Iterable[tuple[int, Mapping[str, float]]]) -> PendingObservation:
        """``observe`` up to the rolling features: align, gate, learn the baseline. Between the halves
        the features of many assets can be worked out together (``PendingObservation.feature_input``,
        ``detector.features.update_streams``); nothing else may touch this monitor meanwhile."""
        events: list[Event] = []
        counts = self.intake.counts()
        rows = self.intake.add(readings, fixed=self.is_warm, events=events)
        if any(isinstance(e, SensorsRediscovered) for e in events):
            self.baseline_.clear()  # rows of the abandoned sensor set
        scoring = self._begin(*rows_to_arrays(rows), events=events) if rows else None
        return PendingObservation(rows, counts, events, scoring)

    def model_input(
        self, pending: PendingObservation, features: np.ndarray
    ) -> tuple[Detector, Calibrator, np.ndarray] | None:
        """``(detector, calibrator, rows)``: what ``finish_observe`` will score, given the features of
        ``pending.feature_input``, for scoring many assets' rows together (``detector.fleet``)."""
        scoring, model = pending.scoring, self.model_
        if scoring is None or scoring.features_in is None or model is None:
            return None
        return (
            model.detector,
            model.calibrator,
            model.model_rows(features if self.config.features else scoring.features_in[2]),
        )

    def finish_observe(
        self, pending: PendingObservation, features: np.ndarray | None = None, scores: Scored | None = None
    ) -> Observation:
        """The rest of ``observe``: ``features`` are those of ``pending.feature_input`` (None: worked out
        here), ``scores`` the raw scores and probabilities of ``model_input``'s rows (None: likewise)."""
        events = pending.events
        verdicts, skipped, stopped = [], 0, 0
        if pending.scoring is not None:
            out, explanations = self._finish(pending.scoring, features, scores, explain=True, events=events)
            verdicts, skipped, stopped = self._verdicts(out, explanations), *_left_out_rows(out)
        left = self.intake.counts() - pending.counts
        if skipped or stopped or left.unknown_values or left.late_readings or left.incomplete_rows:
            events.append(LeftOut(left.unknown_values, left.late_readings, left.incomplete_rows, skipped, stopped))
        return Observation(pending.rows, verdicts, tuple(events))

    def feed(self, reading_ts_ns: int, values: Mapping[str, float]) -> list[Verdict]:
        """One reading; verdicts for the rows it completes."""
        return self.observe([(reading_ts_ns, values)]).verdicts

    def feed_many(self, readings: Iterable[tuple[int, Mapping[str, float]]]) -> list[Verdict]:
        """A micro-batch of readings; verdicts for the rows they complete."""
        return self.observe(readings).verdicts

    def flush(self) -> list[Verdict]:
        """End of stream: verdicts for what the aligner still holds (``FrameAligner.flush``)."""
        events: list[Event] = []
        return self._score_rows(self.intake.flush(events), events)[0]

    def _score_rows(self, rows: Sequence[Row], events: list[Event]) -> tuple[list[Verdict], int, int]:
        """The verdicts of these rows, how many were skipped, and how many stopped or settling."""
        if not rows:
            return [], 0, 0
        out, explanations = self._process(*rows_to_arrays(rows), explain=True, events=events)
        return self._verdicts(out, explanations), *_left_out_rows(out)

    # -- arrays ----------------------------------------------------------------------------------

    def process_arrays(self, ts_ns: np.ndarray, X: np.ndarray) -> ScoredRows:
        """Score a batch of aligned rows (in time order); the backtest's fast path."""
        return self._process(ts_ns, X, explain=False, events=[])[0]

    def process_explained(self, ts_ns: np.ndarray, X: np.ndarray) -> tuple[ScoredRows, dict[int, Explanation]]:
        """``process_arrays`` plus the explanation of every anomalous row, keyed by row index."""
        return self._process(ts_ns, X, explain=True, events=[])

    def process(self, ts_ns: np.ndarray, X: np.ndarray) -> list[Verdict]:
        """Like ``process_arrays`` but as ``Verdict`` objects (skipped and settling rows give none)."""
        return self._verdicts(*self.process_explained(ts_ns, X))

    def _verdicts(self, out: ScoredRows, explanations: dict[int, Explanation]) -> list[Verdict]:
        columns = (out.ts_ns, out.score, out.probability, out.anomaly, out.status, out.alarm_enter)
        verdicts = []
        for i, (t, s, p, a, st, level) in enumerate(zip(*(c.tolist() for c in columns), strict=True)):
            if st not in (WARMING_UP, SCORED, STOPPED):
                continue
            why = explanations.get(i, UNEXPLAINED)
            unseen = why.unseen_operating_point
            warming, running = st == WARMING_UP, st != STOPPED
            enter = level if math.isfinite(level) else None
            verdicts.append(Verdict(self.asset, t, s, p, a, why.contributions, warming, running, unseen, enter))
        return verdicts

    def _process(
        self, ts_ns: np.ndarray, X: np.ndarray, *, explain: bool, events: list[Event]
    ) -> tuple[ScoredRows, dict[int, Explanation]]:
        """The scored rows, and with ``explain`` the explanation of every anomalous row by row index."""
        return self._finish(self._begin(ts_ns, X, events=events), None, None, explain=explain, events=events)

    def _begin(self, ts_ns: np.ndarray, X: np.ndarray, *, events: list[Event]) -> _Scoring:
        """Gate the rows, mark stopped and settling ones, learn the baseline: what is left to score."""
        ts, X = self._check_input(ts_ns, X)
        unusable = self.operating.bind(self.asset, self.sensor_names)  # once the sensors are known
        if unusable is not None:
            events.append(unusable)
        out = ScoredRows.skipped(ts)
        held = self.alarm_.active_  # alarm state carried into skipped rows
        rows, previous, late = self.gate.in_order(ts, X)
        self.late_rows_ += late
        rows, started_at = self._running_rows(ts, X, rows, out)
        rows = self._absorb_baseline(ts, X, rows, out, events)
        features_in = None
        if rows.size:
            assert self.features_ is not None
            features_in = (self.features_, ts[rows], X[rows])
        return _Scoring(ts, X, out, held, rows, previous, started_at, features_in)

    def _finish(
        self,
        scoring: _Scoring,
        features: np.ndarray | None,
        scores: Scored | None,
        *,
        explain: bool,
        events: list[Event],
    ) -> tuple[ScoredRows, dict[int, Explanation]]:
        """Score what ``_begin`` left, with the rolling features of its rows, and their scores by the
        current model, when worked out already."""
        scored_by: _ScoredBy | None = None
        ts, X, out, held, rows = scoring.ts, scoring.X, scoring.out, scoring.held, scoring.rows
        previous, started_at = scoring.previous, scoring.started_at
        explanations: dict[int, Explanation] = {}
        if scoring.features_in is not None:
            assert self.model_ is not None
            stream, ts_in, X_in = scoring.features_in
            if features is None:
                features = stream.update(ts_in, X_in)
            F = self.model_.model_rows(features if self.config.features else X_in)
            refilling = self.gate.refilling(ts_in, previous[rows], self._window_s())
            starting = self.operating.refilling(ts_in, started_at[rows], self._window_s())
            out.status[rows[starting]] = SETTLING
            settled = ~(refilling | starting)
            rows, F = rows[settled], F[settled]
            if scores is not None:
                scored_by = _ScoredBy(self.model_, scores[0][settled], scores[1][settled])
        resets, reset_after = alarm_resets(out.status == STOPPED, rows)
        if rows.size:
            self._score(rows, F, resets, out, X if explain else None, explanations, events, scored_by)
            out.status[rows] = SCORED
            self.scored_rows_ += int(rows.size)
        if reset_after:
            self.alarm_.reset()
        skipped = out.status == SKIPPED
        if skipped.any():
            # Stopped and settling rows: alarm off. Comparisons, not np.isin (40 -> 4 µs an asset and call).
            decided = out.status == SCORED
            for not_running in NOT_RUNNING:
                decided |= out.status == not_running
            out.anomaly[skipped] = _held_state(out.anomaly, decided, held)[skipped]
            self.skipped_rows_ += int(skipped.sum())
        self.rows_seen_ += ts.size
        return out, explanations

    def _check_input(self, ts_ns: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = np.asarray(ts_ns, dtype=np.int64).ravel()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != ts.shape[0]:
            raise ValueError(f"need X of shape (n, d) with n == len(ts_ns); got {X.shape} and {ts.shape}")
        names = self.sensor_names
        if names is not None and X.shape[1] != len(names):
            raise ValueError(f"asset {self.asset!r}: expected {len(names)} sensors, got {X.shape[1]}")
        return ts, X

    @staticmethod
    def _windows_in_rows(model: BaselineModel, windows: int) -> int:
        """``windows`` feature windows in rows: recalibration's guard around an alert (``GUARD_WINDOWS``)
        and the longest alert it learns (``SHORT_ALERT_WINDOWS``)."""
        return math.ceil(windows * model.window_s / model.alert_rate.sample_s)

    def _window_s(self) -> float | None:
        """The feature window rows refill after a gap (None: features off, or no model yet)."""
        model = self.model_
        return model.window_s if model is not None and self.config.features else None

    # -- operating states --------------------------------------------------------------------------

    def _running_rows(
        self, ts: np.ndarray, X: np.ndarray, rows: np.ndarray, out: ScoredRows
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mark the stopped and settling ones of the usable ``rows``; return the rest (fed into the
        baseline and the features) and, per row of the batch, the stamp of its latest start."""
        states = self.operating.classify(ts, X, rows)
        out.status[rows[states.stopped]] = STOPPED
        out.status[rows[states.settling]] = SETTLING
        started_at = np.full(ts.size, NEVER, dtype=np.int64)
        started_at[rows] = states.started_at
        return rows[states.fed], started_at

    # -- baseline --------------------------------------------------------------------------------

    def _absorb_baseline(
        self, ts: np.ndarray, X: np.ndarray, rows: np.ndarray, out: ScoredRows, events: list[Event]
    ) -> np.ndarray:
        """Take usable rows into the baseline until it is learned; return the rows left to score."""
        while self.model_ is None and rows.size:
            taken = self.baseline_.take(ts, X, rows)
            out.status[taken], out.score[taken], out.probability[taken] = WARMING_UP, 0.0, 0.0
            rows = rows[taken.size :]
            if self.baseline_.full and not self._extended(events):
                self.baseline_extensions_ = self.baseline_.extensions
                self._learn(*self.baseline_.pop(), events=events)
        return rows

    def _extended(self, events: list[Event]) -> bool:
        """Whether the full baseline goes on for another ``baseline_rows``: while it saw a sensor move
        one way only, ``baseline_extensions`` times at most. Learned as it is, the way back would look
        like a fault every time the process takes it (``detector.transitions``)."""
        baseline, allowed = self.baseline_, self.config.baseline_extensions
        if baseline.extensions >= allowed:
            return False
        arrays = baseline.arrays()
        assert arrays is not None
        try:
            one_way = baseline_one_way(*arrays, self.config)
        except Exception:  # learning these rows meets the same error, and reports it (BaselineFailed)
            return False
        if not one_way.any():
            return False
        baseline.extend()
        rose, fell = rose_and_fell(self._names(one_way.size), one_way)
        events.append(BaselineExtended(rose, fell, baseline.count, baseline.size, baseline.extensions, allowed))
        return True

    def _learn(self, ts: np.ndarray, X: np.ndarray, *, events: list[Event]) -> None:
        """Learn the model of these baseline rows. One that cannot be learned (say KNN on folds smaller
        than its neighbourhood) is dropped, counted and reported, and the rows after it start the next
        baseline: the monitor is never stuck re-fitting the same rows."""
        config = self.config
        try:
            model, features, F = learn_baseline(ts, X, config, fit=self._fit)
        except Exception as exc:  # any model error: report it and learn again
            self.baseline_failures_ += 1
            self.baseline_failure_ = BaselineFailed(
                cause=str(exc),
                message=(
                    f"asset {self.asset!r}: learning the baseline from {ts.size} rows failed ({exc}); "
                    f"the next {config.baseline_rows} rows (or more: detector.baseline_extensions) are learned "
                    f"instead. Check detector {config.detector!r}, its params and baseline_rows (with "
                    f"{config.calibration_folds} cross-fitting folds each model learns from all folds but one)"
                ),
            )
            events.append(self.baseline_failure_)
            return
        self.model_, self.features_ = model, features
        self.gate.after_baseline(ts, self._window_s())
        self.adaptation_ = Adaptation.start(config, F) if config.adapt else None
        self.recalibration_ = Recalibration.start(config, model.calibrator) if config.recalibrates else None
        self.feedback_ = Feedback.start(F)
        self.alarm_.enter = self.alarm_enter
        events.append(BaselineLearned(self.drifting_sensors, self.baseline_advice()))

    def _fit(self, F: np.ndarray, config: MonitorConfig) -> FittedModels:
        """Fit detector and calibrator, at the baseline and at each refit (a bench overrides it)."""
        return fit_models(F, config)

    # -- scoring ---------------------------------------------------------------------------------

    def _score(
        self,
        rows: np.ndarray,
        F: np.ndarray,
        resets: np.ndarray,
        out: ScoredRows,
        X: np.ndarray | None,
        explanations: dict[int, Explanation],
        events: list[Event],
        scored_by: _ScoredBy | None = None,
    ) -> None:
        """Score in segments that end where adaptation refits, so batch splits never matter, and where
        a stop lies between two scored rows (``resets``): the alarm starts again after it.

        With ``X`` (the batch's readings), anomalous rows are explained by the model that scored
        them, before any refit. ``scored_by``: the rows' scores by a model, used while it is the one.
        """
        config, start = self.config, 0
        reset_at = np.flatnonzero(resets)
        while start < rows.size:
            adaptation, recalibration, model = self.adaptation_, self.recalibration_, self.model_
            assert model is not None
            if resets[start]:
                self.alarm_.reset()
            stop = rows.size
            for refits in (adaptation, recalibration):
                if refits is not None:
                    stop = min(stop, start + refits.rows_to_refit(config))
            next_reset = reset_at[reset_at > start]
            stop = min(stop, int(next_reset[0])) if next_reset.size else stop
            seg, idx = slice(start, stop), rows[start:stop]
            if scored_by is not None and scored_by.model is model:
                raw, prob = scored_by.raw[seg], scored_by.probability[seg]
            else:
                raw = model.detector.score(F[seg])
                prob = model.calibrator.transform(raw)
            flags = self.alarm_.run(prob)
            out.score[idx], out.probability[idx], out.anomaly[idx] = raw, prob, flags
            out.alarm_enter[idx] = self.alarm_.enter  # fixed within a segment: recalibration ends one
            if self.feedback_ is not None:
                self.feedback_.remember_alerts(out.ts_ns[idx], F[seg], flags, config)
            if X is not None and flags.any():
                names = self._names(X.shape[1])
                explainer = Explainer(model, names, config.column_features, config.top_k)
                explanations.update(explainer.rows(X, idx[flags], F[seg][flags]))
            if adaptation is not None:
                adaptation.learn(F[seg], prob, flags, config)
                if adaptation.refit_due(config):
                    fitted = adaptation.refit(config, self._fit)
                    self.model_ = model.refitted(fitted, adaptation.memory.in_time_order())
                    self.refits_ += 1
                    events.append(ModelRefitted(self.refits_))
            if recalibration is not None:
                guard, short = (self._windows_in_rows(model, n) for n in (GUARD_WINDOWS, SHORT_ALERT_WINDOWS))
                recalibration.learn(raw, flags, guard, short)
                if recalibration.refit_due(config):
                    recalibration.refit(config, model.calibrator, model.alarm_enter(config))
                    self.alarm_.enter = self.alarm_enter
                    self.recalibrations_ += 1
            start = stop

    # -- operator feedback -----------------------------------------------------------------------

    def learn_false_alarm(self, start_ns: int, end_ns: int) -> int:
        """An operator marked the alert rows stamped in ``[start_ns, end_ns]`` a false alarm: learn them
        as normal (:mod:`detector.feedback`) and refit; how many rows were learned (0: no kept alert
        row in that period, nothing changed). ``ValueError`` without a learned baseline, or for a
        model saved before feedback was kept (relearn its baseline)."""
        feedback, model = self._feedback()
        if self.config.adapt:
            raise ValueError(
                f"asset {self.asset!r} adapts (detector.adapt: true), and its refits would calibrate on the "
                "marked rows and forget the rest; feedback is learned only without adapt"
            )
        rows, fitted = feedback.learn(start_ns, end_ns, self.config)
        if fitted is None:
            return 0
        self.model_ = model.refitted(fitted, feedback.baseline)
        if self.recalibration_ is not None:  # live scores of the old model say nothing of the new one
            self.recalibration_ = Recalibration.start(self.config, fitted.calibrator)
        self.alarm_.enter = self.alarm_enter
        self.refits_ += 1
        return rows

    def mark_true_fault(self, start_ns: int, end_ns: int) -> int:
        """An operator confirmed the alert rows stamped in ``[start_ns, end_ns]`` a fault: they can never
        be learned as normal; how many kept alert rows were dropped."""
        return self._feedback()[0].forget(start_ns, end_ns)

    def _feedback(self) -> tuple[Feedback, BaselineModel]:
        feedback, model = self.feedback_, self.model_
        if model is None:
            raise ValueError(f"asset {self.asset!r} has no learned baseline: there is no alert to learn from")
        if feedback is None:
            raise ValueError(
                f"asset {self.asset!r}: its model was saved before feedback was kept; relearn its baseline"
            )
        return feedback, model

    # -- persistence -----------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything learned, as flat keys -> arrays or plain JSON values (see :mod:`detector.state`)."""
        learned = None
        if self.model_ is not None:
            assert self.features_ is not None
            learned = Learned(self.model_, self.features_, self.adaptation_, self.recalibration_, self.feedback_)
        saved = MonitorState(
            sensors=self.sensor_names,
            counters=(self.rows_seen_, self.scored_rows_, self.skipped_rows_, self.late_rows_, self.refits_),
            last_ts=self.gate.last_ts_,
            refill_until=self.gate.refill_until_,
            stopped=self.operating.stopped_,
            started_at=self.operating.started_at_,
            baseline_extensions=self.baseline_extensions_,
            alarm=self.alarm_.get_state(),
            baseline=self.baseline_.arrays() if learned is None else None,
            learned=learned,
        )
        return encode(saved, self.config)

    def set_state(self, state: Mapping[str, Any]) -> AssetMonitor:
        """Restore :meth:`get_state` output (or an older layout); ``ValueError`` if it came from other
        model settings or does not fit together (the monitor is then left as it was)."""
        saved = decode(state, self.config, self.asset, self.sensors)
        self.reset()
        if saved.sensors is not None:
            self.intake.restore(saved.sensors)
        self.rows_seen_, self.scored_rows_, self.skipped_rows_, self.late_rows_, self.refits_ = saved.counters
        self.gate = RowGate(saved.last_ts, saved.refill_until)
        self.operating.stopped_, self.operating.started_at_ = saved.stopped, saved.started_at
        self.baseline_extensions_ = saved.baseline_extensions
        self.alarm_.set_state(saved.alarm)
        if saved.baseline is not None:
            self.baseline_.restore(*saved.baseline, self.config.baseline_extensions)
        if saved.learned is not None:
            self.features_, self.adaptation_ = saved.learned.features, saved.learned.adaptation
            self.recalibration_, self.feedback_ = saved.learned.recalibration, saved.learned.feedback
            self.model_ = saved.learned.model
            self.alarm_.enter = self.alarm_enter
        return self


@dataclass(frozen=True, slots=True, eq=False)
class _Scoring:
    """A batch between ``_begin`` and ``_finish``: its rows, results so far, and the rows left to score
    with what their rolling features need (``(stream, ts, X)``; None when no row is left)."""

    ts: np.ndarray
    X: np.ndarray
    out: ScoredRows
    held: bool
    rows: np.ndarray
    previous: np.ndarray
    started_at: np.ndarray
    features_in: tuple[RollingFeatures, np.ndarray, np.ndarray] | None


@dataclass(frozen=True, slots=True, eq=False)
class _ScoredBy:
    """Rows' raw scores and probabilities by one model, worked out with other assets' (``detector.fleet``)."""

    model: BaselineModel | None
    raw: np.ndarray
    probability: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class PendingObservation:
    """An ``observe`` call between :meth:`AssetMonitor.begin_observe` and ``finish_observe``."""

    rows: list[Row]
    counts: AlignerCounts
    events: list[Event]
    scoring: _Scoring | None

    @property
    def feature_input(self) -> tuple[RollingFeatures, np.ndarray, np.ndarray] | None:
        """``(stream, ts, X)``: the rows whose rolling features the second half needs (None: none)."""
        return self.scoring.features_in if self.scoring is not None else None


def _left_out_rows(out: ScoredRows) -> tuple[int, int]:
    """How many rows were skipped, and how many stopped or settling."""
    status = out.status
    return int((status == SKIPPED).sum()), int(((status == STOPPED) | (status == SETTLING)).sum())


def _held_state(anomaly: np.ndarray, scored: np.ndarray, initial: bool) -> np.ndarray:
    """For every row, the anomaly state of the most recent scored row at or before it."""
    idx = np.where(scored, np.arange(anomaly.size), -1)
    last = np.maximum.accumulate(idx)
    return np.where(last >= 0, anomaly[np.maximum(last, 0)], initial)
