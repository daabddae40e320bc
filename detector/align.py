"""Turn a stream of per-sensor readings into aligned rows (one value per sensor) for the detectors.

Readings arrive one at a time: either a whole frame (every sensor of an asset at one timestamp) or
one sensor per message (``plant/{line}/{asset}/{sensor}``), possibly out of order within an instant
and possibly late. The aligner keeps one open *instant* (the newest timestamp seen), merges the
readings stamped at it, and emits the instant's row as soon as it is complete. Time comes only from
the readings (event time), never from a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Row = tuple[int, np.ndarray]

DEFAULT_MAX_DISCOVERY_READINGS = 10_000
MAX_UNKNOWN_NAMES = 20  # sensor names outside the set that are remembered (for the operator)


class FrameAligner:
    """Watermark alignment with last-value-carried-forward and a staleness bound.

    Parameters
    ----------
    sensors:
        Fixed sensor order of the emitted rows. ``None`` discovers the set (see *Discovery*).
    max_staleness_ns:
        A carried-forward value may be used in a row at most this long after its own timestamp
        (inclusive).
    discovery_ns:
        Length of the discovery period in event time; ``None`` (default) = ``max_staleness_ns``.
        Only used when ``sensors`` is ``None``.
    max_discovery_readings:
        Bound on the readings buffered during discovery.

    Alignment rules (after discovery)
    ---------------------------------
    * The *current instant* is the newest timestamp seen. A reading stamped at it is merged into it.
    * The current instant's row is emitted as soon as **every** sensor has a value stamped at
      exactly that instant: a whole frame therefore emits from the same ``update`` call (no added
      latency); per-sensor messages emit with the one that completes the instant.
    * A reading with a later timestamp *closes* the current instant before it is stored. If the
      instant has not been emitted yet, its row is emitted now from the carried-forward values
      (the newest value of each sensor, stamped at or before the instant) provided every sensor
      has one no older than ``max_staleness_ns``; otherwise no row, counted in
      ``incomplete_rows_``. The later reading then opens the new current instant.
    * A reading older than the current instant is late: dropped entirely (its values are not
      stored) and counted in ``late_readings_``. There is no allowed-lateness window.
    * A reading at an instant that was already emitted or closed (e.g. by ``flush``) updates the
      stored values but gives no second row (``merged_readings_``). Emitted timestamps strictly
      increase.
    * Values of sensors outside the set are ignored and counted in ``unknown_values_``; the first
      ``MAX_UNKNOWN_NAMES`` such sensor names are kept in ``unknown_sensors_``. Every reading still
      advances event time, whatever sensors it carries.
    * Non-finite values are stored as they are; the monitor decides what to do with such rows.

    Discovery (``sensors=None``)
    ----------------------------
    Discovery starts at the first reading that carries at least one value (readings without any
    value before it are ignored) and covers every reading stamped at most ``discovery_ns`` after
    it. Those readings are buffered, not aligned, and no row is emitted meanwhile. Discovery ends
    when a reading stamped more than ``discovery_ns`` after the first one arrives, when the buffer
    reaches ``max_discovery_readings`` readings, or at ``flush()``. The sensor set is then frozen
    as the union of the sensors of the buffered readings, sorted by name, and the buffer is
    replayed through the alignment rules above in arrival order; the rows this gives are returned
    by the call that ended discovery (together with any row of the ending reading itself), so the
    early rows are delayed, not lost. Sensors first seen after discovery are counted in
    ``unknown_values_``.
    """

    def __init__(
        self,
        sensors: Sequence[str] | None = None,
        *,
        max_staleness_ns: int,
        discovery_ns: int | None = None,
        max_discovery_readings: int = DEFAULT_MAX_DISCOVERY_READINGS,
    ) -> None:
        self.sensors = sensors
        self.max_staleness_ns = max_staleness_ns
        self.discovery_ns = discovery_ns
        self.max_discovery_readings = max_discovery_readings
        self.reset()

    def reset(self) -> None:
        """Forget all values, discovery state and counters (hyperparameters are kept)."""
        if self.max_staleness_ns < 0:
            raise ValueError(f"max_staleness_ns must be >= 0, got {self.max_staleness_ns}")
        if self.discovery_ns is not None and self.discovery_ns < 0:
            raise ValueError(f"discovery_ns must be >= 0, got {self.discovery_ns}")
        if self.max_discovery_readings < 1:
            raise ValueError(f"max_discovery_readings must be >= 1, got {self.max_discovery_readings}")
        self.sensors_: tuple[str, ...] | None = None
        self._index: dict[str, int] = {}
        self._discovery_start: int | None = None
        self._discovered: set[str] = set()
        self._buffer: list[tuple[int, dict[str, float]]] = []
        if self.sensors is not None:
            self._set_sensors(tuple(self.sensors))
        self.current_ts_: int | None = None  # the open (newest) instant
        self._closed = False  # current instant already emitted or given up
        self.last_emitted_ts_: int | None = None
        self.rows_emitted_ = 0
        self.incomplete_rows_ = 0
        self.late_readings_ = 0
        self.merged_readings_ = 0
        self.unknown_values_ = 0
        # Replaced, never changed in place: /healthz reads it from another thread.
        self.unknown_sensors_: frozenset[str] = frozenset()

    @property
    def discovering(self) -> bool:
        """True while the sensor set is still being discovered."""
        return self.sensors_ is None

    def stale_sensors(self) -> tuple[str, ...]:
        """Sensors without a value within ``max_staleness_ns`` of the newest instant: until they
        report again, no row completes (each instant is counted in ``incomplete_rows_``)."""
        sensors, current = self.sensors_, self.current_ts_
        if sensors is None or current is None:
            return ()
        fresh = self._has_value & (current - self._value_ts <= self.max_staleness_ns)
        # strict=False: another thread (/healthz) may read while discovery swaps the arrays.
        return tuple(name for name, ok in zip(sensors, fresh.tolist(), strict=False) if not ok)

    def _set_sensors(self, sensors: tuple[str, ...]) -> None:
        if len(set(sensors)) != len(sensors):
            raise ValueError(f"duplicate sensor names: {sensors}")
        if not sensors:
            raise ValueError("at least one sensor is needed")
        n = len(sensors)
        self.sensors_ = sensors
        self._index = {name: i for i, name in enumerate(sensors)}
        self._values = np.full(n, np.nan)
        self._value_ts = np.zeros(n, dtype=np.int64)
        self._has_value = np.zeros(n, dtype=bool)
        self._exact = np.zeros(n, dtype=bool)  # sensor has a value stamped at the current instant
        self._exact_count = 0

    # -- public ------------------------------------------------------------------------------

    def update(self, ts_ns: int, values: Mapping[str, float]) -> list[Row]:
        """Take one reading; return the rows ``(ts_ns, row)`` it completes (0, 1 or several)."""
        ts_ns = int(ts_ns)
        if self.sensors_ is None:
            return self._discover(ts_ns, values)
        out: list[Row] = []
        self._align(ts_ns, values, out)
        return out

    def flush(self) -> list[Row]:
        """End discovery if it is running, then close the current instant.

        Returns the rows this gives: the replayed discovery rows, and the current instant's row if
        it was not emitted yet and is complete with fresh carried-forward values (otherwise it
        counts in ``incomplete_rows_``). Later readings at the same timestamp are merged, not
        re-emitted. Calling it again returns ``[]``.
        """
        out: list[Row] = []
        if self.sensors_ is None:
            if not self._discovered:
                return out
            self._end_discovery(out)
        self._close(out)
        return out

    # -- discovery ---------------------------------------------------------------------------

    def _discover(self, ts_ns: int, values: Mapping[str, float]) -> list[Row]:
        out: list[Row] = []
        if self._discovery_start is None:
            if not values:
                return out  # nothing to learn from: discovery has not started
            self._discovery_start = ts_ns
        window = self.max_staleness_ns if self.discovery_ns is None else self.discovery_ns
        if ts_ns - self._discovery_start > window:
            self._end_discovery(out)
            self._align(ts_ns, values, out)
            return out
        self._buffer.append((ts_ns, dict(values)))
        self._discovered.update(values)
        if len(self._buffer) >= self.max_discovery_readings:
            self._end_discovery(out)
        return out

    def _end_discovery(self, out: list[Row]) -> None:
        self._set_sensors(tuple(sorted(self._discovered)))
        buffer, self._buffer, self._discovered = self._buffer, [], set()
        for ts_ns, values in buffer:
            self._align(ts_ns, values, out)

    # -- alignment ---------------------------------------------------------------------------

    def _align(self, ts_ns: int, values: Mapping[str, float], out: list[Row]) -> None:
        current = self.current_ts_
        if current is not None and ts_ns < current:
            self.late_readings_ += 1
            return
        if current is None or ts_ns > current:
            self._close(out)
            self.current_ts_ = ts_ns
            self._closed = False
            if self._exact_count:
                self._exact[:] = False
                self._exact_count = 0
        elif self._closed:
            self.merged_readings_ += 1
        self._store(ts_ns, values)
        if not self._closed and self._exact_count == len(self._index):
            self._emit(ts_ns, out)

    def _store(self, ts_ns: int, values: Mapping[str, float]) -> None:
        # Only readings at the current instant get here, so every stored value is at or before it.
        for name, value in values.items():
            i = self._index.get(name)
            if i is None:
                self.unknown_values_ += 1
                if name not in self.unknown_sensors_ and len(self.unknown_sensors_) < MAX_UNKNOWN_NAMES:
                    self.unknown_sensors_ = self.unknown_sensors_ | {name}  # bounded: names come from the network
                continue
            self._values[i] = float(value)
            self._value_ts[i] = ts_ns
            self._has_value[i] = True
            if not self._exact[i]:
                self._exact[i] = True
                self._exact_count += 1

    def _close(self, out: list[Row]) -> None:
        """Close the current instant: emit it from carried-forward values if complete and fresh."""
        ts_ns = self.current_ts_
        if ts_ns is None or self._closed:
            return
        self._closed = True
        age = ts_ns - self._value_ts
        if self._has_value.all() and bool((age <= self.max_staleness_ns).all()):
            self._emit(ts_ns, out)
        else:
            self.incomplete_rows_ += 1

    def _emit(self, ts_ns: int, out: list[Row]) -> None:
        self._closed = True
        self.last_emitted_ts_ = ts_ns
        self.rows_emitted_ += 1
        out.append((ts_ns, self._values.copy()))
