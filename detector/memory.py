"""The adaptation memory: a uniform, time-ordered sample of every normal feature row seen so far.

Reservoir sampling: row number ``c`` (counted over all rows ever added) takes slot ``c`` while the
memory fills, then slot ``h(c) mod c`` if that is inside it, so each row seen so far is in the memory
with the same chance ``capacity / c``. ``h`` is a fixed integer hash (SplitMix64's finaliser), not a
random generator: which rows stay depends on their counts alone, so any batching of the same rows,
and a save/restore in between, leave the same memory. Each kept row carries its count, so the rows
can be handed out in time order (cross-fitting scores contiguous blocks of time).

The arrays grow with the rows held (doubling, up to ``capacity``): recalibration's memory is ten
baseline lengths, and a site of a thousand assets that have just learned their baselines should not
hold it empty. The counts are kept in 32 bits until a memory has seen 2**32 rows (13 years at
10 Hz), then in 64; recalibration keeps its scores in single precision (``dtype``). A full memory of
6,000 scores then holds 47 KB instead of 94.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_COUNTS_32 = 2**32 - 1  # the largest count a uint32 holds
_MASK64 = 2**64 - 1
FEW_ROWS = 16  # an add of at most this many rows goes one row at a time (cheaper below about this)


def grown(capacity: int, rows: int, *columns: np.ndarray) -> list[np.ndarray]:
    """``columns`` (arrays of one length) lengthened with zeros to hold ``rows`` rows: at least doubled,
    from 64, and never beyond ``capacity``. A memory grows this way with what it holds."""
    held = columns[0].shape[0]
    size = min(capacity, max(rows, 2 * held, 64))
    return [np.concatenate([c, np.zeros((size - held, *c.shape[1:]), c.dtype)]) for c in columns]


class NormalMemory:
    """Up to ``capacity`` rows of ``width`` features (of ``dtype``); ``seen`` counts every row ever added."""

    def __init__(self, capacity: int, width: int, dtype: npt.DTypeLike = np.float64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._rows = np.empty((0, width), dtype=dtype)
        self._counts = np.zeros(0, dtype=np.uint32)
        self.size = 0
        self.seen = 0

    def _hold(self, rows: int) -> None:
        """Room for ``rows`` rows (at most ``capacity``), doubling the arrays as needed, and counts wide
        enough for ``seen``."""
        if self.seen > _COUNTS_32 and self._counts.dtype != np.int64:
            self._counts = self._counts.astype(np.int64)
        if rows > self._counts.shape[0]:
            self._rows, self._counts = grown(self.capacity, rows, self._rows, self._counts)

    def add(self, F: np.ndarray) -> None:
        if F.shape[0] <= FEW_ROWS:
            self._add_few(F)
            return
        counts = self.seen + 1 + np.arange(F.shape[0], dtype=np.int64)
        self.seen += int(F.shape[0])
        hashed = (_mix64(counts) % counts.astype(np.uint64)).astype(np.int64)
        slots = np.where(counts <= self.capacity, counts - 1, hashed)
        keep = np.flatnonzero(slots < self.capacity)
        # A slot taken twice in one call keeps the later row, as adding one row at a time would.
        last_first = keep[::-1]
        slot_values, first = np.unique(slots[last_first], return_index=True)
        chosen = last_first[first]
        self._hold(min(self.capacity, self.seen))
        self._rows[slot_values] = F[chosen]
        self._counts[slot_values] = counts[chosen]
        self.size = min(self.capacity, self.seen)

    def _add_few(self, F: np.ndarray) -> None:
        """:meth:`add` one row at a time in plain Python: the same slots, rows and counts (a slot taken
        twice keeps the later row), without the vectorised path's dozen numpy calls, which cost ~45 µs
        however few the rows; recalibration adds a few rows per asset and call."""
        first, capacity = self.seen + 1, self.capacity
        self.seen += int(F.shape[0])
        self._hold(min(capacity, self.seen))
        for i in range(F.shape[0]):
            count = first + i
            slot = count - 1 if count <= capacity else _mix64_int(count) % count
            if slot < capacity:
                self._rows[slot] = F[i]
                self._counts[slot] = count
        self.size = min(capacity, self.seen)

    def counts(self) -> np.ndarray:
        """Each kept row's count (its position in the stream of added rows), in slot order."""
        return self._counts[: self.size].astype(np.int64)

    def in_time_order(self) -> np.ndarray:
        """The kept rows, oldest first."""
        order = np.argsort(self._counts[: self.size], kind="stable")
        return self._rows[: self.size][order]

    def get_state(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(rows, counts, seen)``, the kept rows in slot order."""
        return self._rows[: self.size].copy(), self.counts(), self.seen

    @classmethod
    def from_state(
        cls, capacity: int, rows: np.ndarray, counts: np.ndarray, seen: int, dtype: npt.DTypeLike = np.float64
    ) -> NormalMemory:
        rows = np.asarray(rows, dtype=dtype)
        if rows.shape[0] > capacity:
            raise ValueError(f"{rows.shape[0]} saved rows do not fit a memory of {capacity}")
        memory = cls(capacity, rows.shape[1], dtype)
        memory.size, memory.seen = rows.shape[0], int(seen)
        memory._hold(memory.size)
        memory._rows[: memory.size] = rows
        memory._counts[: memory.size] = np.asarray(counts, dtype=np.int64)
        return memory


def _mix64_int(count: int) -> int:
    """:func:`_mix64` of one count, on Python integers (masked to 64 bits as uint64 wraps)."""
    z = (count + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix64(counts: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a fixed, well-spread hash of each count (uint64, wrapping)."""
    z = counts.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
