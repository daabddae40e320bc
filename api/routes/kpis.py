"""GET /alarm-kpis: the alarm-management figures (ISA-18.2, EEMUA 191) of a period."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from alerts.kpis import HOUR, TARGETS, AlarmKpis, alarm_kpis
from alerts.model import MARKED_FALSE_ALARM, Alert
from api.auth import KEY_RESPONSES, READ
from api.deps import StoreDep
from api.instants import parse_instant
from api.schemas import AlarmKpisOut, BadActorOut, ChatteringOut, StandingAlertOut
from ingest.timestamps import INT64_MIN, ns_to_datetime

router = APIRouter(tags=["alerts"])

MAX_ALERTS = 100_000  # read per request; more make the figures a lower bound (complete: false)
DEFAULT_HOURS = 24

Instant = Annotated[
    str | None, Query(description="ISO-8601 with a zone or epoch seconds, event time like every alert time")
]


@router.get("/alarm-kpis", response_model=AlarmKpisOut, dependencies=[READ], responses=KEY_RESPONSES)
def alarm_kpis_of_period(store: StoreDep, since: Instant = None, until: Instant = None) -> AlarmKpisOut:
    """Alert rates, floods, chattering, fleeting and standing alerts and the bad actors of a period,
    beside the targets the standards give for one operator console. ``until`` defaults to now and
    ``since`` to 24 hours before it; alert times are the readings' own, so for alerts of a replayed
    log give both."""
    until_ns = time.time_ns() if until is None else parse_instant(until, "until")
    since_ns = max(until_ns - DEFAULT_HOURS * HOUR, INT64_MIN) if since is None else parse_instant(since, "since")
    if until_ns <= since_ns:
        raise HTTPException(status_code=422, detail="until: not after since")
    listed = store.list(since_ns=since_ns, limit=MAX_ALERTS)
    # Open alerts whose last row came before the period can still be standing in it.
    found: dict[int | None, Alert] = {a.id: a for a in (*listed, *store.open_alerts())}
    kpis = alarm_kpis(found.values(), since_ns, until_ns, store.marked(MARKED_FALSE_ALARM))
    return _out(kpis, complete=len(listed) < MAX_ALERTS)


# Figures that go out as alerts.kpis computes them, under the same names.
_AS_THEY_ARE = (
    "alerts",
    "assets",
    "by_kind",
    "per_hour",
    "per_asset_per_hour",
    "peak_10min",
    "flood_periods",
    "flood_share",
    "fleeting",
    "top10_share",
    "marked_false_alarm",
)


def _out(k: AlarmKpis, complete: bool) -> AlarmKpisOut:
    peak_start = k.peak_10min_start_ns
    standing = [
        StandingAlertOut(
            id=a.id or 0,
            asset=a.asset,
            kind=a.kind,
            started_at=ns_to_datetime(a.started_at_ns),
            open_hours=(k.until_ns - a.started_at_ns) / HOUR,
        )
        for a in k.standing
    ]
    return AlarmKpisOut(
        **{name: getattr(k, name) for name in _AS_THEY_ARE},
        since=ns_to_datetime(k.since_ns),
        until=ns_to_datetime(k.until_ns),
        peak_10min_start=None if peak_start is None else ns_to_datetime(peak_start),
        chattering=[ChatteringOut(asset=a, kind=kind, alerts_within_60s=n) for a, kind, n in k.chattering],
        standing=standing,
        bad_actors=[BadActorOut(asset=a, alerts=n, share=n / k.alerts) for a, n in k.bad_actors],
        false_alarm_share=k.marked_false_alarm / k.alerts if k.alerts else 0.0,
        targets=TARGETS,
        complete=complete,
    )
