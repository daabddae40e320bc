"""Each asset's recent aligned rows (time and every sensor's value), for the dashboard's sensor chart
(``GET /assets/{asset}/readings``): a ring of float32 per asset, so 720 rows of 8 sensors cost 23 KB
an asset whatever runs for how long (less until the ring is full: its arrays grow, doubling).
Written by the detector thread from the rows the monitor aligned (the rows it scored), read by the
API's threads, under one lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.align import Row
from detector.memory import grown
from plantwatch.service.score_history import AssetRings, kept_rows

DEFAULT_ROWS = 720  # the dashboard draws the newest 720 scored rows


@dataclass(frozen=True)
class RowsSince:
    sensors: tuple[str, ...]
    ts_ns: list[int]
    values: list[list[float | None]]  # per row, in ``sensors`` order; None where a value was missing


class _Ring:
    def __init__(self, sensors: tuple[str, ...], capacity: int) -> None:
        self.sensors = sensors
        self.capacity = capacity
        self.ts = np.zeros(0, np.int64)
        self.values = np.zeros((0, len(sensors)), np.float32)
        self.count = 0  # rows ever written; the newest is at (count - 1) % capacity

    def add(self, rows: Sequence[Row]) -> None:
        for ts, row in rows[-self.capacity :]:
            i = self.count % self.capacity
            if i == self.ts.shape[0]:
                self.ts, self.values = grown(self.capacity, i + 1, self.ts, self.values)
            self.ts[i], self.values[i] = ts, row
            self.count += 1


class RowHistory(AssetRings[_Ring]):
    """The last ``rows`` aligned rows of each asset."""

    def __init__(self, rows: int = DEFAULT_ROWS) -> None:
        super().__init__(rows)

    def add(self, asset: str, sensors: Sequence[str], rows: Sequence[Row]) -> None:
        """Rows in ``sensors`` order; a new sensor set (the asset relearned others) starts the ring again."""
        if not rows:
            return
        names = tuple(sensors)
        with self._lock:
            ring = self._rings.get(asset)
            if ring is None or ring.sensors != names:
                ring = self._rings[asset] = _Ring(names, self.rows)
            ring.add(rows)

    def since(self, asset: str, since_ns: int | None, limit: int) -> RowsSince:
        """The asset's kept rows stamped at or after ``since_ns``, oldest first, at most the newest ``limit``."""
        with self._lock:
            ring = self._rings.get(asset)
            if ring is None:
                return RowsSince((), [], [])
            keep = kept_rows(ring.ts, ring.count, since_ns, limit)
            values = ring.values[keep].astype(np.float64)
            cells = [[v if np.isfinite(v) else None for v in row] for row in values.tolist()]
            return RowsSince(ring.sensors, ring.ts[keep].tolist(), cells)
