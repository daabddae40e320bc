"""The alert record shared by the lifecycle, the stores and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from detector.types import Contribution

KIND_ANOMALY: Final = "anomaly"
KIND_MAINTENANCE: Final = "maintenance"  # a projected health-threshold crossing is due (plantwatch.maintenance)
# Sensor health, apart from the process: readings stuck or beyond the instrument's limits
# (detector.sensor_health), and sensors, or a whole asset, that stopped reporting.
KIND_SENSOR_FAULT: Final = "sensor_fault"
KIND_STALE_DATA: Final = "stale_data"
CONDITION_KINDS: Final = (KIND_SENSOR_FAULT, KIND_STALE_DATA)
KINDS: Final = (KIND_ANOMALY, KIND_MAINTENANCE, KIND_SENSOR_FAULT, KIND_STALE_DATA)

STATE_OPEN: Final = "open"
STATE_RESOLVED: Final = "resolved"
STATES: Final = (STATE_OPEN, STATE_RESOLVED)

SEVERITY_WARNING: Final = "warning"
SEVERITY_CRITICAL: Final = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert; all timestamps are event time in nanoseconds since the Unix epoch.

    Frozen so the lifecycle can hand the same object to callers and the store without
    anyone mutating the manager's state behind its back; changes go through `dataclasses.replace`.
    """

    id: int | None  # None until the store has assigned one
    asset: str
    kind: str  # one of KINDS
    state: str  # STATE_OPEN or STATE_RESOLVED
    started_at_ns: int
    last_anomalous_at_ns: int
    resolved_at_ns: int | None
    severity: str  # SEVERITY_WARNING or SEVERITY_CRITICAL
    peak_score: float  # maintenance: the peak health index (1 = at the maintenance threshold)
    peak_probability: float  # maintenance: 0.0 (not applicable)
    top_sensors: tuple[Contribution, ...] = ()  # the contributions at the peak-score row
    # The peak-score row lies at an operating point the baseline never covered (detector.operating_point):
    # its top sensors are levels beyond the baseline's range together, not faults of those sensors.
    unseen_operating_point: bool = False
    # What operators did (AlertStore.act), by wall-clock time: the lifecycle never writes these, so its
    # updates of an open alert cannot undo an acknowledgement.
    acknowledged_at_ns: int | None = None
    acknowledged_by: str | None = None
    shelved_until_ns: int | None = None  # silenced until then (wall clock), with a reason
    shelved_reason: str | None = None
    # The asset's tags when the alert opened, sorted by name: its topic segments (line, site, ...) and
    # the configured alerts.asset_tags.
    tags: tuple[tuple[str, str], ...] = ()
    # Wall clock of the row's last change, set by the store: bookkeeping, not what the alert says, so
    # two reads of an unchanged alert compare equal whichever write came last.
    updated_at_ns: int | None = field(default=None, compare=False)

    @classmethod
    def opened(
        cls,
        asset: str,
        kind: str,
        ts_ns: int,
        severity: str,
        peak_score: float,
        peak_probability: float,
        top_sensors: tuple[Contribution, ...],
        unseen_operating_point: bool = False,
        tags: tuple[tuple[str, str], ...] = (),
    ) -> Alert:
        """A new open alert that starts (and was last anomalous) at ``ts_ns``; the store assigns its id."""
        return cls(
            id=None,
            asset=asset,
            kind=kind,
            state=STATE_OPEN,
            started_at_ns=ts_ns,
            last_anomalous_at_ns=ts_ns,
            resolved_at_ns=None,
            severity=severity,
            peak_score=peak_score,
            peak_probability=peak_probability,
            top_sensors=top_sensors,
            unseen_operating_point=unseen_operating_point,
            tags=tags,
        )

    def shelved(self, now_ns: int) -> bool:
        return self.shelved_until_ns is not None and self.shelved_until_ns > now_ns

    @property
    def last_activity_ns(self) -> int:
        """When the alert last changed meaningfully; what `since` filters compare against."""
        return self.resolved_at_ns if self.resolved_at_ns is not None else self.last_anomalous_at_ns


ACKNOWLEDGED: Final = "acknowledged"
RESOLVED_BY_OPERATOR: Final = "resolved"  # closed by hand (POST /alerts/{id}/resolve)
REOPENED: Final = "reopened"  # by the service ("plantwatch"): the anomaly chattered back soon after resolving
SHELVED: Final = "shelved"
UNSHELVED: Final = "unshelved"
COMMENTED: Final = "commented"
# An operator's verdict on the alert (POST /alerts/{id}/feedback): normal running the baseline never
# showed (learned as normal), a fault (never learned), or real but of a known, benign cause (recorded).
MARKED_FALSE_ALARM: Final = "marked_false_alarm"
MARKED_TRUE_FAULT: Final = "marked_true_fault"
MARKED_KNOWN_CAUSE: Final = "marked_known_cause"
VERDICTS: Final = {
    "false_alarm": MARKED_FALSE_ALARM,
    "true_fault": MARKED_TRUE_FAULT,
    "known_cause": MARKED_KNOWN_CAUSE,
}
ACTIONS: Final = (ACKNOWLEDGED, RESOLVED_BY_OPERATOR, REOPENED, SHELVED, UNSHELVED, COMMENTED, *VERDICTS.values())


@dataclass(frozen=True, slots=True)
class AlertAction:
    """One entry of an alert's history: who did what, when (wall clock), and what they wrote."""

    alert_id: int
    at_ns: int
    actor: str  # the API key's name, or "anonymous" on an API without keys
    action: str  # one of ACTIONS
    comment: str | None = None
    shelved_until_ns: int | None = None  # for SHELVED
