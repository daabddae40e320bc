"""API models: inbound (validated query parameters) and outbound (the wire shape, decoupled from `Alert`)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

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
    kind: Literal["anomaly", "maintenance", "sensor_fault", "stale_data"] | None = None
    severity: Literal["warning", "critical"] | None = None
    tag: str | None = Field(
        default=None,
        max_length=260,
        pattern=r"^[^:\x00]{1,128}:[^\x00]{0,128}$",
        description="NAME:VALUE: only alerts carrying this tag (line:L2, site:basel)",
    )
    since: str | None = Field(
        default=None,
        description="Only alerts active at or after this instant: ISO-8601 with a zone "
        "(2024-05-01T12:00:00Z) or epoch seconds (1714564800.5).",
    )
    until: str | None = Field(
        default=None, description="Only alerts that started at or before this instant (same forms as since)."
    )
    limit: int = Field(default=1000, ge=1, le=10_000)
    acknowledged: bool | None = Field(default=None, description="true: acknowledged only; false: still to acknowledge")
    updated_since: str | None = Field(
        default=None,
        description="Only alerts changed (by the detector or an operator) at or after this wall-clock instant, "
        "oldest change first: a poller passes the updated_at of the last alert it has seen.",
    )
    cursor: str | None = Field(
        default=None,
        max_length=64,
        description="Where the previous page ended: its X-Next-Cursor header (sent when a page is full).",
    )


Comment = Annotated[str, Field(min_length=1, max_length=2000)]


class AcknowledgeIn(BaseModel):
    """Body of ``POST /alerts/{id}/ack``."""

    model_config = ConfigDict(extra="forbid")
    comment: Comment | None = None


class ShelveIn(BaseModel):
    """Body of ``POST /alerts/{id}/shelve``: for how long (``hours``) or until when (``until``), and why."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    hours: float | None = Field(default=None, gt=0, le=720, description="shelve for this long (at most 30 days)")
    until: str | None = Field(default=None, description="or until this instant: ISO-8601 with a zone or epoch seconds")


class CommentIn(BaseModel):
    """Body of ``POST /alerts/{id}/comment`` (and, optional, of ``/unshelve``)."""

    model_config = ConfigDict(extra="forbid")
    comment: Comment


class UnshelveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Comment | None = None


class AlertFeedbackIn(BaseModel):
    """Body of ``POST /alerts/{id}/feedback``: the operator's verdict on the whole alert."""

    model_config = ConfigDict(extra="forbid")
    verdict: Literal["false_alarm", "true_fault", "known_cause"] = Field(
        description="false_alarm: normal running the baseline never showed (learned as normal); true_fault: a "
        "fault (never learned); known_cause: real, of a known benign cause (recorded only)"
    )
    comment: Comment | None = None


class FeedbackIn(BaseModel):
    """Body of ``POST /assets/{asset}/feedback``: an operator's verdict on the asset's alert rows in a period."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)  # epoch seconds as a JSON number too

    verdict: Literal["false_alarm", "true_fault"]
    start: str = Field(description="first instant of the period: epoch seconds or ISO-8601 with a zone")
    end: str = Field(description="last instant of the period, as start")


# -- outbound --------------------------------------------------------------------------------------


class FieldProblemOut(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ProblemOut(BaseModel):
    """A 422: FastAPI's list of field problems, or the one line of the API's own input checks (an
    instant, a cursor, an asset name, a shelving time)."""

    detail: str | list[FieldProblemOut]


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
    tags: dict[str, str] = Field(description="the asset's tags when the alert opened: topic segments and asset_tags")
    acknowledged_at: datetime | None = Field(description="when an operator acknowledged it (wall clock)")
    acknowledged_by: str | None = Field(description="the API key's name, or 'anonymous' without keys")
    needs_acknowledgement: bool = Field(
        description="not acknowledged yet: an alert that resolved by itself stays to be acknowledged (ISA-18.2)"
    )
    shelved: bool = Field(description="silenced now by an operator, until shelved_until")
    shelved_until: datetime | None
    shelved_reason: str | None
    updated_at: datetime | None = Field(description="wall clock of its last change, by the detector or an operator")

    @classmethod
    def from_alert(cls, alert: Alert, now_ns: int | None = None) -> AlertOut:
        assert alert.id is not None  # only stored alerts are served
        now_ns = time.time_ns() if now_ns is None else now_ns
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
            tags=dict(alert.tags),
            acknowledged_at=_when(alert.acknowledged_at_ns),
            acknowledged_by=alert.acknowledged_by,
            needs_acknowledgement=alert.acknowledged_at_ns is None,
            shelved=alert.shelved(now_ns),
            shelved_until=_when(alert.shelved_until_ns),
            shelved_reason=alert.shelved_reason,
            updated_at=_when(alert.updated_at_ns),
        )


def _when(ns: int | None) -> datetime | None:
    return None if ns is None else ns_to_datetime(ns)


class AlertActionOut(BaseModel):
    at: datetime
    actor: str
    action: str
    comment: str | None
    shelved_until: datetime | None


class AlertDetailOut(AlertOut):
    """``GET /alerts/{id}`` and the answer of every action on it: the alert and its history."""

    history: list[AlertActionOut] = Field(description="operators' actions, oldest first")


class AlertFeedbackOut(AlertDetailOut):
    """Answer of ``POST /alerts/{id}/feedback``: the alert, its history, and what the detector did."""

    rows: int = Field(description="the alert's rows the detector learned as normal or dropped for good; 0: none")
    detector: str = Field(description="what the detector did with the verdict, in words")


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
    # The operating regime the health index above was judged in; None when the asset has no regimes
    # (maintenance.operating_settings unset and no RUL model with several).
    regime: RegimeOut | None = None
    regimes: list[RegimeTrendOut] = []  # each regime's own health index and trend
    rows_between_regimes: int = 0  # verdicts of rows between operating points (ramps): in no regime's trend
    rul_regime: RegimeOut | None = None  # the regime the RUL model judged its latest prediction in


class RegimeOut(BaseModel):
    """An operating regime: its number (per asset, in the order learned) and the settings at its centre."""

    id: int
    settings: dict[str, float]
    source: str  # "operating_settings" (learned per asset) or "rul:<model>" (the RUL model's regimes)


class RegimeTrendOut(BaseModel):
    """One regime's health index and trend (the same fields as the asset's, for that regime alone)."""

    regime: int
    health_index: float | None
    trend: float | None
    time_to_threshold_s: float | None
    time_to_threshold_low_s: float | None
    time_to_threshold_high_s: float | None


class StandingAlertOut(BaseModel):
    id: int
    asset: str
    kind: str
    started_at: datetime
    open_hours: float


class ChatteringOut(BaseModel):
    asset: str
    kind: str
    alerts_within_60s: int


class BadActorOut(BaseModel):
    asset: str
    alerts: int
    share: float


class AlarmKpisOut(BaseModel):
    """``GET /alarm-kpis``: the alarm-management figures of a period (alerts.kpis has the definitions)."""

    since: datetime
    until: datetime
    alerts: int = Field(description="alerts started in the period")
    assets: int = Field(description="assets that raised them")
    by_kind: dict[str, int]
    per_hour: float = Field(description="alerts started per hour, the whole site")
    per_asset_per_hour: dict[str, float]
    peak_10min: int = Field(description="most alerts started within any 10 minutes")
    peak_10min_start: datetime | None
    flood_periods: int = Field(description="10-minute periods with more than 10 alerts started")
    flood_share: float = Field(description="their share of the period's 10-minute periods")
    chattering: list[ChatteringOut] = Field(description="asset and kind with 3 or more alerts within 60 s")
    fleeting: int = Field(description="alerts anomalous for under 10 s")
    standing: list[StandingAlertOut] = Field(description="alerts open for more than 24 h at the period's end")
    bad_actors: list[BadActorOut] = Field(description="the 10 assets with most alerts")
    top10_share: float = Field(description="share of all alerts the 10 assets with most raised")
    marked_false_alarm: int = Field(description="alerts of the period an operator marked a false alarm")
    false_alarm_share: float = Field(description="their share of the period's alerts")
    targets: dict[str, str] = Field(description="ISA-18.2 / EEMUA 191 targets for one operator console")
    complete: bool = Field(description="false when more alerts matched than one request reads (100,000)")


class AssetOut(BaseModel):
    """One asset as ``GET /assets`` shows it: its state, baseline, latest verdict and model."""

    asset: str
    state: Literal["learning", "normal", "alarm", "stopped"]
    learned: bool = Field(description="whether its baseline is learned")
    baseline_rows: int = Field(
        description="rows the baseline learns, or learned: baseline_rows, more where it saw a sensor move "
        "one way only and went on (detector.baseline_extensions)"
    )
    baseline_rows_seen: int = Field(description="of those, learned so far")
    alarm_enter: float | None = Field(description="calibrated probability the alarm enters at")
    last_row_at: datetime | None = Field(description="event time of its latest complete row")
    probability: float | None = Field(description="calibrated anomaly probability of that row (null while learning)")
    anomaly: bool
    top_sensors: list[SensorContributionOut] = Field(description="what drives the latest row, while in alarm")
    unseen_operating_point: bool
    sensors: list[str]
    drifting_sensors: list[str]
    stale_sensors: list[str]
    detector: str
    features: list[str]
    window_s: float | None = Field(description="feature window, fixed when the baseline is learned")
    refits: int
    in_memory: bool = Field(
        description="false: idle for detector.evict_idle_after_s, shown as it was then; its model comes back "
        "from model_dir with its next reading"
    )

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> AssetOut:
        ts = view["last_row_at_ns"]
        fields = {k: v for k, v in view.items() if k not in ("last_row_at_ns", "top_sensors")}
        sensors = [SensorContributionOut.from_contribution(Contribution(**c)) for c in view["top_sensors"]]
        return cls(**fields, last_row_at=None if ts is None else ns_to_datetime(ts), top_sensors=sensors)


class ScorePointOut(BaseModel):
    at: datetime
    score: float
    probability: float
    anomaly: bool


class ReadingsOut(BaseModel):
    """``GET /assets/{asset}/readings``: the asset's recent aligned rows, oldest first."""

    asset: str
    sensors: list[str] = Field(description="the order of each row's values")
    points: list[ReadingRowOut]

    @classmethod
    def from_rows(cls, asset: str, rows: dict[str, Any]) -> ReadingsOut:
        points = [
            ReadingRowOut(at=ns_to_datetime(ts), values=values)
            for ts, values in zip(rows["ts_ns"], rows["values"], strict=True)
        ]
        return cls(asset=asset, sensors=list(rows["sensors"]), points=points)


class ReadingRowOut(BaseModel):
    at: datetime
    values: list[float | None] = Field(description="each sensor's value, in `sensors` order; null where missing")


class ScoresOut(BaseModel):
    """``GET /assets/{asset}/scores``: the asset's recent scored rows, oldest first."""

    asset: str
    points: list[ScorePointOut]

    @classmethod
    def from_points(cls, asset: str, points: list[dict[str, Any]]) -> ScoresOut:
        return cls(
            asset=asset,
            points=[
                ScorePointOut(
                    at=ns_to_datetime(p["ts_ns"]), score=p["score"], probability=p["probability"], anomaly=p["anomaly"]
                )
                for p in points
            ],
        )
