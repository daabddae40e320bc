"""One asset's detection pipeline, shared by the live service and the backtest.

raw score (``RobustZScore``) → calibration (``EmpiricalCalibrator``) → threshold and alarm
aggregation with hysteresis (``HysteresisAlarm``) → ``Verdict`` (with contributions when anomalous).

The core is ``process_arrays`` (vectorised scoring, a sequential alarm loop); ``process`` wraps its
output into ``Verdict`` objects and ``feed`` puts single live readings through a ``FrameAligner``
first. All three go through the same code, so a backtest replays exactly what the service does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from detector.alarm import HysteresisAlarm
from detector.align import FrameAligner
from detector.calibration import EmpiricalCalibrator
from detector.contributions import top_contributions
from detector.robust import RobustZScore
from detector.types import Contribution, Verdict

# Row status codes in ``ScoredRows.status``.
WARMING_UP = 0
SCORED = 1
SKIPPED = 2

DEFAULT_MAX_STALENESS_NS = 10_000_000_000  # 10 s: a few missed samples of a 1 Hz sensor


class Scorer(Protocol):
    """The seam for later detectors (PCA T²/Q, PyOD adapters, ensembles).

    ``contributions`` returns per-sensor signed deviations whose squares explain the score;
    ``median_`` / ``scale_`` give each sensor's baseline centre and spread for the expected range.
    """

    median_: np.ndarray
    scale_: np.ndarray

    def fit(self, X: np.ndarray) -> object: ...

    def score(self, X: np.ndarray) -> np.ndarray: ...

    def contributions(self, X: np.ndarray) -> np.ndarray: ...


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
    """Baseline learning, scoring, calibration and alarm state for one asset.

    The first ``baseline_rows`` finite rows form the baseline (their verdicts say
    ``warming_up=True``). When the last of them arrives the scorer is fitted on them and the
    calibrator on the scorer's scores of those same rows. That in-sample calibration is slightly
    optimistic (baseline rows sit a little closer to their own median than new normal rows do, so
    new normal rows get slightly higher probabilities than nominal); with median/MAD over hundreds
    of rows the effect is small, and a held-out split is left to the detector rework.

    Rows containing any non-finite value are skipped: no verdict, no effect on the baseline or the
    alarm, counted in ``skipped_rows_``.

    Everything is causal and row-sequential, so any split of the rows into micro-batches gives the
    same results as one call with all of them.
    """

    def __init__(
        self,
        asset: str,
        sensors: Sequence[str] | None,
        *,
        baseline_rows: int = 300,
        enter: float = 0.99,
        exit: float = 0.95,
        min_duration: int = 3,
        top_k: int = 3,
        max_staleness_ns: int = DEFAULT_MAX_STALENESS_NS,
        discovery_ns: int | None = None,
        tail_fraction: float = 0.05,
        eps: float = 1e-9,
        scorer_factory: Callable[[], Scorer] | None = None,
    ) -> None:
        self.asset = asset
        self.sensors = sensors
        self.baseline_rows = baseline_rows
        self.enter = enter
        self.exit = exit
        self.min_duration = min_duration
        self.top_k = top_k
        self.max_staleness_ns = max_staleness_ns
        self.discovery_ns = discovery_ns
        self.tail_fraction = tail_fraction
        self.eps = eps
        self.scorer_factory = scorer_factory
        self.reset()

    # -- state -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the baseline, the alarm state and the counters."""
        if self.baseline_rows < 1:
            raise ValueError(f"baseline_rows must be >= 1, got {self.baseline_rows}")
        self.aligner_ = FrameAligner(
            self.sensors, max_staleness_ns=self.max_staleness_ns, discovery_ns=self.discovery_ns
        )
        self.alarm_ = HysteresisAlarm(self.enter, self.exit, self.min_duration)
        self.scorer_: Scorer | None = None
        self.calibrator_: EmpiricalCalibrator | None = None
        self._baseline: list[np.ndarray] = []
        self._baseline_count = 0
        self.rows_seen_ = 0
        self.scored_rows_ = 0
        self.skipped_rows_ = 0

    @property
    def is_warm(self) -> bool:
        """True once the baseline is complete and rows are being scored."""
        return self.scorer_ is not None

    @property
    def sensor_names(self) -> tuple[str, ...] | None:
        """The sensor order of the rows: as configured, or as learned by the aligner."""
        if self.sensors is not None:
            return tuple(self.sensors)
        return self.aligner_.sensors_

    def _make_scorer(self) -> Scorer:
        if self.scorer_factory is not None:
            return self.scorer_factory()
        return RobustZScore(eps=self.eps)

    # -- core --------------------------------------------------------------------------------

    def process_arrays(self, ts_ns: np.ndarray, X: np.ndarray) -> ScoredRows:
        """Score a batch of aligned rows (in time order); the backtest's fast path."""
        ts, X = self._check_input(ts_ns, X)
        n = X.shape[0]
        status = np.full(n, SKIPPED, dtype=np.int8)
        score = np.full(n, np.nan)
        probability = np.full(n, np.nan)
        anomaly = np.zeros(n, dtype=bool)
        held = self.alarm_.active_  # alarm state carried into skipped rows

        rows = np.flatnonzero(np.isfinite(X).all(axis=1))
        rows = self._absorb_baseline(X, rows, status, score, probability)
        if rows.size:
            assert self.scorer_ is not None and self.calibrator_ is not None
            raw = self.scorer_.score(X[rows])
            prob = self.calibrator_.transform(raw)
            score[rows] = raw
            probability[rows] = prob
            anomaly[rows] = self.alarm_.run(prob)
            status[rows] = SCORED
            self.scored_rows_ += int(rows.size)

        skipped = status == SKIPPED
        if skipped.any():
            anomaly[skipped] = _held_state(anomaly, status == SCORED, held)[skipped]
            self.skipped_rows_ += int(skipped.sum())
        self.rows_seen_ += n
        return ScoredRows(ts, score, probability, anomaly, status)

    def _check_input(self, ts_ns: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = np.asarray(ts_ns, dtype=np.int64).ravel()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != ts.shape[0]:
            raise ValueError(f"need X of shape (n, d) with n == len(ts_ns); got {X.shape} and {ts.shape}")
        names = self.sensor_names
        if names is not None and X.shape[1] != len(names):
            raise ValueError(f"asset {self.asset!r}: expected {len(names)} sensors, got {X.shape[1]}")
        return ts, X

    def _absorb_baseline(
        self,
        X: np.ndarray,
        rows: np.ndarray,
        status: np.ndarray,
        score: np.ndarray,
        probability: np.ndarray,
    ) -> np.ndarray:
        """Take finite rows into the baseline until it is full; return the rows left to score."""
        if self.scorer_ is not None:
            return rows
        take = rows[: self.baseline_rows - self._baseline_count]
        if take.size:
            self._baseline.append(X[take].copy())
            self._baseline_count += int(take.size)
            status[take] = WARMING_UP
            score[take] = 0.0
            probability[take] = 0.0
        if self._baseline_count >= self.baseline_rows:
            self._fit(np.vstack(self._baseline))
            self._baseline = []
        return rows[take.size :]

    def _fit(self, baseline: np.ndarray) -> None:
        scorer = self._make_scorer()
        scorer.fit(baseline)
        # In-sample calibration: see the class docstring for why this is acceptable here.
        calibrator = EmpiricalCalibrator(tail_fraction=self.tail_fraction).fit(scorer.score(baseline))
        self.scorer_, self.calibrator_ = scorer, calibrator

    # -- verdicts ----------------------------------------------------------------------------

    def process(self, ts_ns: np.ndarray, X: np.ndarray) -> list[Verdict]:
        """Like ``process_arrays`` but as ``Verdict`` objects (skipped rows give none)."""
        X = np.asarray(X, dtype=np.float64)
        out = self.process_arrays(ts_ns, X)
        contribs = self._contributions(X, out)
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

    def _contributions(self, X: np.ndarray, out: ScoredRows) -> dict[int, tuple[Contribution, ...]]:
        """Contributions only for anomalous scored rows: they are the only ones anyone reads."""
        rows = np.flatnonzero(out.anomaly & (out.status == SCORED))
        if rows.size == 0 or self.scorer_ is None:
            return {}
        names = self.sensor_names or tuple(f"x{j}" for j in range(X.shape[1]))
        z = self.scorer_.contributions(X[rows])
        median, scale = self.scorer_.median_, self.scorer_.scale_
        return {
            int(r): top_contributions(names, X[r], z[j], median, scale, k=self.top_k)
            for j, r in enumerate(rows.tolist())
        }

    def feed(self, reading_ts_ns: int, values: Mapping[str, float]) -> list[Verdict]:
        """Live path: one reading through the aligner; verdicts for the rows it completes.

        Usually zero or one row; several when the reading ends sensor discovery (the buffered
        discovery rows are replayed) — see ``FrameAligner``. All rows go through one ``process``
        call, the same code as the backtest.
        """
        return self._process_rows(self.aligner_.update(reading_ts_ns, values))

    def feed_many(self, readings: Iterable[tuple[int, Mapping[str, float]]]) -> list[Verdict]:
        """Live path for a micro-batch: align every reading, then score all completed rows at once.

        Same verdicts as calling :meth:`feed` per reading (scoring is causal and batch-invariant),
        but one vectorized ``process`` call instead of one per row.
        """
        rows: list[tuple[int, np.ndarray]] = []
        for ts_ns, values in readings:
            rows.extend(self.aligner_.update(ts_ns, values))
        return self._process_rows(rows)

    def flush(self) -> list[Verdict]:
        """End of stream: verdicts for what the aligner still holds (``FrameAligner.flush``)."""
        return self._process_rows(self.aligner_.flush())

    def _process_rows(self, rows: Sequence[tuple[int, np.ndarray]]) -> list[Verdict]:
        if not rows:
            return []
        ts = np.fromiter((t for t, _ in rows), dtype=np.int64, count=len(rows))
        return self.process(ts, np.vstack([x for _, x in rows]))


def _held_state(anomaly: np.ndarray, scored: np.ndarray, initial: bool) -> np.ndarray:
    """For every row, the anomaly state of the most recent scored row at or before it."""
    idx = np.where(scored, np.arange(anomaly.size), -1)
    last = np.maximum.accumulate(idx)
    return np.where(last >= 0, anomaly[np.maximum(last, 0)], initial)
