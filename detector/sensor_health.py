"""Sensor faults, told apart from process anomalies: a reading stuck at one value, or beyond the
limits a sensor can physically read.

A failed transmitter, a frozen PLC tag or a broken 4-20 mA loop keeps publishing, so the model sees
its values and would judge the process by them: a flat-lined reading looks like a process that
suddenly stopped moving. :class:`SensorWatch` follows each sensor's readings in event time and names
the sensors at fault, so the service raises a ``sensor_fault`` alert for them instead of a process
``anomaly``.

- **Flat**: the value has not changed for ``flat_after_s`` of event time *and* for ``flat_factor``
  times the longest unchanged run the sensor showed before. A sensor that has not changed once since
  the watch started is never flat (a setpoint, a mode), and one that sits still for long stretches
  by design (a valve position, a 0/1 state) is judged against its own habit.
- **Out of range**: a value outside the sensor's configured ``limits`` (what the instrument can
  read, not what the process should do: the process's own limits are the detector's business).

Everything is event time (the readings' stamps), so a replay finds the faults a live run found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

FLAT: Final = "flat"
OUT_OF_RANGE: Final = "out_of_range"


@dataclass(frozen=True, slots=True)
class SensorFault:
    """One sensor at fault: ``reason`` FLAT (``value`` stuck since ``since_ns``) or OUT_OF_RANGE
    (``value`` beyond ``low``..``high`` since ``since_ns``)."""

    sensor: str
    reason: str
    value: float
    since_ns: int
    low: float = -math.inf
    high: float = math.inf


@dataclass(slots=True)
class _Track:
    value: float
    run_start_ns: int  # when the current unchanged run began
    last_ns: int
    longest_run_ns: int = 0  # the longest unchanged run that has ended
    changed: bool = False  # the value has changed at least once
    out_since_ns: int | None = None  # outside its limits since then


class SensorWatch:
    """Follows one asset's sensors; :meth:`observe` returns the sensors at fault after each batch."""

    def __init__(
        self,
        flat_after_s: float = 120.0,  # the service's alerts.flat_after_s
        flat_factor: float = 3.0,
        limits: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.flat_after_s = flat_after_s
        self.flat_factor = flat_factor
        self.limits = limits
        self.tracks_: dict[str, _Track] = {}
        self.first_ns_: int | None = None  # the first reading's stamp: sensors never heard are silent since
        self.newest_ns_: int | None = None  # the newest reading's stamp, of any sensor

    def observe(self, batch: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, SensorFault]:
        """Take readings ``(ts_ns, {sensor: value})`` in arrival order; the faults as they stand after them."""
        limits = self.limits or {}
        tracks = self.tracks_
        if batch and self.first_ns_ is None:
            self.first_ns_ = batch[0][0]
        for ts_ns, values in batch:
            if self.newest_ns_ is None or ts_ns > self.newest_ns_:
                self.newest_ns_ = ts_ns
            for sensor, value in values.items():
                track = tracks.get(sensor)
                if track is None:
                    tracks[sensor] = track = _Track(value, ts_ns, ts_ns)
                elif ts_ns < track.last_ns:
                    continue  # a late reading says nothing about what the sensor does now
                elif value != track.value:
                    if track.last_ns - track.run_start_ns > track.longest_run_ns:
                        track.longest_run_ns = track.last_ns - track.run_start_ns
                    track.value = value
                    track.run_start_ns = ts_ns
                    track.changed = True
                track.last_ns = ts_ns
                if limits:
                    self._check_limits(track, limits.get(sensor), value, ts_ns)
        return self.faults()

    @staticmethod
    def _check_limits(track: _Track, bounds: tuple[float, float] | None, value: float, ts_ns: int) -> None:
        if bounds is not None:
            inside = bounds[0] <= value <= bounds[1]
            track.out_since_ns = None if inside else (track.out_since_ns or ts_ns)

    def faults(self) -> dict[str, SensorFault]:
        found: dict[str, SensorFault] = {}
        limits = self.limits or {}
        for sensor, track in self.tracks_.items():
            if track.out_since_ns is not None:
                low, high = limits[sensor]
                found[sensor] = SensorFault(sensor, OUT_OF_RANGE, track.value, track.out_since_ns, low, high)
            elif self._flat(track):
                found[sensor] = SensorFault(sensor, FLAT, track.value, track.run_start_ns)
        return found

    def _flat(self, track: _Track) -> bool:
        if not track.changed:
            return False
        run_ns = track.last_ns - track.run_start_ns
        return run_ns >= self.flat_after_s * 1e9 and run_ns >= self.flat_factor * track.longest_run_ns

    def silent(self, after_s: float, sensors: Sequence[str]) -> dict[str, int]:
        """Which of ``sensors`` have sent nothing for ``after_s`` of event time before the newest reading
        of any sensor, and for how long (ns); a sensor never heard counts from the first reading."""
        newest, first = self.newest_ns_, self.first_ns_
        if newest is None or first is None:
            return {}
        quiet = {}
        for sensor in sensors:
            track = self.tracks_.get(sensor)
            silent_ns = newest - (track.last_ns if track is not None else first)
            if silent_ns >= after_s * 1e9:
                quiet[sensor] = silent_ns
        return quiet
