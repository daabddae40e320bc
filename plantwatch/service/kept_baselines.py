"""Each asset's baseline feature rows for operator feedback, kept in a file rather than in memory.

:mod:`detector.feedback` keeps the feature rows of an asset's baseline (600 rows of 16 features: 37 KB
of float32) to refit on them when an operator marks an alert a false alarm, and for the smallest
flagged shifts, worked out again when the model or the alarm level changes. They were the largest part
of a learned asset's memory, and are read a few times an hour at most. Here they go to a ring file
(:mod:`plantwatch.service.ring_file`: the model directory's disk, else the temporary folder) once the
asset has learned or been restored, and each read is one ``pread``. A write that fails (a full disk)
leaves them in memory.

Used by the detector thread (which learns, restores and evicts assets) and read by it; the lock only
guards against a read from elsewhere.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from detector.feedback import Feedback
from plantwatch.service.ring_file import RingFiles


class KeptBaselines:
    """The baseline rows of every asset whose feedback was moved here, a ring file per row shape."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self._rings = RingFiles(folder, "the baselines' feature rows", "they stay in memory")
        self._lock = threading.Lock()

    def move_out(self, asset: str, feedback: Feedback) -> bool:
        """Write ``feedback``'s baseline rows here and let it read them from here; False (left in
        memory) when they could not be written."""
        rows = feedback.baseline32
        shape = (int(rows.shape[0]), int(rows.shape[1]))
        if not shape[0]:
            return False
        records = np.empty(shape[0], np.dtype([("F", "<f4", (shape[1],))]))
        records["F"] = rows
        with self._lock:
            self._rings.forget(asset)  # a relearned baseline of the same shape: its own ring, not appended
            if not self._rings.append(asset, records, shape[0]):
                return False
        feedback.keep_in(_InFile(self, asset, shape))
        return True

    def read(self, asset: str, shape: tuple[int, int]) -> np.ndarray:
        with self._lock:
            records = self._rings.read(asset)
        if records is None or records["F"].shape != shape:
            raise LookupError(f"the baseline rows of {asset!r} are no longer kept")  # a bug: never expected
        return np.ascontiguousarray(records["F"])

    def forget(self, asset: str) -> None:
        """The asset left memory or relearned: its rows' slot serves another."""
        with self._lock:
            self._rings.forget(asset)


@dataclass(frozen=True)
class _InFile:
    kept: KeptBaselines
    asset: str
    shape: tuple[int, int]

    def get(self) -> np.ndarray:
        return self.kept.read(self.asset, self.shape)
