"""Each asset's recent scored rows (time, score, probability, anomaly), for charts (``GET
/assets/{asset}/scores``): a ring of numpy arrays per asset, 17 bytes a row, so an hour of 1 Hz
rows for 100 assets costs about 6 MB whatever runs for how long. The arrays grow (doubling) until the
ring is full, so an asset that has scored a minute holds a minute. Written by the detector thread,
read by the API's threads, under one lock."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from detector.memory import grown
from detector.types import Verdict

DEFAULT_ROWS = 3600  # an hour of 1 Hz rows per asset
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ScorePoint:
    ts_ns: int
    score: float
    probability: float
    anomaly: bool


class _Ring:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ts = np.zeros(0, np.int64)
        self.score = np.zeros(0, np.float32)
        self.probability = np.zeros(0, np.float32)
        self.anomaly = np.zeros(0, np.bool_)
        self.count = 0  # rows ever written; the newest is at (count - 1) % capacity

    def add(self, v: Verdict) -> None:
        i = self.count % self.capacity
        if i == self.ts.shape[0]:
            self.ts, self.score, self.probability, self.anomaly = grown(
                self.capacity, i + 1, self.ts, self.score, self.probability, self.anomaly
            )
        self.ts[i], self.score[i], self.probability[i], self.anomaly[i] = v.ts_ns, v.score, v.probability, v.anomaly
        self.count += 1


def kept_rows(ts: np.ndarray, count: int, since_ns: int | None, limit: int) -> np.ndarray:
    """Indices into a ring of stamps ``ts`` after ``count`` rows were written into it: the rows kept,
    stamped at or after ``since_ns``, oldest first, at most the newest ``limit``. (A ring wraps only
    once its arrays have grown to its capacity.)"""
    capacity = ts.shape[0]
    order = np.arange(count) if count <= capacity else (np.arange(capacity) + count) % capacity
    if since_ns is not None:
        order = order[ts[order] >= since_ns]
    return order[-limit:]


class AssetRings(Generic[R]):
    """A ring of the last ``rows`` rows per asset, and the lock the detector and API threads share."""

    def __init__(self, rows: int) -> None:
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.rows = rows
        self._rings: dict[str, R] = {}
        self._lock = threading.Lock()

    def forget(self, asset: str) -> None:
        """The asset relearns: the old model's rows say nothing of the new one's."""
        with self._lock:
            self._rings.pop(asset, None)


class ScoreHistory(AssetRings[_Ring]):
    """The last ``rows`` scored rows of each asset."""

    def __init__(self, rows: int = DEFAULT_ROWS) -> None:
        super().__init__(rows)

    def add(self, verdicts: Sequence[Verdict]) -> None:
        """Scored rows only: a baseline's or a stopped asset's rows carry no score worth charting."""
        with self._lock:
            for v in verdicts:
                if v.warming_up or not v.running:
                    continue
                ring = self._rings.get(v.asset)
                if ring is None:
                    ring = self._rings[v.asset] = _Ring(self.rows)
                ring.add(v)

    def since(self, asset: str, since_ns: int | None, limit: int) -> list[ScorePoint]:
        """The asset's kept rows stamped at or after ``since_ns``, oldest first, at most the newest ``limit``."""
        with self._lock:
            ring = self._rings.get(asset)
            if ring is None:
                return []
            keep = kept_rows(ring.ts, ring.count, since_ns, limit)
            rows = zip(
                ring.ts[keep].tolist(),
                ring.score[keep].tolist(),
                ring.probability[keep].tolist(),
                ring.anomaly[keep].tolist(),
                strict=True,
            )
            return [ScorePoint(*row) for row in rows]
