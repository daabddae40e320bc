"""Operator feedback: rows of an alert marked a false alarm join the asset's normal memory.

An operator who marks an alert ``false_alarm`` says its behaviour is normal running that the
baseline never showed (a cleaning cycle, a new product, a sensor recalibrated). Left alone, the same
behaviour alerts again every time. So the monitor keeps the model's feature rows of its recent alert
rows (:class:`AlertRows`: up to ``ALERT_ROWS_KEPT`` baseline lengths, newest kept), and
:meth:`Feedback.learn` moves the rows of a marked period into the normal memory and refits the
detector on the baseline's rows plus every row marked normal. The calibrator is refitted on the
baseline's rows only, each cross-fitting block scored by a model that learned the other blocks and
the marked rows (``fit_models(..., normal=...)``): scored by a model that had not seen them, the
marked rows would look as unusual as a fault, and calibrating on that would put the level above
faults too (measured: a fault of the same size on another sensor then went unflagged).

A model that learns a few hundred unusual rows among thousands still finds the rarest of them
unusual: a step's first and last seconds, where the rolling spread jumps, kept alerting after three
markings (``bench/feedback.py``). So the alarm level is also raised just above the highest
probability the refitted model gives any row marked normal (``enter_``): what an operator called
normal does not alert again. This raises the level for every sensor, so it is bounded: at most
``FEEDBACK_MAX_RAISE`` nats of surprise above the level derived from the baseline (the monitor caps
it), so that one mistaken mark of a huge fault cannot silence the asset. A fault that scores above
the marked behaviour still alerts; ``/healthz`` shows the level (``alarm_enter``).

Rows marked ``true_fault`` are dropped from the alert rows: they can never be learned afterwards.
Rows that were not in an alert are not kept, and cannot be marked.

The baseline's feature rows are kept in single precision: they are the largest part of a learned
asset's memory (600 rows of 16 features, 73 KB in double precision), and are read only when an
operator marks an alert and for the smallest flagged shifts, where a relative error of 1e-7 in a
rolling mean or spread changes nothing that is reported. Where they are kept is the caller's
(:class:`KeptRows`): in memory by default; the service keeps them in a file and reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from detector.baseline import FittedModels, fit_models
from detector.config import MonitorConfig

ALERT_ROWS_KEPT = 1  # feature rows of recent alerts kept for feedback, in baseline lengths
MARKED_NORMAL_KEPT = 1  # rows marked normal learned from, in baseline lengths (the newest kept)
FEEDBACK_MAX_RAISE = 3.0  # nats of surprise the alarm level may rise above the derived one (20x rarer)


class KeptRows(Protocol):
    """Where the baseline's feature rows are kept: in memory (:class:`InMemory`), or wherever the
    caller keeps them (the service: in a file, read back when asked; they are read rarely)."""

    def get(self) -> np.ndarray:
        """The rows, float32."""
        ...


@dataclass(frozen=True)
class InMemory:
    rows: np.ndarray

    def get(self) -> np.ndarray:
        return self.rows


@dataclass
class AlertRows:
    """The feature rows of recent alert rows, oldest first, with their stamps."""

    ts: np.ndarray  # int64
    F: np.ndarray  # (n, width)

    @classmethod
    def empty(cls, width: int) -> AlertRows:
        return cls(np.empty(0, dtype=np.int64), np.empty((0, width)))

    def add(self, ts: np.ndarray, F: np.ndarray, capacity: int) -> None:
        """Append these rows, keeping the newest ``capacity``."""
        self.ts = np.concatenate([self.ts, ts])[-capacity:]
        self.F = np.vstack([self.F, F])[-capacity:]

    def inside(self, start_ns: int, end_ns: int) -> np.ndarray:
        """Which rows are stamped in ``[start_ns, end_ns]``."""
        return np.asarray((self.ts >= start_ns) & (self.ts <= end_ns))

    def take(self, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove and return the rows stamped in ``[start_ns, end_ns]``."""
        inside = self.inside(start_ns, end_ns)
        taken = self.ts[inside], self.F[inside]
        self.ts, self.F = self.ts[~inside], self.F[~inside]
        return taken


class Feedback:
    """What an asset learned from its operators: the baseline's feature rows, the rows marked normal
    since, and the alert rows that may still be marked."""

    def __init__(self, baseline: np.ndarray, marked: np.ndarray, alerts: AlertRows, enter: float = 0.0) -> None:
        rows = np.asarray(baseline, dtype=np.float32)  # what is kept (and saved): the module docstring
        self.kept: KeptRows = InMemory(rows)
        self.marked = np.asarray(marked, dtype=np.float64).reshape(-1, rows.shape[1])
        self.alerts = alerts
        self.enter_ = enter  # the alarm level above every row marked normal (0: none marked)

    @property
    def baseline32(self) -> np.ndarray:
        """The baseline's feature rows as kept, float32."""
        return self.kept.get()

    def keep_in(self, kept: KeptRows) -> None:
        """Keep the baseline's rows in ``kept`` (which holds them already) rather than in memory."""
        self.kept = kept

    @property
    def in_memory(self) -> bool:
        return isinstance(self.kept, InMemory)

    @property
    def baseline(self) -> np.ndarray:
        """The baseline's feature rows, in double precision for the models."""
        return self.baseline32.astype(np.float64)

    @classmethod
    def start(cls, F: np.ndarray) -> Feedback:
        """From the baseline's (settled) model feature rows ``F``."""
        return cls(F, np.empty((0, F.shape[1])), AlertRows.empty(F.shape[1]))

    def remember_alerts(self, ts: np.ndarray, F: np.ndarray, flags: np.ndarray, config: MonitorConfig) -> None:
        """Keep the feature rows of the rows in an alert."""
        if flags.any():
            self.alerts.add(ts[flags], F[flags], ALERT_ROWS_KEPT * config.baseline_rows)

    def learn(self, start_ns: int, end_ns: int, config: MonitorConfig) -> tuple[int, FittedModels | None]:
        """Learn the alert rows stamped in ``[start_ns, end_ns]`` as normal: how many, and the refitted
        models (None when no kept alert row lies in that period)."""
        inside = self.alerts.inside(start_ns, end_ns)
        if not inside.any():
            return 0, None
        marked = np.vstack([self.marked, self.alerts.F[inside]])[-MARKED_NORMAL_KEPT * config.baseline_rows :]
        fitted = fit_models(self.baseline, config, normal=marked)  # first: a failing fit changes nothing
        self.alerts.take(start_ns, end_ns)
        self.marked = marked
        highest = float(np.max(fitted.calibrator.transform(fitted.detector.score(marked))))
        self.enter_ = float(np.nextafter(highest, 1.0))
        return int(inside.sum()), fitted

    def forget(self, start_ns: int, end_ns: int) -> int:
        """Drop the alert rows stamped in ``[start_ns, end_ns]`` (a true fault); how many."""
        ts, _ = self.alerts.take(start_ns, end_ns)
        return int(ts.size)
