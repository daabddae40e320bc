"""What happened inside a monitor during one call, besides its verdicts.

:meth:`detector.monitor.AssetMonitor.observe` returns these with the verdicts; the service turns them
into log lines, counters and model saves (``plantwatch/service/detector_stage.py``). They are plain
values: the detector room says what happened, never how to report it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BaselineLearned:
    """A baseline was learned: scoring starts with the next row."""

    drifting_sensors: tuple[str, ...]  # judged by how they move only (their level wandered)
    advice: str | None  # what to change about the baseline, if anything (``AssetMonitor.baseline_advice``)


@dataclass(frozen=True, slots=True)
class BaselineExtended:
    """The baseline saw sensors move one way only (:mod:`detector.transitions`): it goes on for
    another ``baseline_rows``, to see them come back, before it is learned."""

    rose: tuple[str, ...]  # sensors that only rose
    fell: tuple[str, ...]  # sensors that only fell
    rows: int  # rows collected so far
    size: int  # rows it will now be learned from (unless it is extended again)
    extension: int  # 1 for the first extension
    extensions: int  # at most this many (``baseline_extensions``)


@dataclass(frozen=True, slots=True)
class BaselineFailed:
    """A baseline could not be learned; it was dropped and the next rows start another."""

    cause: str  # the model's own error message
    message: str  # what went wrong and what to change, for the log


@dataclass(frozen=True, slots=True)
class SensorsRediscovered:
    """Before a baseline, no row completed for ``waited_ns`` of event time: the sensor set is
    discovered again from the next readings and the baseline starts over."""

    silent: tuple[str, ...]  # the sensors that stopped reporting (may be empty if none is known)
    waited_ns: int


@dataclass(frozen=True, slots=True)
class UnknownSensors:
    """Sensors outside the asset's sensor set published for the first time; their values are ignored."""

    names: tuple[str, ...]  # sorted


@dataclass(frozen=True, slots=True)
class RunningRuleUnusable:
    """``running_when`` names sensors the asset does not have (found once its sensors are known):
    every row counts as running until the rule is fixed. Scoring the stops is safer than never
    scoring the asset over a typo."""

    asset: str
    rule: str
    missing: tuple[str, ...]  # the rule's sensors the asset lacks
    sensors: tuple[str, ...]  # the asset's sensors (empty: not known)

    @property
    def problem(self) -> str:
        names = ", ".join(repr(name) for name in self.missing)
        known = ", ".join(self.sensors) or "none known"
        return f"asset {self.asset!r}: running_when {self.rule!r} names {names}, not among its sensors ({known})"

    @property
    def message(self) -> str:
        return f"{self.problem}; every row counts as running (stops are scored) until the rule is fixed"


@dataclass(frozen=True, slots=True)
class ModelRefitted:
    """Adaptation refitted the detector and calibrator on the memory of normal rows."""

    refits: int  # refits since the baseline


@dataclass(frozen=True, slots=True)
class LeftOut:
    """What this call left out of detection (only sent when something was)."""

    unknown_values: int  # values of sensors outside the sensor set
    late_readings: int  # readings stamped before the newest instant
    incomplete_rows: int  # instants without a fresh value of every sensor
    skipped_rows: int  # rows not scored: an unusable value, out of time order, or refilling after a gap
    stopped_rows: int = 0  # rows not scored: the asset stopped (running_when) or settling after a start


Event = (
    BaselineLearned
    | BaselineExtended
    | BaselineFailed
    | SensorsRediscovered
    | UnknownSensors
    | RunningRuleUnusable
    | ModelRefitted
    | LeftOut
)
