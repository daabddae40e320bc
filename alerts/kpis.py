"""Alarm-management figures of a period: what ISA-18.2 and EEMUA 191 ask a site to watch.

An alert counts in the period when it *started* in ``[since, until]`` (event time, as every alert
time). The figures, with the standards' definitions as this service can apply them:

* **rates**: alerts per hour for the site and per asset; the peak count started in any 10 minutes
  (a sliding window over the start times) and when that window began;
* **floods**: 10-minute periods (fixed, from ``since``) in which more than 10 alerts started, and
  their share of the period's 10-minute periods (ISA-18.2: a flood starts at 10 alarms in 10
  minutes per operator);
* **chattering**: asset and kind pairs with 3 or more alerts started within 60 seconds (ISA-18.2
  TR5's rule of thumb). The lifecycle resolves an alert only after ``alerts.resolve_after_s`` of
  normal rows, so with the default 60 s none can chatter; a shorter setting can;
* **fleeting**: alerts whose anomalous span (first to last anomalous row) was under 10 seconds:
  gone before an operator could respond;
* **standing**: alerts still open that started more than 24 hours before ``until``;
* **bad actors**: the assets with most alerts, and the share of all alerts the top 10 raised
  (EEMUA 191: the top 10 usually raise most of a site's alarms, and fixing them pays most);
* **false alarms**: the alerts an operator marked a false alarm (``POST /alerts/{id}/feedback``), and
  their share: what the detector still gets wrong, in the plant's own judgement.

The targets the standards give for one operator's console are listed beside them
(:data:`TARGETS`); plantwatch does not know how many operators share a site, so they compare with
the site's figures only where one operator watches it.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from alerts.model import STATE_OPEN, Alert

S = 1_000_000_000
MINUTE = 60 * S
HOUR = 3600 * S

FLOOD_WINDOW_NS = 10 * MINUTE
FLOOD_ALERTS = 10  # more than this many started in a 10-minute period: a flood
CHATTER_WINDOW_NS = 60 * S
CHATTER_ALERTS = 3  # this many of one asset and kind within CHATTER_WINDOW_NS: chattering
FLEETING_NS = 10 * S
STANDING_NS = 24 * HOUR
TOP = 10

# ISA-18.2 (2016) Table 8 / EEMUA 191 (2013) targets per operator console.
TARGETS: dict[str, str] = {
    "per_hour": "about 6 acceptable, up to 12 manageable (ISA-18.2: 150 a day likely acceptable, 300 maximum)",
    "peak_10min": "at most 10",
    "flood_share": "under 1 % of 10-minute periods",
    "chattering": "none",
    "standing": "under 5, each with a plan",
    "top10_share": "about 1-5 % of all alarms",
}


@dataclass(frozen=True, slots=True)
class AlarmKpis:
    since_ns: int
    until_ns: int
    alerts: int
    assets: int
    per_hour: float
    per_asset_per_hour: dict[str, float]
    peak_10min: int
    peak_10min_start_ns: int | None
    flood_periods: int
    periods: int
    flood_share: float
    chattering: list[tuple[str, str, int]]  # (asset, kind, most alerts within the chatter window)
    fleeting: int
    standing: list[Alert]
    bad_actors: list[tuple[str, int]]  # (asset, alerts), most first
    top10_share: float
    by_kind: dict[str, int] = field(default_factory=dict)
    marked_false_alarm: int = 0


def alarm_kpis(
    alerts: Iterable[Alert], since_ns: int, until_ns: int, false_alarms: Collection[int] = frozenset()
) -> AlarmKpis:
    """The figures of ``alerts`` (any superset of those started in the period, and the open ones);
    ``false_alarms``: ids of alerts an operator marked a false alarm."""
    if until_ns <= since_ns:
        raise ValueError("until must be after since")
    every = list(alerts)
    started = sorted((a for a in every if since_ns <= a.started_at_ns <= until_ns), key=lambda a: a.started_at_ns)
    hours = (until_ns - since_ns) / HOUR
    per_asset = Counter(a.asset for a in started)
    peak, peak_start = _peak(started)
    bins = Counter((a.started_at_ns - since_ns) // FLOOD_WINDOW_NS for a in started)
    periods = max(1, -(-(until_ns - since_ns) // FLOOD_WINDOW_NS))
    floods = sum(1 for n in bins.values() if n > FLOOD_ALERTS)
    ranked = per_asset.most_common()
    top10 = sum(n for _, n in ranked[:TOP])
    return AlarmKpis(
        since_ns=since_ns,
        until_ns=until_ns,
        alerts=len(started),
        assets=len(per_asset),
        per_hour=len(started) / hours,
        per_asset_per_hour={asset: n / hours for asset, n in sorted(per_asset.items())},
        peak_10min=peak,
        peak_10min_start_ns=peak_start,
        flood_periods=floods,
        periods=periods,
        flood_share=floods / periods,
        chattering=_chattering(started),
        fleeting=sum(1 for a in started if a.last_anomalous_at_ns - a.started_at_ns < FLEETING_NS),
        standing=sorted(
            (a for a in every if a.state == STATE_OPEN and a.started_at_ns < until_ns - STANDING_NS),
            key=lambda a: a.started_at_ns,
        ),
        bad_actors=ranked[:TOP],
        top10_share=top10 / len(started) if started else 0.0,
        by_kind=dict(sorted(Counter(a.kind for a in started).items())),
        marked_false_alarm=sum(1 for a in started if a.id in false_alarms),
    )


def _peak(started: list[Alert]) -> tuple[int, int | None]:
    """Most alerts started within any 10 minutes, and the first start of that window."""
    times = [a.started_at_ns for a in started]
    best, best_start = 0, None
    for i, t in enumerate(times):
        n = bisect.bisect_left(times, t + FLOOD_WINDOW_NS, lo=i) - i  # starts in [t, t + 10 min)
        if n > best:
            best, best_start = n, t
    return best, best_start


def _chattering(started: list[Alert]) -> list[tuple[str, str, int]]:
    by_source: dict[tuple[str, str], list[int]] = defaultdict(list)
    for a in started:
        by_source[(a.asset, a.kind)].append(a.started_at_ns)
    out = []
    for (asset, kind), times in sorted(by_source.items()):
        most = max(bisect.bisect_left(times, t + CHATTER_WINDOW_NS, lo=i) - i for i, t in enumerate(times))
        if most >= CHATTER_ALERTS:
            out.append((asset, kind, most))
    return out
