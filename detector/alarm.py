"""Turn a sequence of calibrated probabilities into an on/off alarm state."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class HysteresisAlarm:
    """Raise after ``min_duration`` consecutive rows with ``p >= enter``; clear when ``p < exit``.

    The gap between ``enter`` and ``exit`` stops an alarm flickering when the probability hovers
    around a single threshold; ``min_duration`` stops one-row spikes from raising anything.
    NaN probabilities never raise an alarm and never clear one (NaN compares false both ways).

    State: ``active_`` (the current decision) and ``run_length_`` (consecutive rows >= enter while
    inactive).
    """

    def __init__(self, enter: float = 0.99, exit: float = 0.95, min_duration: int = 3) -> None:
        self.enter = enter
        self.exit = exit
        self.min_duration = min_duration
        self.reset()

    def reset(self) -> None:
        """Back to inactive (hyperparameters are checked here, once, not on every row)."""
        if not 0.0 <= self.exit <= self.enter <= 1.0:
            raise ValueError(f"need 0 <= exit <= enter <= 1, got exit={self.exit}, enter={self.enter}")
        if self.min_duration < 1:
            raise ValueError(f"min_duration must be >= 1, got {self.min_duration}")
        self.active_ = False
        self.run_length_ = 0

    def update(self, probability: float) -> bool:
        """Feed one row's probability; return the alarm state after it."""
        if self.active_:
            if probability < self.exit:
                self.active_ = False
                self.run_length_ = 0
            return self.active_
        if probability >= self.enter:
            self.run_length_ += 1
            if self.run_length_ >= self.min_duration:
                self.active_ = True
        else:
            self.run_length_ = 0
        return self.active_

    def run(self, probabilities: Iterable[float]) -> np.ndarray:
        """``update`` over a sequence, one row at a time (the single implementation of the rule)."""
        update = self.update
        values = probabilities.tolist() if isinstance(probabilities, np.ndarray) else probabilities
        return np.fromiter((update(p) for p in values), dtype=bool)
