"""Sensor health on the detector's thread: faults and silences turned into ``sensor_fault`` and
``stale_data`` alerts (the alert manager's conditions), apart from process anomalies.

After each batch of an asset, its :class:`detector.sensor_health.SensorWatch` names the sensors
stuck at one value or beyond their limits, and the sensors of its model that have been silent for
``stale_after_s`` of event time while the others report. An asset that sends nothing at all has no
event time moving, so that silence is measured by the wall clock: :meth:`SensorChecks.check_silence`,
called every second or so, reports every sensor of an asset that sent nothing for ``stale_after_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from alerts.lifecycle import AlertEvent, AlertManager
from alerts.model import KIND_SENSOR_FAULT, KIND_STALE_DATA
from detector.sensor_health import FLAT, SensorFault, SensorWatch
from detector.types import Contribution


@dataclass(frozen=True)
class SensorCheckConfig:
    stale_after_s: float = 300.0
    flat_after_s: float = 120.0
    # What each sensor can read at all: "sensor" for every asset, "asset/sensor" for one.
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def limits_of(self, asset: str) -> dict[str, tuple[float, float]]:
        general = {key: bounds for key, bounds in self.limits.items() if "/" not in key}
        prefix = f"{asset}/"
        return general | {key[len(prefix) :]: b for key, b in self.limits.items() if key.startswith(prefix)}


class SensorChecks:
    """Each asset's sensor watch and silence, handed to the alert manager as conditions."""

    def __init__(self, config: SensorCheckConfig, alerts: AlertManager) -> None:
        self.config = config
        self.alerts = alerts
        self.watches: dict[str, SensorWatch] = {}
        self._arrived: dict[str, float] = {}  # monotonic clock of each asset's latest batch
        self._silent: set[str] = set()  # assets reported silent by the wall clock, until they send again

    def after_batch(
        self, asset: str, batch: Sequence[tuple[int, Mapping[str, float]]], sensors: Sequence[str] | None
    ) -> list[AlertEvent]:
        """An asset's batch was scored: report its faults and silent sensors as they stand now.
        ``sensors``: the asset's model's sensors (None while they are still being discovered)."""
        if not batch:
            return []
        watch = self.watches.get(asset)
        if watch is None:
            watch = self.watches[asset] = SensorWatch(self.config.flat_after_s, limits=self.config.limits_of(asset))
        faults = watch.observe(batch)
        self._arrived[asset] = time.monotonic()
        self._silent.discard(asset)
        newest = watch.newest_ns_
        assert newest is not None  # it has taken a batch
        silent = watch.silent(self.config.stale_after_s, sensors or ())
        stuck_since = min((f.since_ns for f in faults.values()), default=None)
        silent_since = newest - max(silent.values()) if silent else None
        events = self.alerts.observe_condition(
            asset, KIND_SENSOR_FAULT, newest, _fault_contributions(faults), stuck_since
        )
        return events + self.alerts.observe_condition(
            asset, KIND_STALE_DATA, newest, _silent_contributions(silent), silent_since
        )

    def check_silence(self, sensors_of: Callable[[str], Sequence[str] | None]) -> list[AlertEvent]:
        """Assets that sent nothing for ``stale_after_s`` by the wall clock: every sensor silent."""
        events: list[AlertEvent] = []
        now = time.monotonic()
        for asset, arrived in self._arrived.items():
            waited_s = now - arrived
            if asset in self._silent or waited_s < self.config.stale_after_s:
                continue
            self._silent.add(asset)
            watch = self.watches[asset]
            assert watch.newest_ns_ is not None  # an asset arrives with a batch
            names = sensors_of(asset) or tuple(watch.tracks_)
            silent = {name: round(waited_s * 1e9) for name in names}
            events += self.alerts.observe_condition(
                asset, KIND_STALE_DATA, watch.newest_ns_, _silent_contributions(silent)
            )
        return events

    def forget(self, asset: str) -> None:
        """The asset relearns: its sensors may change, so its habits are learned again, and its silence
        is watched again from its next readings (the wall-clock check read the forgotten watch)."""
        self.watches.pop(asset, None)
        self._arrived.pop(asset, None)
        self._silent.discard(asset)


def _fault_contributions(faults: Mapping[str, SensorFault]) -> tuple[Contribution, ...]:
    share = 1.0 / len(faults) if faults else 0.0
    found = []
    for fault in sorted(faults.values(), key=lambda f: f.sensor):
        if fault.reason == FLAT:
            found.append(Contribution(fault.sensor, share, "flat", fault.value, fault.value, fault.value, "flat"))
        else:
            direction = "high" if fault.value > fault.high else "low"
            found.append(Contribution(fault.sensor, share, direction, fault.value, fault.low, fault.high, fault.reason))
    return tuple(found)


def _silent_contributions(silent: Mapping[str, int]) -> tuple[Contribution, ...]:
    """``value``: seconds without a reading."""
    share = 1.0 / len(silent) if silent else 0.0
    return tuple(
        Contribution(sensor, share, "silent", round(ns / 1e9, 3), 0.0, 0.0, "silent")
        for sensor, ns in sorted(silent.items())
    )
