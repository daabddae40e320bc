"""Each asset's recent aligned rows (time and every sensor's value), for the dashboard's sensor chart
(``GET /assets/{asset}/readings``): a ring per asset of records in a file (:mod:`plantwatch.service.ring_file`),
a file per number of sensors, values in float32: 720 rows of 8 sensors are 29 KB of file an asset,
none of the process's memory. Written by the detector thread from the rows the monitor aligned (the
rows it scored), read by the API's threads, under one lock."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.align import Row
from plantwatch.service.score_history import AssetRings, kept_rows

DEFAULT_ROWS = 720  # the dashboard draws the newest 720 scored rows


@dataclass(frozen=True)
class RowsSince:
    sensors: tuple[str, ...]
    ts_ns: list[int]
    values: list[list[float | None]]  # per row, in ``sensors`` order; None where a value was missing


def row_record(sensors: int) -> np.dtype:
    return np.dtype([("ts", "<i8"), ("values", "<f4", (sensors,))])


class RowHistory(AssetRings):
    """The last ``rows`` aligned rows of each asset, in files in ``folder`` (None: the temporary folder)."""

    def __init__(self, rows: int = DEFAULT_ROWS, folder: str | os.PathLike[str] | None = None) -> None:
        super().__init__(rows, folder)
        self._sensors: dict[str, tuple[str, ...]] = {}  # each asset's sensors, in its records' order

    def add(self, asset: str, sensors: Sequence[str], rows: Sequence[Row]) -> None:
        """Rows in ``sensors`` order; a new sensor set (the asset relearned others) starts the ring again."""
        if not rows:
            return
        names = tuple(sensors)
        records = np.empty(len(rows), row_record(len(names)))
        records["ts"] = [ts for ts, _ in rows]
        records["values"] = [values for _, values in rows]
        with self._lock:
            if self._sensors.get(asset) != names:
                self._rings.forget(asset)
                self._sensors[asset] = names
            self._rings.append(asset, records, self.rows)

    def since(self, asset: str, since_ns: int | None, limit: int) -> RowsSince:
        """The asset's kept rows stamped at or after ``since_ns``, oldest first, at most the newest ``limit``."""
        with self._lock:
            names, records = self._sensors.get(asset), self._rings.read(asset)
        if names is None:
            return RowsSince((), [], [])
        if records is None:  # a write failed: the ring starts again
            return RowsSince(names, [], [])
        kept = records[kept_rows(records["ts"], since_ns, limit)]
        values = kept["values"].astype(np.float64)
        cells = [[v if np.isfinite(v) else None for v in row] for row in values.tolist()]
        return RowsSince(names, kept["ts"].tolist(), cells)

    def forget(self, asset: str) -> None:
        with self._lock:
            self._sensors.pop(asset, None)
            self._rings.forget(asset)
