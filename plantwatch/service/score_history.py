"""Each asset's recent scored rows (time, score, probability, anomaly), for charts (``GET
/assets/{asset}/scores``): a ring per asset of 17-byte records in a file (:mod:`plantwatch.service.ring_file`),
so an hour of 1 Hz rows costs the process no memory however many assets run. Written by the detector
thread, read by the API's threads, under one lock."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.types import Verdict
from plantwatch.service.ring_file import RingFiles, RingsWrittenBehind

DEFAULT_ROWS = 3600  # an hour of 1 Hz rows per asset
SCORE_FIELDS = ("ts", "score", "probability", "anomaly")
SCORE_RECORD = np.dtype(list(zip(SCORE_FIELDS, ("<i8", "<f4", "<f4", "?"), strict=True)))


@dataclass(frozen=True, slots=True)
class ScorePoint:
    ts_ns: int
    score: float
    probability: float
    anomaly: bool


def kept_rows(ts: np.ndarray, since_ns: int | None, limit: int) -> np.ndarray:
    """Indices into a ring's stamps ``ts`` (oldest first): the rows stamped at or after ``since_ns``,
    at most the newest ``limit``."""
    order = np.arange(ts.shape[0])
    if since_ns is not None:
        order = order[ts >= since_ns]
    return order[-limit:]


class AssetRings:
    """The last ``rows`` rows of each asset, kept in ring files in ``folder`` (written behind, every few
    seconds: :class:`RingsWrittenBehind`), and the lock the detector and API threads share."""

    def __init__(self, rows: int, folder: str | os.PathLike[str] | None) -> None:
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.rows = rows
        self._rings = RingsWrittenBehind(RingFiles(folder, "the API's history", "the charts miss rows until it can"))
        self._lock = threading.Lock()

    def forget(self, asset: str) -> None:
        """The asset relearns: the old model's rows say nothing of the new one's."""
        with self._lock:
            self._rings.forget(asset)


class ScoreHistory(AssetRings):
    """The last ``rows`` scored rows of each asset, in a file in ``folder`` (None: the temporary folder)."""

    def __init__(self, rows: int = DEFAULT_ROWS, folder: str | os.PathLike[str] | None = None) -> None:
        super().__init__(rows, folder)

    def add(self, verdicts: Sequence[Verdict]) -> None:
        """Scored rows only: a baseline's or a stopped asset's rows carry no score worth charting."""
        by_asset: defaultdict[str, list[tuple[int, float, float, bool]]] = defaultdict(list)
        for v in verdicts:
            if not v.warming_up and v.running:
                by_asset[v.asset].append((v.ts_ns, v.score, v.probability, v.anomaly))
        with self._lock:
            for asset, rows in by_asset.items():
                self._rings.append(asset, np.array(rows, SCORE_RECORD), self.rows)

    def since(self, asset: str, since_ns: int | None, limit: int) -> list[ScorePoint]:
        """The asset's kept rows stamped at or after ``since_ns``, oldest first, at most the newest ``limit``."""
        with self._lock:
            records = self._rings.read(asset)
        if records is None:
            return []
        kept = records[kept_rows(records["ts"], since_ns, limit)]
        columns = (kept[name].tolist() for name in SCORE_FIELDS)
        return [ScorePoint(*row) for row in zip(*columns, strict=True)]
