"""Which aligned rows the monitor may use.

Rows with any non-finite value (or one beyond ±``MAX_ABS_VALUE``, whose square overflows), and rows
stamped before an earlier row, are skipped: no verdict, no effect on features, baseline or alarm.
After a gap in usable rows of a feature window or more, rows are skipped (alarm state held) until the
window has refilled.
"""

from __future__ import annotations

import numpy as np

from detector.features import window_to_ns
from detector.types import MAX_ABS_VALUE

NEVER = int(np.iinfo(np.int64).min)
# One-row calls take the plain-Python path while stamps and window are this far from int64's ends, where
# the array code's sums cannot wrap around and plain integers give the same answers.
SCALAR_STAMPS = 2**62


def usable_values(X: np.ndarray) -> np.ndarray:
    """Per value: finite and within ±``MAX_ABS_VALUE`` (NaN compares False)."""
    return np.asarray(np.abs(X) <= MAX_ABS_VALUE)


def usable_rows(X: np.ndarray) -> np.ndarray:
    """Per row: every value usable (``usable_values``)."""
    return np.asarray(usable_values(X).all(axis=1))


class RowGate:
    """Time order and gap refill, carried across calls (and saved: ``last_ts_``, ``refill_until_``)."""

    def __init__(self, last_ts: int = NEVER, refill_until: int = NEVER) -> None:
        self.last_ts_ = last_ts  # the newest usable row's stamp: older rows are late
        self.refill_until_ = refill_until  # rows stamped before this refill the window after a gap

    def in_order(self, ts: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """``(rows, previous, late)``: the indices of the usable rows in time order; for every row,
        the stamp of the last usable row before it (``NEVER`` for none); how many usable rows were late.

        A row stamped before an earlier row is late (a log that steps back in time): skipped and
        counted, as the live aligner drops late readings, so features only ever move forward. Rows
        skipped anyway (a NaN reading) do not move the cutoff: one of them with a corrupt far-future
        stamp would otherwise make every later row "late".
        """
        if ts.size == 1 and abs(int(ts[0])) < SCALAR_STAMPS:
            return self._one_in_order(int(ts[0]), X[0])
        usable = usable_rows(X)
        stamps = np.where(usable, ts, NEVER)
        running_max = np.maximum.accumulate(np.concatenate(([self.last_ts_], stamps)))
        in_order = ts >= running_max[:-1]
        self.last_ts_ = int(running_max[-1])
        late = int((~in_order & usable).sum())
        return np.flatnonzero(usable & in_order), running_max[:-1], late

    def refilling(self, stamps: np.ndarray, previous: np.ndarray, window_s: float | None) -> np.ndarray:
        """Rows whose feature window is still refilling after a gap of a window or more (all False
        without a window: features off, or no model yet).

        After an outage the window holds a handful of samples: a spread of one sample is 0 and a level
        of two is noisy, so the first rows would score as near-certain anomalies. They are skipped until
        the window spans post-gap data only, as at the baseline.
        """
        if window_s is None:
            return np.zeros(stamps.size, dtype=bool)
        window = window_to_ns(window_s)
        if stamps.size == 1 and _scalar(int(stamps[0]), int(previous[0]), window):
            return self._one_refilling(int(stamps[0]), int(previous[0]), window)
        # A gap of a whole window leaves the first row alone in its window (t - w, t].
        after_gap = (previous != NEVER) & (stamps - np.where(previous == NEVER, stamps, previous) >= window)
        refill_ends = np.maximum.accumulate(
            np.concatenate(([self.refill_until_], np.where(after_gap, stamps + window, NEVER)))
        )
        self.refill_until_ = int(refill_ends[-1])
        return stamps < refill_ends[1:]

    # One row, the usual call once rows come a few a second over many assets: the same results as the
    # array code above, in plain Python (its dozen numpy calls cost ~25 µs per asset and call).

    def _one_in_order(self, ts: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        last = self.last_ts_
        usable = all(abs(v) <= MAX_ABS_VALUE for v in values.tolist())  # False for NaN, as usable_rows
        in_order = ts >= last
        if usable:
            self.last_ts_ = max(last, ts)
        rows = np.arange(1 if usable and in_order else 0)
        return rows, np.array([last], dtype=np.int64), int(usable and not in_order)

    def _one_refilling(self, stamp: int, previous: int, window: int) -> np.ndarray:
        if previous != NEVER and stamp - previous >= window:
            self.refill_until_ = max(self.refill_until_, stamp + window)
        return np.array([stamp < self.refill_until_])

    def after_baseline(self, ts: np.ndarray, window_s: float | None) -> None:
        """An outage in the baseline's last window leaves the first scored rows refilling it too."""
        self.refilling(ts, np.concatenate((ts[:1], ts[:-1])), window_s)


def _scalar(stamp: int, previous: int, window: int) -> bool:
    """Whether a one-row refill check may take the plain-Python path (``SCALAR_STAMPS``)."""
    return (
        abs(stamp) < SCALAR_STAMPS
        and (previous == NEVER or abs(previous) < SCALAR_STAMPS)
        and 0 <= window < SCALAR_STAMPS
    )
