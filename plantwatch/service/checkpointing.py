"""When the detector thread checkpoints, what goes in, and which logged batches a start scores again.

The files are :mod:`plantwatch.service.checkpoints`' and the batches :mod:`plantwatch.service.reading_log`'s;
this is the bookkeeping between them, used by the detector thread, which hands each checkpoint's
files to a thread of its own (:meth:`Checkpointing._write_files`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from detector.monitor import AssetMonitor
from ingest.messages import Reading
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.persistence import ModelPersistence, Snapshot
from plantwatch.service.reading_log import ReadingLog

log = logging.getLogger(__name__)

# Wall time between checkpoints: the most readings a crash leaves to score again from the readings log.
CHECKPOINT_INTERVAL_S = 30.0
# Baselines learned one after another are checkpointed together, at most once per this long.
MIN_CHECKPOINT_GAP_S = 1.0
# Wall time without readings after which an asset leaves memory (restored from its checkpoint on return).
EVICT_IDLE_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class StatePolicy:
    """With a ``model_dir``: how often the detector checkpoints, and when an idle asset leaves memory
    (``detector.checkpoint_interval_s``, ``detector.evict_idle_after_s``; None: never)."""

    checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S
    evict_idle_after_s: float | None = EVICT_IDLE_AFTER_S


DEFAULT_STATE_POLICY = StatePolicy()


class Checkpointing:
    """The assets changed since the last checkpoint, when the next is due, and the last batch scored.

    The detector thread takes each checkpoint's copies of the states (about 0.13 ms an asset); a
    thread of its own writes the files (2.7 ms an asset: ``np.savez``, fsync), one checkpoint at a
    time, so detection does not stop for them (1.1 s with 500 changed assets, when it wrote them itself).
    """

    def __init__(
        self, models: ModelPersistence | None, reading_log: ReadingLog | None, interval_s: float = CHECKPOINT_INTERVAL_S
    ) -> None:
        self.models = models
        self.reading_log = reading_log
        self.interval_s = interval_s
        self.changed: set[str] = set()
        self._written_at = time.monotonic() - MIN_CHECKPOINT_GAP_S  # the first baseline's: at once
        # When the next checkpoint is due before its interval (None: not before).
        self._due_at: float | None = None
        # The last readings batch scored; the checkpoint's until the log's batches after it are scored again.
        self.scored_seq = models.scored_seq if models is not None else 0
        if reading_log is not None:
            reading_log.continue_after(self.scored_seq)
        self._logged_at_start = reading_log.last_seq if reading_log is not None else 0
        # The checkpoint being written, and the assets whose state it holds.
        self._writing: Future[bool] | None = None
        self._in_flight: frozenset[str] = frozenset()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="plantwatch-checkpoint") if models is not None else None

    @property
    def dirty(self) -> set[str]:
        """The assets whose latest state no written checkpoint holds yet."""
        return self.changed | self._in_flight

    def scored(self, seq: int) -> None:
        self.scored_seq = max(self.scored_seq, seq)

    def operator_changed(self, asset: str) -> None:
        """An operator's relearn or feedback: checkpoint at the end of this loop."""
        self.changed.add(asset)
        self._due_at = time.monotonic()

    def model_changed(self, asset: str) -> None:
        """A baseline learned or a model refitted: checkpoint soon, together with the others that follow."""
        self.changed.add(asset)
        soon = self._written_at + MIN_CHECKPOINT_GAP_S
        self._due_at = min(self._due_at or soon, soon)

    def now_and_then(self, monitors: Mapping[str, AssetMonitor], tracker: MaintenanceTracker | None) -> bool:
        """Start a checkpoint when one is due and none is being written; True when one was written
        since the last call (then the assets not :attr:`dirty` are all on disk)."""
        finished = self._finished()
        now = time.monotonic()
        due = now - self._written_at >= self.interval_s or (self._due_at is not None and now >= self._due_at)
        if due and self._writing is None:
            self._start(monitors, tracker)
        return finished

    def write(self, monitors: Mapping[str, AssetMonitor], tracker: MaintenanceTracker | None) -> bool:
        """A checkpoint now, waited for (at shutdown): every changed asset's model and the trends, with
        the last batch scored. False when none was written."""
        self.wait()
        self._finished()
        self._start(monitors, tracker)
        self.wait()
        return self._finished()

    def wait(self) -> None:
        """Until the checkpoint being written, if any, is on disk (or failed)."""
        if self._writing is not None:
            wait([self._writing])

    def close(self) -> None:
        self.wait()
        self._finished()
        if self._writer is not None:
            self._writer.shutdown()

    def _start(self, monitors: Mapping[str, AssetMonitor], tracker: MaintenanceTracker | None) -> None:
        self._written_at, self._due_at = time.monotonic(), None
        if self.models is None or self._writer is None:
            return
        snapshot = self.models.snapshot(monitors, self.changed, tracker)  # here: the monitors are this thread's
        self._in_flight, self.changed = frozenset(self.changed), set()
        self._writing = self._writer.submit(self._write_files, snapshot, self.scored_seq)

    def _write_files(self, snapshot: Snapshot, seq: int) -> bool:
        """On the checkpoint thread: the log synced, the generation written, then the log before it gone."""
        assert self.models is not None
        if self.reading_log is not None:
            self.reading_log.sync()
        if not self.models.write(snapshot, seq):
            return False
        if self.reading_log is not None:
            self.reading_log.discard_through(seq)
        return True

    def _finished(self) -> bool:
        """Collect the checkpoint written, if it is; True when it succeeded. A failed one's assets are
        changed again, for the next."""
        if self._writing is None or not self._writing.done():
            return False
        try:
            ok = self._writing.result()
        except Exception:  # models.write logs its own failures; anything else must not stop detection
            log.exception("writing a checkpoint failed")
            ok = False
        if not ok:
            self.changed |= self._in_flight
        self._writing, self._in_flight = None, frozenset()
        return ok

    def unscored(self) -> Iterator[tuple[int, tuple[Reading, ...]]]:
        """The batches logged before this start and after the checkpoint, in order."""
        if self.reading_log is not None:
            yield from self.reading_log.after(self.scored_seq, self._logged_at_start)

    def left_in_log(self, before: int) -> Iterator[tuple[int, tuple[Reading, ...]]]:
        """Logged batches the writer did not hand on (the detector was behind), up to ``before`` (the
        next one handed on; 0: up to the last one logged), in order."""
        if self.reading_log is None:
            return
        through = before - 1 if before else self.reading_log.last_seq
        if through > self.scored_seq:
            yield from self.reading_log.after(self.scored_seq, through)

    def unscored_batches(self) -> int:
        """Batches logged and not scored yet (``plantwatch_unscored_batches``)."""
        return max(self.reading_log.last_seq - self.scored_seq, 0) if self.reading_log is not None else 0

    @property
    def unscored_range(self) -> tuple[int, int]:
        """(first, last) batch numbers :meth:`unscored` yields; first > last when none."""
        return self.scored_seq + 1, self._logged_at_start if self.reading_log is not None else 0
