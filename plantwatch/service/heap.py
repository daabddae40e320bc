"""Memory the C allocator keeps after a burst of work, handed back to the system; and what the assets
keep for hours, out of the garbage collector's full passes.

Learning a baseline (and working out its smallest flagged shifts) makes arrays of a few hundred KB
that live for one call, among the model's arrays that live for hours. glibc keeps the freed space
in its heaps for the next allocation, and the pages stay resident: learning 300 assets at once left
14 MB free in the heaps (``mallinfo2``). Trimmed after each burst, as here, 300 assets learned held
88-89 KiB each against 93.9 (``python bench/memory.py --assets 300 --steady-rows 660``). A trim
takes well under a millisecond, so the detector thread asks for one after each burst, at most once
a second. Elsewhere than glibc (musl has no ``malloc_trim``) this does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable

TRIM_EVERY_S = 1.0
FREEZE_EVERY_S = 30.0
FREEZE_GROWTH = 0.1  # LearnedFreeze: when the assets learned or restored grew by this share since a freeze


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    return trim


class HeapTrim:
    """``due()`` after a burst; ``now_and_then()`` trims when one is due and a second has passed."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self.every_s = every_s
        self._trim = _malloc_trim()
        self._due = False
        self._trimmed_at = -float("inf")

    def due(self) -> None:
        self._due = True

    def now_and_then(self) -> bool:
        """Whether it trimmed."""
        if not self._due or self._trim is None or time.monotonic() - self._trimmed_at < self.every_s:
            return False
        self._trim(0)
        self._due, self._trimmed_at = False, time.monotonic()
        return True


class LearnedFreeze:
    """``gc.collect()`` then ``gc.freeze()`` once the assets learned or restored since start (``learned()``
    for each) have grown by a tenth since the last freeze, at most once every ``every_s``;
    ``now_and_then()`` after each batch.

    A full collection walks every tracked object. The start-up heap is frozen already
    (``freeze_startup_heap``), but the assets learned after it were walked by every full pass: at 1,000
    assets a pass took 50-100 ms of the detector thread, about one every 4 s in a drain
    (docs/throughput.md), half the latency goal in one pause. Frozen, they are left out; the first
    freeze after a burst costs one full pass, the next ones only what came since. What is frozen is
    freed as usual when its last reference goes; only garbage in reference cycles would stay. The
    stage's objects form none when scored, refitted or dropped (checked with the collector off, the
    test of this class), but other threads' objects in flight at a freeze might. Freezing as the count
    grows by a tenth bounds the freezes to a logarithm of it (70 on the way to 1,000 assets, another
    25 for every tenfold of idle assets leaving memory and coming back)."""

    def __init__(self, every_s: float = FREEZE_EVERY_S, growth: float = FREEZE_GROWTH) -> None:
        self.every_s, self.growth = every_s, growth
        self._learned = 0  # assets learned or restored since start
        self._learned_then = 0  # ... at the last freeze
        self._frozen_at = -float("inf")

    def learned(self) -> None:
        self._learned += 1

    def now_and_then(self) -> bool:
        """Whether it froze."""
        if self._learned <= self._learned_then * (1 + self.growth):
            return False
        if time.monotonic() - self._frozen_at < self.every_s:
            return False
        gc.collect()
        gc.freeze()
        self._frozen_at, self._learned_then = time.monotonic(), self._learned
        return True
