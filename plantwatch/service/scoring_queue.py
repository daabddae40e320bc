"""The queue between the writer and the detector, bounded by readings rather than by batches.

A bound in batches let the detector fall far behind: at full rate the writer hands on batches of up
to ``ingest.batch_size`` (5,000) readings, and 64 of them queued 320,000 readings written and
acknowledged but not yet scored (measured: 300 MiB more memory, and verdicts a minute late). Those
readings are also the verdicts a crash loses, as the broker has already forgotten them. Bounded by
readings, the queue holds a few seconds of the detector's work. With a readings log (``model_dir``)
the writer then leaves further batches in the log, where the detector reads them back (see
``Writer._hand_on``), so acknowledgements never wait on scoring; without one, the writer waits, stops
acknowledging, and the broker keeps the rest, where it is durable.
"""

from __future__ import annotations

import queue
from collections import deque
from dataclasses import dataclass

from ingest.messages import Reading

SCORING_BACKLOG_READINGS = 20_000  # about 3 s of the detector's work at full rate on these machines


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings the writer stored, and their batch number in the readings log (0: no log kept)."""

    readings: tuple[Reading, ...]
    seq: int = 0


class ScoringQueue(queue.Queue[Batch]):
    """A :class:`queue.Queue` of reading batches whose ``maxsize`` counts readings.

    A batch is accepted while fewer than ``maxsize`` readings wait, so one batch larger than the bound
    still passes an empty queue rather than blocking for ever. ``qsize()`` is the readings waiting
    (an empty batch counts as one).
    """

    def __init__(self, maxsize: int = SCORING_BACKLOG_READINGS) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 reading, got {maxsize}")
        super().__init__(maxsize)

    # queue.Queue keeps its items through these four, under its own lock (as PriorityQueue does).
    def _init(self, maxsize: int) -> None:
        self.queue: deque[Batch] = deque()
        self._readings = 0

    def _qsize(self) -> int:
        return self._readings

    def _put(self, item: Batch) -> None:
        self.queue.append(item)
        self._readings += _weight(item)

    def _get(self) -> Batch:
        item = self.queue.popleft()
        self._readings -= _weight(item)
        return item


def _weight(batch: Batch) -> int:
    # An empty batch counts as one: Queue.get waits while _qsize() is 0, and would never return it.
    return max(len(batch.readings), 1)
