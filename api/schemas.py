"""API models: inbound (validated query parameters) and outbound (the wire shape, decoupled from `Alert`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.model import Alert
from detector.types import Contribution
from ingest.timestamps import ns_to_datetime  # UTC, to the microsecond; pydantic renders ISO-8601 with a Z

# -- inbound ---------------------------------------------------------------------------------------

# Names as the decoder accepts them (at most 128 characters); no NUL, which PostgreSQL text refuses.
Name = Annotated[str | None, Field(max_length=128, pattern=r"^[^\x00]*$")]


class AlertFilters(BaseModel):
    """The query of ``GET /alerts``: every given filter must match."""

    asset: Name = None
    state: Literal["open", "resolved"] | None = Field(default=None, description="open or resolved")
    kind: Name = None
    since: str | None = Field(
        default=None,
        description="Only alerts active at or after this instant: ISO-8601 with a zone "
        "(2024-05-01T12:00:00Z) or epoch seconds (1714564800.5).",
    )
    limit: int = Field(default=1000, ge=1, le=10_000)


class FeedbackIn(BaseModel):
    """Body of ``POST /assets/{asset}/feedback``: an operator's verdict on the asset's alert rows in a period."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)  # epoch seconds as a JSON number too

    verdict: Literal["false_alarm", "true_fault"]
    start: str = Field(description="first instant of the period: epoch seconds or ISO-8601 with a zone")
    end: str = Field(description="last instant of the period, as start")


# -- outbound --------------------------------------------------------------------------------------


class SensorContributionOut(BaseModel):
    sensor: str
    share: float
    direction: str
    value: float
    expected_low: float
    expected_high: float
    feature: str  # which view of the sensor is off: "raw", "level", "spread", ... ("" if unknown)
    # True when the value lies inside the expected range: not off on its own, unusual with the others.
    # Always false for maintenance drivers (feature "drift"), whose range is the maintenance threshold.
    within_expected: bool

    @classmethod
    def from_contribution(cls, c: Contribution) -> SensorContributionOut:
        return cls(
            sensor=c.sensor,
            share=c.share,
            direction=c.direction,
            value=c.value,
            expected_low=c.expected_low,
            expected_high=c.expected_high,
            feature=c.feature,
            within_expected=c.within_expected,
        )


class AlertOut(BaseModel):
    id: int
    asset: str
    kind: str
    state: str
    started_at: datetime
    last_anomalous_at: datetime
    resolved_at: datetime | None
    severity: str
    peak_score: float
    peak_probability: float
    top_sensors: list[SensorContributionOut]
    # True when the peak row lies at an operating point the baseline never covered: most sensors' levels
    # beyond the baseline's range together, moved as its correlations move them; not a fault of each.
    unseen_operating_point: bool

    @classmethod
    def from_alert(cls, alert: Alert) -> AlertOut:
        assert alert.id is not None  # only stored alerts are served
        return cls(
            id=alert.id,
            asset=alert.asset,
            kind=alert.kind,
            state=alert.state,
            started_at=ns_to_datetime(alert.started_at_ns),
            last_anomalous_at=ns_to_datetime(alert.last_anomalous_at_ns),
            resolved_at=None if alert.resolved_at_ns is None else ns_to_datetime(alert.resolved_at_ns),
            severity=alert.severity,
            peak_score=alert.peak_score,
            peak_probability=alert.peak_probability,
            top_sensors=[SensorContributionOut.from_contribution(c) for c in alert.top_sensors],
            unseen_operating_point=alert.unseen_operating_point,
        )


class RelearnOut(BaseModel):
    """Answer of ``POST /assets/{asset}/relearn``: the baseline is forgotten before the next readings."""

    asset: str
    status: str  # "relearning"
    maintenance: bool  # True: the health trend and RUL history start again too


class FeedbackOut(BaseModel):
    """Answer of ``POST /assets/{asset}/feedback``."""

    asset: str
    verdict: str
    rows: int  # alert rows learned as normal (false_alarm) or dropped for good (true_fault); 0: none kept there


class MaintenanceOut(BaseModel):
    """One asset's health trend, projected maintenance-threshold crossing and RUL (``GET /maintenance``)."""

    asset: str
    health_index: float | None  # 0 = healthy baseline, 1 = maintenance threshold (can exceed 1)
    trend: float | None  # health index change per hour; None until the trend has enough points
    time_to_threshold_s: float | None  # None when no crossing is projected
    time_to_threshold_low_s: float | None
    time_to_threshold_high_s: float | None  # also None when the band is unbounded (slope may be <= 0)
    rul_s: float | None = None  # remaining useful life from a run-to-failure model; None without one
    rul_low_s: float | None = None  # its interval (the model's nominal coverage, 80 % by default)
    rul_high_s: float | None = None
    model: str  # "health-trend", or "rul:<model directory name>" when a RUL prediction is shown
    updated_at: datetime  # event time of the asset's latest scored row (or latest RUL prediction)
