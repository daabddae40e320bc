"""Operating states: a stopped machine is neither judged nor learned, nor one that has just started.

With ``running_when`` (:mod:`detector.running_rule`) every usable row is, in time order:

* **stopped** (the condition is false): no score, no alarm, not learned. The alarm rule starts again
  after the stop: a stopped machine is not an ongoing anomaly, and an alarm carried over the stop
  would otherwise need ``exit_duration`` quiet rows after the start to clear.
* **settling**: running, but within ``settle_s`` of the start (the first running row after a stopped
  one). Start-up transients (inrush current, pressure overshoot) are not normal running: they are
  neither fed into the rolling features, nor learned, nor scored.
* then, as after a gap in the data (:mod:`detector.gate`), the rows refill the feature window: fed
  into the features but not scored until the window holds only rows after the settle time (start +
  ``settle_s`` + window). Its first windows hold a handful of samples, or the stop itself. These
  rows count as settling too.
* **running**: fed, learned (baseline, adaptation) and scored.

Without ``running_when`` every row is running (a restored state that ended stopped makes the next
row a start).

Carried state (saved with the model): whether the last usable row was stopped, and the stamp of the
latest start. A row's state depends only on those and the rows before it, so any split of the rows
into micro-batches gives the same states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.events import RunningRuleUnusable
from detector.features import window_to_ns
from detector.gate import NEVER
from detector.running_rule import Predicate, RunningRule

_UNBOUND = object()  # equal to no sensor list: the first bind always compiles


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare fields, not these
class States:
    """Per usable row of one batch, aligned with the gate's ``rows``."""

    stopped: np.ndarray  # bool: the condition is false
    settling: np.ndarray  # bool: running, within settle_s of its start (not fed into anything)
    started_at: np.ndarray  # int64: the stamp of the latest start at or before the row (NEVER: none)

    @property
    def fed(self) -> np.ndarray:
        """Rows fed into the features and the baseline."""
        return ~(self.stopped | self.settling)


class OperatingStates:
    """Stopped and settling rows of one asset, carried across calls (``stopped_``, ``started_at_``)."""

    def __init__(self, rule: RunningRule | None, settle_s: float, stopped: bool = False, started_at: int = NEVER):
        self.rule = rule
        self.settle_ns = int(round(float(settle_s) * 1e9))
        self.stopped_ = stopped  # the last usable row was stopped: the next running row is a start
        self.started_at_ = started_at  # the latest start's stamp
        self._names: object = _UNBOUND
        self._predicate: Predicate | None = None

    def bind(self, asset: str, names: Sequence[str] | None) -> RunningRuleUnusable | None:
        """Compile the rule for rows of these sensors (again only when they change); what is wrong
        when it names sensors that are not among them (then every row counts as running)."""
        known = tuple(names) if names is not None else None
        if self.rule is None or known == self._names:
            return None
        self._names = known
        missing = self.rule.missing(known or ())
        self._predicate = None if missing else self.rule.compile(known or ())
        return RunningRuleUnusable(asset, self.rule.text, missing, known or ()) if missing else None

    def classify(self, ts: np.ndarray, X: np.ndarray, rows: np.ndarray) -> States:
        """The states of the usable ``rows`` (indices into ``ts``/``X``, in time order)."""
        stamps = ts[rows]
        if self._predicate is None and not self.stopped_:
            return self._running_on(stamps)
        running = self._predicate(X[rows]) if self._predicate is not None else np.ones(rows.size, dtype=bool)
        after_stop = np.concatenate(([self.stopped_], ~running[:-1]))
        starts = np.where(running & after_stop, stamps, NEVER)
        started_at = np.maximum.accumulate(np.concatenate(([self.started_at_], starts)))[1:]
        settling = running & (stamps < started_at + self.settle_ns)
        if rows.size:
            self.stopped_, self.started_at_ = bool(not running[-1]), int(started_at[-1])
        return States(~running, settling, started_at)

    def _running_on(self, stamps: np.ndarray) -> States:
        """``classify`` without a rule, the last row running (every asset without ``running_when``): no
        row starts, so each keeps the latest start and settles as long after it; the same states with
        three numpy calls instead of a dozen (this runs on every asset and batch)."""
        started_at = np.full(stamps.size, self.started_at_, dtype=np.int64)
        settling = stamps < started_at + self.settle_ns
        return States(np.zeros(stamps.size, dtype=bool), settling, started_at)

    def refilling(self, stamps: np.ndarray, started_at: np.ndarray, window_s: float | None) -> np.ndarray:
        """Fed rows whose feature window still reaches back before the end of their start's settle
        time (all False without a window: features off, or no model yet)."""
        if window_s is None:
            return np.zeros(stamps.size, dtype=bool)
        return np.asarray(stamps < started_at + (self.settle_ns + window_to_ns(window_s)))


def alarm_resets(stopped: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, bool]:
    """Where a stop resets the alarm: before which of the scored ``rows`` (indices into the batch) a
    stopped row lies since the scored row before it, and whether one lies after the last of them."""
    if not stopped.any():  # no stop at all: what follows gives no reset
        return np.zeros(rows.size, dtype=bool), False
    seen = np.cumsum(stopped)  # stopped rows up to and including each row
    at = seen[rows]
    before = np.diff(np.concatenate(([0], at))) > 0
    after = bool(stopped.size) and int(seen[-1]) > (int(at[-1]) if rows.size else 0)
    return before, after
