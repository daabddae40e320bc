"""Turn a sequence of calibrated probabilities into an on/off alarm state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


class HysteresisAlarm:
    """Raise after ``min_duration`` consecutive rows with ``p >= enter``; clear after
    ``exit_duration`` consecutive rows with ``p < exit``; then hold off for ``suppress_rows`` rows.

    * The gap between ``enter`` and ``exit`` stops an alarm flickering when the probability hovers
      around a single threshold; ``min_duration`` stops one-row spikes from raising anything;
      ``exit_duration`` stops one quiet row from clearing an alarm in the middle of a fault.
    * ``suppress_rows``: after an alarm clears, the next ``suppress_rows`` rows cannot start a new
      one and do not count towards ``min_duration`` (the run starts after the hold-off), so a fault
      that flaps around the exit threshold gives one alert, not a train of them.
    * NaN probabilities never raise an alarm and never clear one (NaN compares false both ways),
      but they do break a run of consecutive rows (enter or exit) and they do use up a suppressed
      row (suppression counts rows, whatever they hold).

    Defaults (``exit_duration=1``, ``suppress_rows=0``) give exactly the original rule.

    State: ``active_`` (the current decision), ``run_length_`` (consecutive rows >= enter while
    inactive), ``exit_run_`` (consecutive rows < exit while active), ``suppress_left_`` (rows of
    hold-off still to go). ``get_state`` / ``set_state`` save and restore them for restarts.
    """

    def __init__(
        self,
        enter: float = 0.99,
        exit: float = 0.95,
        min_duration: int = 3,
        exit_duration: int = 1,
        suppress_rows: int = 0,
    ) -> None:
        self.enter = enter
        self.exit = exit
        self.min_duration = min_duration
        self.exit_duration = exit_duration
        self.suppress_rows = suppress_rows
        self.reset()

    def get_params(self) -> dict[str, Any]:
        return {
            "enter": self.enter,
            "exit": self.exit,
            "min_duration": self.min_duration,
            "exit_duration": self.exit_duration,
            "suppress_rows": self.suppress_rows,
        }

    def reset(self) -> None:
        """Back to inactive (hyperparameters are checked here, once, not on every row)."""
        if not 0.0 <= self.exit <= self.enter <= 1.0:
            raise ValueError(f"need 0 <= exit <= enter <= 1, got exit={self.exit}, enter={self.enter}")
        if self.min_duration < 1:
            raise ValueError(f"min_duration must be >= 1, got {self.min_duration}")
        if self.exit_duration < 1:
            raise ValueError(f"exit_duration must be >= 1, got {self.exit_duration}")
        if self.suppress_rows < 0:
            raise ValueError(f"suppress_rows must be >= 0, got {self.suppress_rows}")
        self.active_ = False
        self.run_length_ = 0
        self.exit_run_ = 0
        self.suppress_left_ = 0

    def update(self, probability: float) -> bool:
        """Feed one row's probability; return the alarm state after it. THE implementation."""
        if self.active_:
            if probability < self.exit:
                self.exit_run_ += 1
                if self.exit_run_ >= self.exit_duration:
                    self.active_ = False
                    self.exit_run_ = 0
                    self.run_length_ = 0
                    self.suppress_left_ = self.suppress_rows
            else:
                self.exit_run_ = 0
            return self.active_
        if self.suppress_left_:
            self.suppress_left_ -= 1
            return False
        if probability >= self.enter:
            self.run_length_ += 1
            if self.run_length_ >= self.min_duration:
                self.active_ = True
                self.run_length_ = 0
        else:
            self.run_length_ = 0
        return self.active_

    def run(self, probabilities: Iterable[float]) -> np.ndarray:
        """``update`` over a sequence, one row at a time (the single implementation of the rule).

        Converts an ndarray to a Python list first, so the loop handles plain floats.
        """
        update = self.update
        values = probabilities.tolist() if isinstance(probabilities, np.ndarray) else probabilities
        return np.array([update(p) for p in values], dtype=bool)

    def get_state(self) -> dict[str, Any]:
        """The decision state as plain numbers (restart with ``set_state`` on the same params)."""
        return {
            "active": bool(self.active_),
            "run_length": int(self.run_length_),
            "exit_run": int(self.exit_run_),
            "suppress_left": int(self.suppress_left_),
        }

    def set_state(self, state: Mapping[str, Any]) -> HysteresisAlarm:
        self.reset()
        self.active_ = bool(np.asarray(state["active"]))
        self.run_length_ = int(np.asarray(state["run_length"]))
        self.exit_run_ = int(np.asarray(state["exit_run"]))
        self.suppress_left_ = int(np.asarray(state["suppress_left"]))
        return self


def alarm_onsets(flags: np.ndarray) -> np.ndarray:
    """Row indices where the flag switches on (row 0 counts if it is already on): one per alert."""
    p = np.asarray(flags, dtype=bool)
    if p.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(p & ~np.concatenate(([False], p[:-1])))
