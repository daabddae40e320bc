"""Turns the detector's per-row verdicts into alerts that open, escalate and resolve.

Every decision uses event time (`Verdict.ts_ns`), never the wall clock, so replaying a log or
running a backtest produces exactly the alerts a live run would have produced.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Final, Literal

from alerts.model import (
    KIND_ANOMALY,
    KIND_MAINTENANCE,
    SEVERITY_CRITICAL,
    SEVERITY_WARNING,
    STATE_RESOLVED,
    Alert,
)
from alerts.store import AlertStore
from detector.health import MaintenanceForecast
from detector.types import Contribution, Verdict
from telemetry.counters import Counters

log = logging.getLogger(__name__)

# Coalescing window for updates of an open alert: a sustained anomaly at 10-100 Hz must not turn
# into 10-100 database writes per second per asset.
_UPDATE_INTERVAL_NS: Final = 1_000_000_000

EventKind = Literal["opened", "updated", "resolved"]
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
    ) -> None:
        if resolve_after_s < 0:
            raise ValueError(f"resolve_after_s must be >= 0, got {resolve_after_s}")
        if not 0.0 < critical_probability <= 1.0:
            raise ValueError(f"critical_probability must be in (0, 1], got {critical_probability}")
        self._store = store
        self._resolve_after_ns = round(resolve_after_s * 1e9)
        self._critical_probability = critical_probability
        self._counters = counters
        # The pipeline may score assets on several threads; one lock keeps per-asset state simple.
        self._lock = threading.Lock()
        self._open: dict[str, _Tracked] = self._reload()
        self._maintenance: dict[str, _Tracked] = self._reload(KIND_MAINTENANCE)

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
            tracked = self._open.get(verdict.asset)
            if tracked is None:
                return [self._open_alert(verdict)] if verdict.anomaly else []
            if verdict.anomaly:
                return self._absorb(tracked, verdict)
            return self._maybe_resolve(tracked, verdict)

    def flush(self) -> None:
        """Write changes still held back by coalescing; call on shutdown."""
        with self._lock:
            for tracked in [*self._open.values(), *self._maintenance.values()]:
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
            tracked = self._maintenance.get(forecast.asset)
            if tracked is None:
                alert = self._store.insert(
                    Alert.opened(
                        forecast.asset, KIND_MAINTENANCE, ts_ns, SEVERITY_WARNING, forecast.health, 0.0, sensors
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
            self._maybe_write(tracked, ts_ns)
            return [AlertEvent("updated", new)] if new.peak_score != old.peak_score else []

    def maintenance_not_due(self, asset: str, ts_ns: int) -> list[AlertEvent]:
        """No forecast is due for ``asset`` at ``ts_ns``: resolve its maintenance alert after the quiet period."""
        with self._lock:
            tracked = self._maintenance.get(asset)
            if tracked is None:
                return []
            if ts_ns - tracked.alert.last_anomalous_at_ns < self._resolve_after_ns:
                self._maybe_write(tracked, ts_ns)
                return []
            resolved = dataclasses.replace(tracked.alert, state=STATE_RESOLVED, resolved_at_ns=ts_ns)
            self._store.update(resolved)
            del self._maintenance[asset]
            self._counters.inc("plantwatch_maintenance_alerts_resolved_total")
            return [AlertEvent("resolved", resolved)]

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
            )
        )
        self._open[verdict.asset] = _Tracked(alert, written_at_ns=verdict.ts_ns)
        self._counters.inc("plantwatch_alerts_opened_total")
        return AlertEvent("opened", alert)

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

    def _maybe_resolve(self, tracked: _Tracked, verdict: Verdict) -> list[AlertEvent]:
        """A normal verdict while open: resolve once the quiet period has lasted long enough."""
        quiet_ns = verdict.ts_ns - tracked.alert.last_anomalous_at_ns
        if quiet_ns < self._resolve_after_ns:
            # Still within the hysteresis window; only flush coalesced changes that are due.
            self._maybe_write(tracked, verdict.ts_ns)
            return []
        resolved = dataclasses.replace(tracked.alert, state=STATE_RESOLVED, resolved_at_ns=verdict.ts_ns)
        self._store.update(resolved)
        del self._open[verdict.asset]
        self._counters.inc("plantwatch_alerts_resolved_total")
        return [AlertEvent("resolved", resolved)]

    # -- persistence ---------------------------------------------------------------------------

    def _maybe_write(self, tracked: _Tracked, now_ns: int) -> None:
        if tracked.dirty and now_ns - tracked.written_at_ns >= _UPDATE_INTERVAL_NS:
            self._write(tracked, now_ns)

    def _write(self, tracked: _Tracked, now_ns: int) -> None:
        # Stay dirty if the store raises, so the change is retried on the next opportunity.
        self._store.update(tracked.alert)
        tracked.written_at_ns = now_ns
        tracked.dirty = False

    def _severity_for(self, probability: float) -> str:
        return SEVERITY_CRITICAL if probability >= self._critical_probability else SEVERITY_WARNING


def _max_severity(a: str, b: str) -> str:
    """Severity only ever rises while an alert is open."""
    return SEVERITY_CRITICAL if SEVERITY_CRITICAL in (a, b) else SEVERITY_WARNING


def _named_only(drivers: tuple[str, ...]) -> tuple[Contribution, ...]:
    share = 1.0 / len(drivers) if drivers else 0.0
    return tuple(Contribution(d, share, "high", 0.0, 0.0, 0.0, "drift") for d in drivers)


def _ranked(contributions: tuple[Contribution, ...]) -> tuple[Contribution, ...]:
    """Biggest contributor first, so API clients can just take the head of the list."""
    return tuple(sorted(contributions, key=lambda c: c.share, reverse=True))
