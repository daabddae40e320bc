"""Adaptation (``adapt: true``): refitting the model on a memory of normal rows.

Every ``adapt_every`` scored rows the detector and calibrator are refitted, exactly as at the
baseline, on a memory of normal rows: the baseline's rows, then every scored row with the alarm off
and a probability below ``enter``. Rows judged anomalous are never learned. The memory
(:class:`detector.memory.NormalMemory`) holds ``ADAPT_MEMORY`` x ``baseline_rows`` rows, a uniform
sample of all such rows since the baseline (the same for any batching and after a restart), handed
to the refit in time order so that cross-fitting still scores each block of time with a model that
did not see it. Two choices matter (measured on the SKAB and NAB dev halves, see docs/detection.md,
Adaptation): a sliding window of only the latest rows forgets operating conditions that come back;
and learning only from rows below ``exit`` cuts the top of the normal distribution off at every
refit, so each model is narrower than the last and false alarms spiral (NAB, 13 files: 20 false
alarms without adaptation, ~290 with that rule).

Refits happen at fixed counts of scored rows, and the monitor scores in segments that end there, so
any split of the rows into micro-batches gives identical results.
"""

from __future__ import annotations

import numpy as np

from detector.baseline import FitModels, FittedModels
from detector.config import MonitorConfig
from detector.memory import NormalMemory

ADAPT_MEMORY = 4  # adaptation memory, in baseline lengths (chosen on the dev halves, see docs/detection.md)


class Adaptation:
    """The memory of normal feature rows, and how many rows were scored since the last refit."""

    def __init__(self, memory: NormalMemory, since_refit: int = 0) -> None:
        self.memory = memory
        self.since_refit = since_refit

    @classmethod
    def start(cls, config: MonitorConfig, F: np.ndarray) -> Adaptation:
        """A memory holding the baseline's feature rows ``F``."""
        memory = NormalMemory(ADAPT_MEMORY * config.baseline_rows, F.shape[1])
        memory.add(F)
        return cls(memory)

    def rows_to_refit(self, config: MonitorConfig) -> int:
        """How many more rows may be scored by the current model."""
        return config.adapt_every - self.since_refit

    def learn(self, F: np.ndarray, probability: np.ndarray, flags: np.ndarray, config: MonitorConfig) -> None:
        """Remember the normal rows among a segment's scored rows (alarm off, probability below enter)."""
        self.memory.add(F[~flags & (probability < config.enter)])
        self.since_refit += int(F.shape[0])

    def refit_due(self, config: MonitorConfig) -> bool:
        return self.since_refit >= config.adapt_every

    def refit(self, config: MonitorConfig, fit: FitModels) -> FittedModels:
        """Detector and calibrator fitted on the memory, oldest row first."""
        self.since_refit = 0
        return fit(self.memory.in_time_order(), config)
