"""Turns the detector's per-row verdicts into alerts that open, escalate and resolve.

Every decision uses event time (`Verdict.ts_ns`), never the wall clock, so replaying a log or
running a backtest produces exactly the alerts a live run would have produced.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

from alerts.model import (
    CONDITION_KINDS,
    KIND_ANOMALY,
    KIND_MAINTENANCE,
    KIND_STALE_DATA,
    REOPENED,
    RESOLVED_BY_OPERATOR,
    SEVERITY_CRITICAL,
    SEVERITY_WARNING,
    STATE_OPEN,
    STATE_RESOLVED,
    Alert,
    AlertAction,
)
from alerts.store import AlertStore
from detector.health import MaintenanceForecast
from detector.types import Contribution, Verdict
from telemetry.counters import Counters

log = logging.getLogger(__name__)

# Coalescing window for updates of an open alert: a sustained anomaly at 10-100 Hz must not turn
# into 10-100 database writes per second per asset.
_UPDATE_INTERVAL_NS: Final = 1_000_000_000
# A maintenance alert moves on the health trend's scale (its points are a minute apart), yet a due forecast
# extends it with every verdict: at 1 Hz that was a write per row, 85 % of a replay's time
# (bench/maintenance_regimes.py). One write a minute of event time; flush() writes the rest.
_MAINTENANCE_UPDATE_INTERVAL_NS: Final = 60 * _UPDATE_INTERVAL_NS

EventKind = Literal["opened", "updated", "resolved", "reopened"]
_NS_PER_S: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """Something notable happened to an alert; `alert` is its state right after the change."""

    kind: EventKind  # named like the consumers read it (plantwatch.service.alert_log)
    alert: Alert


@dataclass(slots=True)
class _Tracked:
    """An open alert plus the bookkeeping needed to coalesce its writes."""

    alert: Alert
    written_at_ns: int  # event time of the last store write
    dirty: bool = False  # the in-memory alert has changes the store has not seen yet


class AlertManager:
    """Owns the open anomaly alerts (at most one per asset) and persists them through a store.

    Maintenance alerts (``kind="maintenance"``) are tracked separately, also at most one open per asset:
    :meth:`observe_maintenance` opens or extends one while a forecast is due, :meth:`maintenance_not_due`
    resolves it once no forecast has been due for ``resolve_after_s`` of event time.
    """

    def __init__(
        self,
        store: AlertStore,
        *,
        resolve_after_s: float,
        critical_probability: float = 0.999,
        counters: Counters,
        reopen_within_s: float = 0.0,
        asset_tags: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        if resolve_after_s < 0:
            raise ValueError(f"resolve_after_s must be >= 0, got {resolve_after_s}")
        if not 0.0 < critical_probability <= 1.0:
            raise ValueError(f"critical_probability must be in (0, 1], got {critical_probability}")
        self._store = store
        self._resolve_after_ns = round(resolve_after_s * 1e9)
        # Chattering: an anomaly back this soon after its alert resolved by itself reopens that alert.
        self._reopen_within_ns = round(reopen_within_s * 1e9)
        self._resolved_lately: dict[str, Alert] = {}  # each asset's anomaly alert that resolved by itself
        # Tags an alert carries from its opening: the asset's topic segments (note_tags), under the
        # configured ones.
        self._configured_tags = {asset: dict(tags) for asset, tags in (asset_tags or {}).items()}
        self._topic_tags: dict[str, dict[str, str]] = {}
        self._critical_probability = critical_probability
        self._counters = counters
        # The pipeline may score assets on several threads; one lock keeps per-asset state simple.
        self._lock = threading.Lock()
        self._open: dict[str, _Tracked] = self._reload()
        self._maintenance: dict[str, _Tracked] = self._reload(KIND_MAINTENANCE)
        # Sensor health (sensor_fault, stale_data): at most one open per asset and kind.
        self._conditions: dict[str, dict[str, _Tracked]] = {kind: self._reload(kind) for kind in CONDITION_KINDS}
        # Each asset's sensors at fault now: anomalies they drive are theirs, not the process's.
        self._faulty: dict[str, frozenset[str]] = {}
        # Assets whose latest anomaly alert of before this start was looked up (_recall): from then on
        # _resolved_lately holds what this process saw.
        self._recalled: set[str] = set()
        # While rows a crash left unscored are scored again: (asset, kind) -> the event time up to
        # which the store already holds what the crashed process decided (begin_recovery).
        self._decided_until: dict[tuple[str, str], int] = {}
        # Within batched(): the thread whose coalesced writes wait for the batch's end, and those writes.
        self._batching: int | None = None
        self._held: dict[int, _Tracked] = {}

    def store_failing_s(self) -> float:
        """How long the store has been failing the write in hand (0 when it works; see alerts.retrying)."""
        since = getattr(self._store, "failing_since_ns", None)
        return max(time.time_ns() - since, 0) / 1e9 if since is not None else 0.0

    def begin_recovery(self) -> None:
        """Rows stored before a crash are about to be scored again, after the checkpoint they follow.

        The crashed process already opened, extended and resolved alerts for some of them, and those are
        in the store: until :meth:`end_recovery`, a verdict stamped at or before the latest activity of
        its asset's alerts of a kind changes nothing (no second alert for one episode), while a later one
        is what the crash cut short, and is handled as always.
        """
        with self._lock:
            self._decided_until = dict(self._store.latest_activity())

    def _recall(self, asset: str) -> Alert | None:
        """The asset's latest anomaly alert from before this start, if it resolved by itself (not closed
        by an operator): an anomaly back soon after it reopens it, as it would have before the restart,
        which held it in memory only. Looked up once per asset, at its first anomaly without an open alert."""
        self._recalled.add(asset)
        latest = self._store.list(asset=asset, kind=KIND_ANOMALY, limit=1)
        if not latest or latest[0].state != STATE_RESOLVED or latest[0].id is None:
            return None
        closed = any(a.action == RESOLVED_BY_OPERATOR for a in self._store.history(latest[0].id))
        return None if closed else latest[0]

    def end_recovery(self) -> None:
        with self._lock:
            self._decided_until = {}

    def _decided(self, asset: str, kind: str, ts_ns: int) -> bool:
        until = self._decided_until.get((asset, kind))
        return until is not None and ts_ns <= until

    def _reload(self, kind: str = KIND_ANOMALY) -> dict[str, _Tracked]:
        """Continue the alerts a previous process left open instead of opening duplicates."""
        tracked: dict[str, _Tracked] = {}
        # open_alerts() is newest first; keep the newest if a crash ever left two open per asset.
        for alert in reversed(self._store.open_alerts()):
            if alert.kind == kind:
                tracked[alert.asset] = _Tracked(alert, written_at_ns=alert.last_anomalous_at_ns)
        if tracked:
            log.info("continuing %d open %s alert(s) from the store", len(tracked), kind)
        return tracked

    def note_tags(self, asset: str, tags: Mapping[str, str]) -> None:
        """The tags of the asset's latest readings (its topic's segments other than asset and sensor)."""
        with self._lock:
            self._topic_tags[asset] = dict(tags)

    def _tags_of(self, asset: str) -> tuple[tuple[str, str], ...]:
        merged = self._topic_tags.get(asset, {}) | self._configured_tags.get(asset, {})
        return tuple(sorted(merged.items()))

    def open_alerts(self) -> list[Alert]:
        """The current in-memory view, including changes not yet written (coalesced)."""
        with self._lock:
            return [t.alert for t in self._open.values()]

    def observe(self, verdict: Verdict) -> list[AlertEvent]:
        """Feed one verdict; returns the events it caused (usually none)."""
        if verdict.warming_up:
            # The baseline is still being learned: its verdicts say nothing about the asset.
            return []
        with self._lock:
            if self._decided(verdict.asset, KIND_ANOMALY, verdict.ts_ns):
                return []
            anomaly = verdict.anomaly and not self._driven_by_faulty_sensor(verdict)
            tracked = self._open.get(verdict.asset)
            if tracked is None:
                if not anomaly:
                    return []
                return [self._reopen(verdict) or self._open_alert(verdict)]
            if anomaly:
                return self._absorb(tracked, verdict)
            return self._maybe_resolve(verdict)

    def _driven_by_faulty_sensor(self, verdict: Verdict) -> bool:
        """Whether the row's biggest contributor is a sensor at fault: a stuck or impossible reading
        makes the model's rows unusual, which is the sensor_fault alert's news, not a process anomaly."""
        faulty = self._faulty.get(verdict.asset)
        if not faulty or not verdict.contributions:
            return False
        return max(verdict.contributions, key=lambda c: c.share).sensor in faulty

    def close(self, alert_id: int) -> Alert | None:
        """An operator resolved the alert: it is stored resolved at its last anomalous row and no longer
        tracked, so the asset's next anomalous row opens a new alert. None when no open alert here has
        this id."""
        with self._lock:
            for by_asset in self._tracked_maps():
                for asset, tracked in by_asset.items():
                    if tracked.alert.id == alert_id:
                        return self._resolve(by_asset, asset, tracked.alert.last_anomalous_at_ns).alert
        return None

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Within, this thread's coalesced updates of open alerts wait for the end and are written
        in one transaction. In an alert storm every asset's alert is updated in every batch of the
        detector, and one commit each took most of its time; openings, resolutions and reopenings
        are still written at once."""
        self._batching = threading.get_ident()
        try:
            yield
        finally:
            self._batching = None
            with self._lock:
                self._write_held()

    def _write_held(self) -> None:
        """The updates batched() held back, of the alerts still tracked (a resolved one was written
        resolved, and must stay so); they stay dirty, to be written again, if the store raises."""
        tracked = {id(t) for t in self._all_tracked()}
        held = [t for key, t in self._held.items() if t.dirty and key in tracked]
        self._held = {}
        if held:
            self._store.update_many([t.alert for t in held])
            for t in held:
                t.dirty = False

    def _tracked_maps(self) -> list[dict[str, _Tracked]]:
        return [self._open, self._maintenance, *self._conditions.values()]

    def _all_tracked(self) -> list[_Tracked]:
        return [t for by_asset in self._tracked_maps() for t in by_asset.values()]

    def flush(self) -> None:
        """Write changes still held back by coalescing; call on shutdown."""
        with self._lock:
            for tracked in self._all_tracked():
                if tracked.dirty:
                    self._write(tracked, tracked.written_at_ns)

    # -- maintenance ---------------------------------------------------------------------------

    def observe_maintenance(
        self, forecast: MaintenanceForecast, top_sensors: tuple[Contribution, ...] | None = None
    ) -> list[AlertEvent]:
        """A due forecast: open the asset's maintenance alert, or extend the open one.

        Severity is always "warning". ``peak_score`` is the highest health index seen (1 = at the maintenance
        threshold); ``peak_probability`` does not apply and stays 0. ``top_sensors`` defaults to the forecast's
        drivers with no figures attached (share split evenly, value and expected range 0).
        """
        ts_ns = round(forecast.ts * _NS_PER_S)
        sensors = top_sensors if top_sensors is not None else _named_only(forecast.drivers)
        with self._lock:
            if self._decided(forecast.asset, KIND_MAINTENANCE, ts_ns):
                return []
            tracked = self._maintenance.get(forecast.asset)
            if tracked is None:
                alert = self._store.insert(
                    Alert.opened(
                        forecast.asset,
                        KIND_MAINTENANCE,
                        ts_ns,
                        SEVERITY_WARNING,
                        forecast.health,
                        0.0,
                        sensors,
                        tags=self._tags_of(forecast.asset),
                    )
                )
                self._maintenance[forecast.asset] = _Tracked(alert, written_at_ns=ts_ns)
                self._counters.inc("plantwatch_maintenance_alerts_opened_total")
                return [AlertEvent("opened", alert)]
            old = tracked.alert
            new = dataclasses.replace(old, last_anomalous_at_ns=max(old.last_anomalous_at_ns, ts_ns))
            if forecast.health > old.peak_score:
                new = dataclasses.replace(new, peak_score=forecast.health, top_sensors=sensors)
            if new == old:
                return []
            tracked.alert = new
            tracked.dirty = True
            self._maybe_write(tracked, ts_ns, _MAINTENANCE_UPDATE_INTERVAL_NS)
            return [AlertEvent("updated", new)] if new.peak_score != old.peak_score else []

    def maintenance_not_due(self, asset: str, ts_ns: int) -> list[AlertEvent]:
        """No forecast is due for ``asset`` at ``ts_ns``: resolve its maintenance alert after the quiet period."""
        with self._lock:
            if asset not in self._maintenance or self._decided(asset, KIND_MAINTENANCE, ts_ns):
                return []
            return self._resolve_when_quiet(
                self._maintenance, asset, ts_ns, "plantwatch_maintenance_alerts_resolved_total"
            )

    # -- sensor health -------------------------------------------------------------------------

    def observe_condition(
        self, asset: str, kind: str, ts_ns: int, sensors: tuple[Contribution, ...], since_ns: int | None = None
    ) -> list[AlertEvent]:
        """A sensor-health condition of ``asset`` as it stands at ``ts_ns`` (event time): ``kind``
        ``sensor_fault`` or ``stale_data``, ``sensors`` the ones at fault now (empty: none), at fault
        since ``since_ns`` (stuck, or silent, since then: a new alert starts there; default ``ts_ns``).

        Opens the asset's alert of that kind, or extends it (its top sensors every sensor at fault
        during it, the latest figures first), or resolves it once none has been at fault for
        ``resolve_after_s``. A stale_data alert resolves the asset's open anomaly alert: its rows
        cannot be judged while a sensor is silent, and it would otherwise stay open for good. A
        sensor_fault alert resolves the open anomaly alert its faulty sensors drive (the model saw
        the sensor stick before the watch could call it stuck), and while it is open, anomalous rows
        those sensors drive open none.
        """
        if kind not in CONDITION_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CONDITION_KINDS)}, got {kind!r}")
        with self._lock:
            if kind != KIND_STALE_DATA:
                self._faulty[asset] = frozenset(c.sensor for c in sensors)
            if self._decided(asset, kind, ts_ns):
                return []
            tracked = self._conditions[kind].get(asset)
            if not sensors:
                return [] if tracked is None else self._resolve_when_quiet(self._conditions[kind], asset, ts_ns)
            events = self._condition_present(kind, asset, tracked, ts_ns, sensors, since_ns)
            anomaly = self._open.get(asset)
            if anomaly is not None and (kind == KIND_STALE_DATA or _top_sensor(anomaly.alert) in self._faulty[asset]):
                events.append(self._resolve(self._open, asset, ts_ns, "plantwatch_alerts_resolved_total"))
            return events

    def _condition_present(
        self,
        kind: str,
        asset: str,
        tracked: _Tracked | None,
        ts_ns: int,
        sensors: tuple[Contribution, ...],
        since_ns: int | None,
    ) -> list[AlertEvent]:
        if tracked is None:
            # peak_score: the most sensors at fault at once; no probability applies.
            start = ts_ns if since_ns is None else min(since_ns, ts_ns)
            opened = Alert.opened(
                asset, kind, start, SEVERITY_WARNING, len(sensors), 0.0, sensors, tags=self._tags_of(asset)
            )
            alert = self._store.insert(dataclasses.replace(opened, last_anomalous_at_ns=ts_ns))
            self._conditions[kind][asset] = _Tracked(alert, written_at_ns=ts_ns)
            self._counters.inc("plantwatch_sensor_alerts_opened_total", kind=kind)
            return [AlertEvent("opened", alert)]
        old = tracked.alert
        named = {c.sensor for c in sensors}
        merged = sensors + tuple(c for c in old.top_sensors if c.sensor not in named)
        new = dataclasses.replace(
            old,
            last_anomalous_at_ns=max(old.last_anomalous_at_ns, ts_ns),
            top_sensors=merged,
            peak_score=max(old.peak_score, len(sensors)),
        )
        if new == old:
            return []
        tracked.alert = new
        tracked.dirty = True
        self._maybe_write(tracked, ts_ns)
        return [AlertEvent("updated", new)] if len(merged) != len(old.top_sensors) else []

    def _resolve_when_quiet(
        self, tracked_by_asset: dict[str, _Tracked], asset: str, ts_ns: int, counter: str = ""
    ) -> list[AlertEvent]:
        """The asset's alert of ``tracked_by_asset`` was not anomalous at ``ts_ns``: resolve it once the
        quiet period (``resolve_after_s``) has lasted, else only flush coalesced changes that are due."""
        tracked = tracked_by_asset[asset]
        if ts_ns - tracked.alert.last_anomalous_at_ns < self._resolve_after_ns:
            self._maybe_write(tracked, ts_ns)
            return []
        return [self._resolve(tracked_by_asset, asset, ts_ns, counter)]

    def _resolve(self, tracked_by_asset: dict[str, _Tracked], asset: str, ts_ns: int, counter: str = "") -> AlertEvent:
        tracked = tracked_by_asset.pop(asset)
        resolved = dataclasses.replace(
            tracked.alert, state=STATE_RESOLVED, resolved_at_ns=max(ts_ns, tracked.alert.last_anomalous_at_ns)
        )
        self._store.update(resolved)
        if counter:
            self._counters.inc(counter)
        return AlertEvent("resolved", resolved)

    # -- transitions ---------------------------------------------------------------------------

    def _open_alert(self, verdict: Verdict) -> AlertEvent:
        alert = self._store.insert(
            Alert.opened(
                verdict.asset,
                KIND_ANOMALY,
                verdict.ts_ns,
                self._severity_for(verdict.probability),
                verdict.score,
                verdict.probability,
                _ranked(verdict.contributions),
                verdict.unseen_operating_point,
                tags=self._tags_of(verdict.asset),
            )
        )
        self._open[verdict.asset] = _Tracked(alert, written_at_ns=verdict.ts_ns)
        self._counters.inc("plantwatch_alerts_opened_total")
        return AlertEvent("opened", alert)

    def _reopen(self, verdict: Verdict) -> AlertEvent | None:
        """The asset's anomaly alert resolved by itself within ``reopen_within_s`` before this anomalous
        row: reopen it, one alert for the episode instead of a new one each time it chatters back.
        Recorded in its history; an acknowledgement stays."""
        if self._reopen_within_ns <= 0:
            return None
        last = self._resolved_lately.pop(verdict.asset, None)
        if last is None and verdict.asset not in self._recalled:
            last = self._recall(verdict.asset)
        if last is None or last.resolved_at_ns is None or verdict.ts_ns - last.resolved_at_ns > self._reopen_within_ns:
            return None
        assert last.id is not None  # a stored alert
        gap_s = (verdict.ts_ns - last.resolved_at_ns) / 1e9
        reopened = dataclasses.replace(last, state=STATE_OPEN, resolved_at_ns=None)
        self._store.update(reopened)
        note = f"anomalous again {gap_s:.0f} s after it resolved (alerts.reopen_within_s)"
        self._store.act(AlertAction(last.id, time.time_ns(), "plantwatch", REOPENED, note))
        tracked = self._open[verdict.asset] = _Tracked(reopened, written_at_ns=verdict.ts_ns)
        self._absorb(tracked, verdict)
        self._counters.inc("plantwatch_alerts_reopened_total")
        return AlertEvent("reopened", tracked.alert)

    def _absorb(self, tracked: _Tracked, verdict: Verdict) -> list[AlertEvent]:
        """An anomalous verdict while open: extend the alert and raise its peak/severity."""
        old = tracked.alert
        new = dataclasses.replace(
            old,
            # max(): a late, out-of-order row must not move the alert's activity backwards.
            last_anomalous_at_ns=max(old.last_anomalous_at_ns, verdict.ts_ns),
            peak_probability=max(old.peak_probability, verdict.probability),
            severity=_max_severity(old.severity, self._severity_for(verdict.probability)),
        )
        # The peak row is the highest *score*: probabilities saturate near 1 and stop ranking rows.
        if verdict.score > old.peak_score:
            new = dataclasses.replace(
                new,
                peak_score=verdict.score,
                top_sensors=_ranked(verdict.contributions),
                unseen_operating_point=verdict.unseen_operating_point,
            )
        if new == old:
            return []
        tracked.alert = new
        tracked.dirty = True
        self._maybe_write(tracked, verdict.ts_ns)
        notable = (new.peak_score, new.peak_probability, new.severity) != (
            old.peak_score,
            old.peak_probability,
            old.severity,
        )
        # A bare last_anomalous_at bump is persisted (coalesced) but is not news to subscribers.
        return [AlertEvent("updated", new)] if notable else []

    def _maybe_resolve(self, verdict: Verdict) -> list[AlertEvent]:
        """A normal verdict while open: resolve once the quiet period has lasted long enough."""
        events = self._resolve_when_quiet(self._open, verdict.asset, verdict.ts_ns, "plantwatch_alerts_resolved_total")
        if events and self._reopen_within_ns > 0:
            self._resolved_lately[verdict.asset] = events[0].alert
        return events

    # -- persistence ---------------------------------------------------------------------------

    def _maybe_write(self, tracked: _Tracked, now_ns: int, interval_ns: int = _UPDATE_INTERVAL_NS) -> None:
        if tracked.dirty and now_ns - tracked.written_at_ns >= interval_ns:
            self._write(tracked, now_ns)

    def _write(self, tracked: _Tracked, now_ns: int) -> None:
        if self._batching == threading.get_ident():
            self._held[id(tracked)] = tracked  # written at the batch's end (batched()), dirty until then
        else:
            # Stay dirty if the store raises, so the change is retried on the next opportunity.
            self._store.update(tracked.alert)
            tracked.dirty = False
        tracked.written_at_ns = now_ns

    def _severity_for(self, probability: float) -> str:
        return SEVERITY_CRITICAL if probability >= self._critical_probability else SEVERITY_WARNING


def _max_severity(a: str, b: str) -> str:
    """Severity only ever rises while an alert is open."""
    return SEVERITY_CRITICAL if SEVERITY_CRITICAL in (a, b) else SEVERITY_WARNING


def _top_sensor(alert: Alert) -> str | None:
    return alert.top_sensors[0].sensor if alert.top_sensors else None


def _named_only(drivers: tuple[str, ...]) -> tuple[Contribution, ...]:
    share = 1.0 / len(drivers) if drivers else 0.0
    return tuple(Contribution(d, share, "high", 0.0, 0.0, 0.0, "drift") for d in drivers)


def _ranked(contributions: tuple[Contribution, ...]) -> tuple[Contribution, ...]:
    """Biggest contributor first, so API clients can just take the head of the list."""
    return tuple(sorted(contributions, key=lambda c: c.share, reverse=True))
