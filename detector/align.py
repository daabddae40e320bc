"""Turn a stream of per-sensor readings into aligned rows (one value per sensor) for the detectors.

Readings arrive one at a time, possibly carrying only some of an asset's sensors, possibly late.
The aligner keeps the newest value of every sensor and, at each reading's timestamp, emits a row
only when every sensor has a value that is fresh enough. Time comes only from the readings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class FrameAligner:
    """Last-value-carried-forward alignment with a staleness bound.

    Parameters
    ----------
    sensors:
        Fixed sensor order of the emitted rows. ``None`` learns the set from the first reading
        (sorted by name, so the order does not depend on payload key order); sensors that show
        up later are ignored and counted in ``unknown_values_``.
    max_staleness_ns:
        A sensor's value may be used in a row at most this long after its own timestamp.

    Rules
    -----
    * A reading older than the last emitted row is late: dropped and counted in
      ``late_readings_`` (emitting it would make the row timestamps go backwards).
    * A reading at exactly the last emitted row's timestamp updates the stored values but emits
      no second row for that instant (``merged_readings_``); emitted timestamps strictly increase.
    * A sensor value stamped *after* the row's timestamp (cross-sensor reordering) counts as fresh.
    * Non-finite values are stored as they are; the monitor decides what to do with such rows.
    """

    def __init__(self, sensors: Sequence[str] | None = None, *, max_staleness_ns: int) -> None:
        self.sensors = sensors
        self.max_staleness_ns = max_staleness_ns
        self.reset()

    def reset(self) -> None:
        """Forget all values and counters (hyperparameters are kept)."""
        if self.max_staleness_ns < 0:
            raise ValueError(f"max_staleness_ns must be >= 0, got {self.max_staleness_ns}")
        self.sensors_: tuple[str, ...] | None = None
        self._index: dict[str, int] = {}
        if self.sensors is not None:
            self._set_sensors(tuple(self.sensors))
        self.last_emitted_ts_: int | None = None
        self.rows_emitted_ = 0
        self.incomplete_rows_ = 0
        self.late_readings_ = 0
        self.merged_readings_ = 0
        self.unknown_values_ = 0

    def _set_sensors(self, sensors: tuple[str, ...]) -> None:
        if len(set(sensors)) != len(sensors):
            raise ValueError(f"duplicate sensor names: {sensors}")
        if not sensors:
            raise ValueError("at least one sensor is needed")
        self.sensors_ = sensors
        self._index = {name: i for i, name in enumerate(sensors)}
        self._values = np.full(len(sensors), np.nan)
        self._value_ts = np.zeros(len(sensors), dtype=np.int64)
        self._has_value = np.zeros(len(sensors), dtype=bool)

    def update(self, ts_ns: int, values: Mapping[str, float]) -> tuple[int, np.ndarray] | None:
        """Take one reading; return ``(ts_ns, row)`` if it completes a fresh row, else ``None``."""
        ts_ns = int(ts_ns)
        if self.last_emitted_ts_ is not None and ts_ns < self.last_emitted_ts_:
            self.late_readings_ += 1
            return None
        if self.sensors_ is None:
            self._set_sensors(tuple(sorted(values)))
        self._store(ts_ns, values)
        if self.last_emitted_ts_ is not None and ts_ns == self.last_emitted_ts_:
            self.merged_readings_ += 1
            return None
        if not self._complete_at(ts_ns):
            self.incomplete_rows_ += 1
            return None
        self.last_emitted_ts_ = ts_ns
        self.rows_emitted_ += 1
        return ts_ns, self._values.copy()

    def _store(self, ts_ns: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            i = self._index.get(name)
            if i is None:
                self.unknown_values_ += 1
                continue
            # Keep the newest value per sensor, even if readings of one sensor arrive out of order.
            if self._has_value[i] and ts_ns < self._value_ts[i]:
                continue
            self._values[i] = float(value)
            self._value_ts[i] = ts_ns
            self._has_value[i] = True

    def _complete_at(self, ts_ns: int) -> bool:
        if not self._has_value.all():
            return False
        age = ts_ns - self._value_ts  # negative age = value newer than the row: fresh
        return bool((age <= self.max_staleness_ns).all())
