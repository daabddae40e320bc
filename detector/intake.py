"""Live readings into aligned rows, and the one rule about a sensor set no baseline has fixed yet.

``SensorIntake`` runs a :class:`detector.align.FrameAligner` (discovery, alignment, staleness) and
watches for a discovered sensor that never reports again (a one-off key in the first readings, a
sensor that died): it would leave every row incomplete for good. After ``REDISCOVER_AFTER`` x
``max_staleness_ns`` of event time with instants but no complete row, and only while the sensor set
may still change (no configured sensors, no learned model), the sensors are discovered again from
the next readings; the caller starts its baseline over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detector.align import FrameAligner, Row
from detector.config import MonitorConfig
from detector.events import Event, SensorsRediscovered, UnknownSensors

# How long (in max_staleness periods of event time) an asset without a baseline may go without a
# complete row before it discovers its sensors again: a sensor silent that long is gone, not late.
REDISCOVER_AFTER = 10


@dataclass(frozen=True, slots=True)
class AlignerCounts:
    """Running totals of what alignment left out (over every aligner the intake has had)."""

    unknown_values: int = 0
    late_readings: int = 0
    incomplete_rows: int = 0

    @classmethod
    def of(cls, aligner: FrameAligner) -> AlignerCounts:
        return cls(aligner.unknown_values_, aligner.late_readings_, aligner.incomplete_rows_)

    def __add__(self, other: AlignerCounts) -> AlignerCounts:
        return AlignerCounts(
            self.unknown_values + other.unknown_values,
            self.late_readings + other.late_readings,
            self.incomplete_rows + other.incomplete_rows,
        )

    def __sub__(self, other: AlignerCounts) -> AlignerCounts:
        return AlignerCounts(
            self.unknown_values - other.unknown_values,
            self.late_readings - other.late_readings,
            self.incomplete_rows - other.incomplete_rows,
        )


class SensorIntake:
    """Aligned rows from readings; rediscovery of silent sensors before a baseline fixes them.

    ``sensors``: the configured sensor order (never rediscovered), or None to discover it.
    ``restore(sensors)`` fixes the order a saved model was learned with.
    """

    def __init__(self, config: MonitorConfig, sensors: Sequence[str] | None) -> None:
        self.config = config
        self.sensors = sensors
        self._start(sensors)
        self.rediscoveries_ = 0
        self.rediscovered_: tuple[str, ...] = ()  # the silent sensors the last rediscovery dropped
        self._retired = AlignerCounts()  # counts of the aligners rediscovery replaced

    def _start(self, sensors: Sequence[str] | None) -> None:
        self.aligner_ = self.config.make_aligner(sensors)
        self._names: tuple[str, ...] | None = tuple(sensors) if sensors is not None else None
        self._emitted_seen = self._incomplete_seen = 0  # aligner counters when a row last completed
        self._stuck_since_ns: int | None = None  # event time since which no row has completed
        self._reported: frozenset[str] = frozenset()  # unknown sensor names already reported

    def restore(self, sensors: Sequence[str]) -> None:
        """Align to the sensors of a saved model (alignment state itself is not saved)."""
        self._start(tuple(sensors))

    @property
    def sensor_names(self) -> tuple[str, ...] | None:
        """The sensor order of the rows: configured, restored, or as discovered (None until then)."""
        if self._names is None and self.aligner_.sensors_ is not None:
            self._names = tuple(self.aligner_.sensors_)
        return self._names

    @property
    def unknown_sensors(self) -> frozenset[str]:
        """Sensors published outside the sensor set (at most ``align.MAX_UNKNOWN_NAMES``)."""
        return self.aligner_.unknown_sensors_

    def stale_sensors(self) -> tuple[str, ...]:
        return self.aligner_.stale_sensors()

    def counts(self) -> AlignerCounts:
        return self._retired + AlignerCounts.of(self.aligner_)

    def add(
        self, readings: Iterable[tuple[int, Mapping[str, float]]], *, fixed: bool, events: list[Event]
    ) -> list[Row]:
        """The rows these readings complete. ``fixed``: a learned model holds the sensor set.

        A rediscovery drops the rows of the abandoned sensor set aligned so far in this call (the
        baseline starts over without them) and is reported in ``events``, as are sensor names
        outside the set seen for the first time.
        """
        rows: list[Row] = []
        for ts_ns, values in readings:
            rows.extend(self.aligner_.update(ts_ns, values))
            if self._stuck(fixed):
                events.append(self._rediscover())
                rows = []
        self._report_unknown(events)
        return rows

    def flush(self, events: list[Event]) -> list[Row]:
        """End of stream: what the aligner still holds (``FrameAligner.flush``)."""
        rows = self.aligner_.flush()
        self._report_unknown(events)
        return rows

    def _report_unknown(self, events: list[Event]) -> None:
        unknown = self.aligner_.unknown_sensors_
        if unknown != self._reported:
            new = unknown - self._reported
            self._reported = unknown
            if new:
                events.append(UnknownSensors(tuple(sorted(new))))

    def _stuck(self, fixed: bool) -> bool:
        aligner = self.aligner_
        if aligner.rows_emitted_ != self._emitted_seen or aligner.incomplete_rows_ == self._incomplete_seen:
            self._emitted_seen, self._incomplete_seen = aligner.rows_emitted_, aligner.incomplete_rows_
            self._stuck_since_ns = aligner.current_ts_
            return False
        if self.sensors is not None or fixed or aligner.sensors_ is None:
            return False
        stuck_since, now = self._stuck_since_ns, aligner.current_ts_
        waited = REDISCOVER_AFTER * self.config.max_staleness_ns
        return stuck_since is not None and now is not None and now - stuck_since >= waited

    def _rediscover(self) -> SensorsRediscovered:
        self.rediscovered_ = self.aligner_.stale_sensors()
        self.rediscoveries_ += 1
        self._retired = self.counts()
        self._start(None)
        return SensorsRediscovered(self.rediscovered_, REDISCOVER_AFTER * self.config.max_staleness_ns)


def rows_to_arrays(rows: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
    """Aligned rows as ``(ts_ns, X)`` arrays."""
    ts = np.fromiter((t for t, _ in rows), dtype=np.int64, count=len(rows))
    return ts, np.vstack([x for _, x in rows])
