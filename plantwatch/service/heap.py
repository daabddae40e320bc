"""Memory the C allocator keeps after a burst of work, handed back to the system.

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
import time
from collections.abc import Callable

TRIM_EVERY_S = 1.0


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
