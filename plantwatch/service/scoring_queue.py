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

import itertools
import queue
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ingest.messages import Reading

# The most readings written and waiting for the detector in memory. Without a readings log this queue
# is only the hand-off between the writer and the detector, and when the detector is behind the
# writer waits here and the broker keeps what follows: about 0.4 s of the detector's work at full
# rate is enough to keep it busy. Those readings are small Python objects, and at 20,000 (the bound
# before) the memory they took in a drain stayed with the service: 1,000 assets just learned held
# 204-208 MB against 181-184 at 2,500, at the same rate (bench/throughput.py, docs/throughput.md).
# With a readings log (detector.model_dir) a batch that finds the queue full stays in the log, and the
# detector reads it back from there at the cost of decoding it (2.2-2.4 us a reading, one batch at a
# time or in a run: bench/recovery_cost.py), so the log's queue is as short: 1,000 assets held 198 MB
# in two runs against 219 at 20,000, and the drains ran at 6,154-6,261 frames/s against 6,470
# (bench/throughput.py --model-dir).
SCORING_BACKLOG_READINGS = 2_500
# The most readings the detector takes in one go. Its cost is mostly per asset and call: measured on
# one 8-sensor asset, 1,830 us a row one row at a time, 235 with 10 rows a call, 47 with 200. At full
# rate the writer's batches hold ~10 rows per asset (mqtt.max_in_flight deliveries over 100 assets),
# so the batches waiting are scored together; up to 5,000 readings (~0.4 s of work for 100 assets), as
# a joined batch's verdicts all come at its end.
JOIN_READINGS = 5_000


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings the writer stored, their batch number in the readings log (0: no log kept), and when
    the oldest of their deliveries arrived (``time.monotonic_ns()``; 0: not known, as for a test's)."""

    readings: tuple[Reading, ...]
    seq: int = 0
    received_ns: int = 0


class ScoringQueue(queue.Queue[Batch]):
    """A :class:`queue.Queue` of reading batches whose ``maxsize`` counts readings.

    A batch is accepted while fewer than ``maxsize`` readings wait, so one batch larger than the bound
    still passes an empty queue rather than blocking for ever. ``qsize()`` is the readings waiting
    (an empty batch counts as one).
    """

    def __init__(self, maxsize: int = SCORING_BACKLOG_READINGS, join_readings: int = JOIN_READINGS) -> None:
        """``join_readings``: the most readings the detector scores in one go, of the batches waiting
        (:meth:`join_waiting`) or read back from the readings log (:func:`join_logged`)."""
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 reading, got {maxsize}")
        super().__init__(maxsize)
        self.join_readings = join_readings

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

    def join_waiting(self, batch: Batch) -> Batch:
        """``batch`` joined with the batches queued right behind it that continue it (the next
        numbers in the readings log, or none logged), up to ``join_readings`` readings in all."""
        parts, count, last, received = [batch.readings], len(batch.readings), batch.seq, [batch.received_ns]
        with self.mutex:
            while self.queue:
                following = self.queue[0]
                continues = following.seq == last + 1 if last else following.seq == 0
                if not continues or count + len(following.readings) > self.join_readings:
                    break
                self._get()
                parts.append(following.readings)
                received.append(following.received_ns)
                count, last = count + len(following.readings), following.seq
            if len(parts) > 1:
                self.not_full.notify_all()
        if len(parts) == 1:
            return batch
        return Batch(tuple(itertools.chain.from_iterable(parts)), last, oldest_received(received))


def oldest_received(received: Iterable[int]) -> int:
    """The earliest of these arrival times (0, not known, where none is)."""
    return min((ns for ns in received if ns), default=0)


def join_logged(
    batches: Iterable[tuple[int, Sequence[Reading]]], limit: int = JOIN_READINGS
) -> Iterator[tuple[int, list[Reading]]]:
    """Batches read back from the readings log, consecutive ones joined up to ``limit`` readings (with
    the number of the last in each), as :meth:`ScoringQueue.join_waiting` joins those queued."""
    joined: list[Reading] = []
    last = 0
    for seq, readings in batches:
        if joined and len(joined) + len(readings) > limit:
            yield last, joined
            joined = []
        joined.extend(readings)
        last = seq
    if joined:
        yield last, joined


def _weight(batch: Batch) -> int:
    # An empty batch counts as one: Queue.get waits while _qsize() is 0, and would never return it.
    return max(len(batch.readings), 1)
