"""Rings of fixed-size records kept in a file rather than in the process's memory, one ring per key.

The API's recent history of each asset (an hour of scores, the chart's 720 rows of sensor values) is
written on every scored row and read only when someone looks at that asset. Held in numpy arrays it
was the largest part of an asset's memory once it had run for an hour (about 90 KB of 8 sensors), so
1,000 assets held 90 MB that nobody read most of the time. Here each ring is a fixed slot of an
unlinked file written with ``pwrite`` and read with ``pread``: the kernel's page cache holds the
pages while memory is plentiful, and, being file pages, can write them out and drop them when it is
short, where the process's own memory could only be swapped (if there is swap at all). The file is
made with ``tempfile.TemporaryFile`` (``O_TMPFILE``: never visible, gone with the process) in the
model directory when one is set, else in the system's temporary folder (``TMPDIR``); on a folder in
memory (tmpfs) the pages stay in memory. A slot is ``capacity`` records; rings grow in place, so an
asset that has scored a minute writes a minute (the rest of its slot is a hole in a sparse file).

:class:`RingFiles` keeps rings of several layouts (a record type and a capacity each) under one key
space: the chart rows of assets with different numbers of sensors, and each asset's baseline feature
rows for operator feedback, of whatever shape (:mod:`plantwatch.service.kept_baselines`).

Not thread-safe: the callers (:mod:`plantwatch.service.score_history`,
:mod:`plantwatch.service.row_history`, :mod:`plantwatch.service.kept_baselines`) hold their lock
around every call.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Hashable
from typing import IO

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0  # a failing write is logged at most this often
WRITE_BEHIND_S = 5.0  # RingsWrittenBehind: appends wait in memory this long, then all are written


class RingFile:
    """For each key, the newest ``capacity`` records of ``dtype`` appended under it, in one file.
    The warnings name what it keeps (``purpose``) and what a failing write costs (``on_failure``)."""

    def __init__(
        self,
        dtype: npt.DTypeLike,
        capacity: int,
        folder: str | os.PathLike[str] | None,
        purpose: str,
        on_failure: str,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.dtype = np.dtype(dtype)
        self.capacity = capacity
        self.slot_bytes = self.dtype.itemsize * capacity
        self.purpose, self.on_failure = purpose, on_failure
        self._file = _open(folder, purpose)
        self._fd = self._file.fileno()
        self._slots: dict[Hashable, list[int]] = {}  # key -> [offset, records ever appended]
        self._free: list[int] = []  # offsets of slots whose key was forgotten
        self._end = 0  # the file's slots end here
        self._warned_at = -WARN_EVERY_S

    def append(self, key: Hashable, records: np.ndarray) -> bool:
        """Append ``records`` (of ``dtype``, oldest first) to ``key``'s ring, which keeps the newest
        ``capacity``; False when the write failed (``key``'s ring is then forgotten)."""
        if not records.size:
            return True
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = [self._allocate(), 0]
        offset, count = slot
        kept = np.ascontiguousarray(records[-self.capacity :], dtype=self.dtype)
        start = (count + records.shape[0] - kept.shape[0]) % self.capacity  # the ring index of kept[0]
        first = min(kept.shape[0], self.capacity - start)
        try:
            _write(self._fd, kept[:first].tobytes(), offset + start * self.dtype.itemsize)
            if first < kept.shape[0]:  # wrapped round to the slot's start
                _write(self._fd, kept[first:].tobytes(), offset)
        except OSError as exc:  # a full disk: this key's history starts again, the service runs on
            self._warn(exc)
            self.forget(key)
            return False
        slot[1] = count + records.shape[0]
        return True

    def read(self, key: Hashable) -> np.ndarray:
        """``key``'s records, oldest first (empty for an unknown key)."""
        slot = self._slots.get(key)
        if slot is None:
            return np.empty(0, self.dtype)
        offset, count = slot
        held = min(count, self.capacity)
        records = np.frombuffer(_read(self._fd, held * self.dtype.itemsize, offset), self.dtype)
        if count <= self.capacity:
            return records
        start = count % self.capacity  # the oldest record's ring index
        return np.concatenate([records[start:], records[:start]])

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s ring; its slot serves the next new key."""
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._free.append(slot[0])

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots

    def _warn(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("cannot write %s file (%s): %s", self.purpose, exc, self.on_failure)

    def _allocate(self) -> int:
        if self._free:
            return self._free.pop()
        offset, self._end = self._end, self._end + self.slot_bytes
        return offset


class RingFiles:
    """Rings of several layouts under one set of keys: a :class:`RingFile` per (record type,
    capacity), made when first needed; a key appended in another layout leaves its old ring."""

    def __init__(self, folder: str | os.PathLike[str] | None, purpose: str, on_failure: str) -> None:
        self.folder = folder
        self.purpose, self.on_failure = purpose, on_failure
        self._files: dict[tuple[np.dtype, int], RingFile] = {}
        self._layout: dict[Hashable, tuple[np.dtype, int]] = {}  # each key's, to read and forget it there

    def append(self, key: Hashable, records: np.ndarray, capacity: int) -> bool:
        """:meth:`RingFile.append` in the ring file of ``records``' type and ``capacity``."""
        layout = (records.dtype, capacity)
        if self._layout.get(key) != layout:
            self.forget(key)
        file = self._files.get(layout)
        if file is None:
            file = self._files[layout] = RingFile(records.dtype, capacity, self.folder, self.purpose, self.on_failure)
        if not file.append(key, records):
            self._layout.pop(key, None)
            return False
        self._layout[key] = layout
        return True

    def read(self, key: Hashable) -> np.ndarray | None:
        """``key``'s records, oldest first; None for an unknown key."""
        layout = self._layout.get(key)
        return None if layout is None else self._files[layout].read(key)

    def forget(self, key: Hashable) -> None:
        layout = self._layout.pop(key, None)
        if layout is not None:
            self._files[layout].forget(key)


class RingsWrittenBehind:
    """:class:`RingFiles` whose appends wait in memory and are written all together once every
    ``every_s`` seconds, and before their key is read.

    The detector thread appends to two rings (chart rows, scores) per asset and batch. Each append was
    a ``pwrite``, and each system call lets another thread take the interpreter lock, which the
    detector then waits to get back: at 1,000 assets the row history's writes took 9 % of the
    detector thread's wall-clock time, though one costs 0.6 µs on an idle thread (docs/throughput.md).
    Written behind, an asset's ring gets one write every ``every_s`` however many batches it was in,
    and the writes of all assets come in one run, where the other threads rarely have anything
    waiting to take the lock. A read sees every row appended, as before. Rows still waiting when the
    process ends go with the rings themselves (unlinked files, never read again). A failed write
    forgets the key's ring, as :meth:`RingFiles.append` does."""

    def __init__(
        self, rings: RingFiles, every_s: float = WRITE_BEHIND_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rings = rings  # where the rows go
        self.every_s = every_s
        self._clock = clock
        self._waiting: dict[Hashable, _Waiting] = {}
        self._written_at = clock()

    def append(self, key: Hashable, records: np.ndarray, capacity: int) -> None:
        """``records`` to ``key``'s ring of ``capacity`` (see :meth:`RingFiles.append`), written by the next
        :meth:`flush`; that is this call when the last was ``every_s`` ago."""
        if records.size:
            waiting = self._waiting.get(key)
            if waiting is not None and (waiting.capacity != capacity or waiting.dtype != records.dtype):
                # Another layout starts a new ring (RingFiles.append): the old layout's rows would go with it.
                waiting = None
            if waiting is None:
                waiting = self._waiting[key] = _Waiting(capacity, records.dtype)
            waiting.add(records)
        if self._clock() - self._written_at >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Write every key's waiting rows."""
        waiting, self._waiting = self._waiting, {}
        self._written_at = self._clock()
        for key, of_key in waiting.items():
            self._write(key, of_key)

    def read(self, key: Hashable) -> np.ndarray | None:
        """``key``'s records, oldest first, those still waiting included; None for an unknown key."""
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            self._write(key, waiting)
        return self.rings.read(key)

    def forget(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        self.rings.forget(key)

    def _write(self, key: Hashable, waiting: _Waiting) -> None:
        self.rings.append(key, waiting.records(), waiting.capacity)


class _Waiting:
    """One key's records not written yet, as bytes (an array per batch would cost ~100 bytes each on top);
    the newest ``capacity`` are all its ring would keep."""

    __slots__ = ("capacity", "dtype", "data", "count")

    def __init__(self, capacity: int, dtype: np.dtype) -> None:
        self.capacity, self.dtype = capacity, dtype
        self.data = bytearray()
        self.count = 0

    def add(self, records: np.ndarray) -> None:
        self.data += records.tobytes()  # C order, in ``dtype``'s layout (append checked the dtype)
        self.count += records.shape[0]
        if self.count > 2 * self.capacity:  # an asset's burst of rows: hold no more than the ring keeps
            del self.data[: (self.count - self.capacity) * self.dtype.itemsize]
            self.count = self.capacity

    def records(self) -> np.ndarray:
        return np.frombuffer(self.data, self.dtype)[-self.capacity :]


def _open(folder: str | os.PathLike[str] | None, purpose: str) -> IO[bytes]:
    """An unlinked file in ``folder``; in memory (``memfd``) with a warning when none can be made there."""
    try:
        return tempfile.TemporaryFile(dir=folder, prefix="plantwatch-")
    except OSError as exc:
        log.warning(
            "cannot make %s file in %s (%s); keeping it in memory instead",
            purpose,
            folder or tempfile.gettempdir(),
            exc,
        )
        return os.fdopen(os.memfd_create("plantwatch-history"), "r+b")


def _write(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _read(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size > 0:
        part = os.pread(fd, size, offset)
        if not part:  # a hole at the file's end reads as nothing: it holds zeros
            parts.append(bytes(size))
            break
        parts.append(part)
        size, offset = size - len(part), offset + len(part)
    return b"".join(parts)
