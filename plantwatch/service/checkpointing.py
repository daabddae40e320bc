"""When the detector thread checkpoints, what goes in, and which logged batches a start scores again.

The files are :mod:`plantwatch.service.checkpoints`' and the batches :mod:`plantwatch.service.reading_log`'s;
this is the bookkeeping between them, used by the detector thread only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from detector.monitor import AssetMonitor
from ingest.messages import Reading
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.reading_log import ReadingLog

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
    """The assets changed since the last checkpoint, when the next is due, and the last batch scored."""

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
        self._logged_at_start = reading_log.last_seq if reading_log is not None else 0

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
        """A checkpoint when one is due; True when one was written."""
        now = time.monotonic()
        if now - self._written_at >= self.interval_s or (self._due_at is not None and now >= self._due_at):
            return self.write(monitors, tracker)
        return False

    def write(self, monitors: Mapping[str, AssetMonitor], tracker: MaintenanceTracker | None) -> bool:
        """Every changed asset's model and the trends, with the last batch scored, as one generation;
        then the readings log before that batch goes. False when none was written."""
        self._written_at, self._due_at = time.monotonic(), None
        if self.models is None:
            return False
        if self.reading_log is not None:
            self.reading_log.sync()
        if not self.models.checkpoint(monitors, self.changed, tracker, self.scored_seq):
            return False
        self.changed.clear()
        if self.reading_log is not None:
            self.reading_log.discard_through(self.scored_seq)
        return True

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
