"""The detector stage: one :class:`AssetMonitor` per asset; verdicts go to storage, alerts and maintenance."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alerts.lifecycle import AlertManager
from detector.health import MaintenanceForecast
from detector.monitor import REDISCOVER_AFTER, AssetMonitor
from detector.types import Verdict
from ingest.messages import Reading
from ingest.sink import Sink, SinkStopped
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.alert_log import log_alert_event, log_baseline_learned
from plantwatch.service.persistence import TRENDS_SAVE_INTERVAL_S, ModelPersistence
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

log = logging.getLogger(__name__)


class DetectorStage:
    """One :class:`AssetMonitor` per asset; verdicts go to storage and to the alert manager."""

    def __init__(
        self,
        upstream: queue.Queue[tuple[Reading, ...]],
        sink: Sink,
        alerts: AlertManager,
        detector_config: Callable[[str], dict[str, Any]],
        counters: Counters,
        *,
        health: StageHealth,
        stop: threading.Event,
        models: ModelPersistence | None = None,
        maintenance: MaintenanceTracker | None = None,
    ) -> None:
        self.upstream = upstream
        self.sink = sink
        self.alerts = alerts
        self.detector_config = detector_config
        self.models = models
        self.counters = counters
        self.health = health
        self.stop = stop
        self.maintenance = maintenance
        self.monitors: dict[str, AssetMonitor] = {}
        # Assets whose baseline an operator asked to relearn; the detector thread applies them,
        # so a monitor is only ever touched by that thread.
        self._relearn: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self._trends_saved_at = time.monotonic()
        if models is not None and maintenance is not None:
            models.restore_trends(maintenance)

    def _new_monitor(self, asset: str) -> AssetMonitor:
        monitor = AssetMonitor(asset, None, **self.detector_config(asset))
        if self.models is not None and not self.models.restore(monitor):
            self.counters.inc("plantwatch_model_restores_failed_total")
        self.monitors[asset] = monitor
        return monitor

    def request_relearn(self, asset: str, maintenance: bool = False) -> bool:
        """Forget ``asset``'s baseline before its next readings (False: no such asset here).

        ``maintenance=True``: the asset was overhauled, so its health trend and RUL history go too.
        """
        # An asset known only from its saved model (no readings since a restart) counts too.
        if asset not in self.monitors and not (self.models is not None and self.models.has(asset)):
            return False
        self._relearn.put((asset, maintenance))
        return True

    def _apply_relearn_requests(self) -> None:
        while True:
            try:
                asset, overhauled = self._relearn.get_nowait()
            except queue.Empty:
                return
            monitor = self.monitors.get(asset) or self._new_monitor(asset)
            monitor.reset()
            trends = self.maintenance if overhauled else None
            if trends is not None:
                trends.forget(asset)
            if self.models is not None:
                self.models.save(monitor)  # a restart must not bring the old baseline back
                if trends is not None:
                    self.models.save_trends(trends)
            self.counters.inc("plantwatch_baselines_relearned_total")
            log.warning(
                "baseline of %s forgotten on request%s: learning a new one from the next readings",
                asset,
                " (maintenance done: its health trend and RUL history start again)" if overhauled else "",
            )

    def save_models(self) -> None:
        if self.models is not None:
            for monitor in self.monitors.values():
                self.models.save(monitor)
            if self.maintenance is not None:
                self.models.save_trends(self.maintenance)

    def _save_trends_now_and_then(self) -> None:
        if self.models is None or self.maintenance is None:
            return
        if time.monotonic() - self._trends_saved_at >= TRENDS_SAVE_INTERVAL_S:
            self._trends_saved_at = time.monotonic()
            self.models.save_trends(self.maintenance)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                readings = self.upstream.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._process(readings)
                self._save_trends_now_and_then()
            except SinkStopped:
                return
            except Exception:  # a model bug must not stop ingestion; it is logged and counted
                self._count_detector_errors(1)
                log.exception("detector stage failed on a batch of %d readings", len(readings))

    def _process(self, readings: Sequence[Reading]) -> None:
        self._apply_relearn_requests()
        by_asset: dict[str, list[tuple[int, Mapping[str, float]]]] = {}
        for reading in readings:
            by_asset.setdefault(reading.asset, []).append((reading.ts_ns, reading.values))
        verdicts: list[Verdict] = []
        for asset, batch in by_asset.items():
            try:
                verdicts.extend(self._process_asset(asset, batch))
            except Exception:  # one asset's model failing must not starve the others in the batch
                self._count_detector_errors(1)
                log.exception("detector failed on %d readings of %s; the other assets go on", len(batch), asset)
        if not verdicts:
            return
        scored = [v for v in verdicts if not v.warming_up]
        self.counters.inc("plantwatch_rows_scored_total", len(scored))
        self.counters.inc("plantwatch_baseline_rows_total", len(verdicts) - len(scored))
        if scored:
            self.sink.write_verdicts(scored)
        for verdict in verdicts:
            for event in self.alerts.observe(verdict):
                log_alert_event(event)
            if self.maintenance is not None and not verdict.warming_up:
                self._track_maintenance(verdict)

    def _process_asset(self, asset: str, batch: list[tuple[int, Mapping[str, float]]]) -> list[Verdict]:
        monitor = self.monitors.get(asset) or self._new_monitor(asset)
        was_warm, refits, failures = monitor.is_warm, monitor.refits_, monitor.baseline_failures_
        left_out, rediscoveries = _left_out_counts(monitor), monitor.rediscoveries_
        unknown_names = monitor.aligner_.unknown_sensors_
        rows = monitor.align(batch)
        self._report_unknown_sensors(monitor, unknown_names)
        self._report_rediscovery(monitor, rediscoveries)
        rul = self.maintenance.rul if self.maintenance is not None else None
        if rul is not None and rows and monitor.sensor_names:
            # Aligned rows, so sensors published one per message reach the RUL model as whole rows.
            names = monitor.sensor_names
            made = rul.observe(asset, [(ts, dict(zip(names, row.tolist(), strict=True))) for ts, row in rows])
            if made is not None and not monitor.is_warm:
                # No scored verdicts yet to carry the RUL check: a failure due soon must not wait for them.
                self._check_rul_alone(asset, rows[-1][0])
        verdicts = monitor.process_rows(rows)
        for name, before, after in zip(_LEFT_OUT_COUNTERS, left_out, _left_out_counts(monitor), strict=True):
            if after > before:
                self.counters.inc(name, after - before)
        failed = monitor.baseline_failures_ - failures
        if failed:  # the monitor has dropped those baselines and learns again; say what to fix
            self._count_detector_errors(failed)
            log.error("%s%s", monitor.baseline_error_, f" ({failed} baselines in this batch)" if failed > 1 else "")
        if monitor.is_warm and not was_warm:
            log_baseline_learned(monitor)
        if self.models is not None and (monitor.is_warm != was_warm or monitor.refits_ != refits):
            self.models.save(monitor)  # a fresh baseline, or an adapted one, survives a crash
        return verdicts

    def _report_unknown_sensors(self, monitor: AssetMonitor, names_before: frozenset[str]) -> None:
        """Name each sensor outside the asset's model once (their values are counted as left out).

        A sensor renamed or added after the model was learned (or restored from disk) is otherwise
        ignored without a trace, and a renamed one leaves every row incomplete: no verdicts at all.
        """
        new = sorted(monitor.aligner_.unknown_sensors_ - names_before)
        if new:
            log.warning(
                "%s publishes %s, not among the sensors its model uses (%s): those values are ignored. If the "
                "asset's sensors changed, POST /assets/%s/relearn learns a baseline from the current ones",
                monitor.asset,
                ", ".join(new),
                ", ".join(monitor.sensor_names or ()),
                monitor.asset,
            )

    def _report_rediscovery(self, monitor: AssetMonitor, rediscoveries_before: int) -> None:
        """Count and explain an asset discovering its sensors again (``AssetMonitor._rediscover_if_stuck``)."""
        new = monitor.rediscoveries_ - rediscoveries_before
        if new <= 0:
            return
        self.counters.inc("plantwatch_sensor_rediscoveries_total", new)
        log.warning(
            "%s: no complete row for %g s (%dx max_staleness) before its baseline was learned; %s stopped "
            "reporting. Discovering its sensors again from the next readings (the baseline starts over)",
            monitor.asset,
            REDISCOVER_AFTER * monitor.max_staleness_ns / 1e9,
            REDISCOVER_AFTER,
            ", ".join(monitor.rediscovered_) or "a sensor",
        )

    def _count_detector_errors(self, n: int) -> None:
        """In /healthz ``detector_errors`` and in ``plantwatch_detector_errors_total`` alike."""
        self.health.detector_errors += n
        self.counters.inc("plantwatch_detector_errors_total", n)

    def _check_rul_alone(self, asset: str, ts_ns: int) -> None:
        assert self.maintenance is not None
        self._maintenance_alert(asset, ts_ns, self.maintenance.rul_forecast(asset, ts_ns), with_drivers=False)

    def _track_maintenance(self, verdict: Verdict) -> None:
        """Health trend of the verdict's asset; a due forecast opens/extends its maintenance alert."""
        assert self.maintenance is not None
        monitor = self.monitors.get(verdict.asset)
        sensors = monitor.sensor_names if monitor is not None else None
        forecast = self.maintenance.observe(verdict, sensors=sensors)
        self._maintenance_alert(verdict.asset, verdict.ts_ns, forecast, with_drivers=True)

    def _maintenance_alert(
        self, asset: str, ts_ns: int, forecast: MaintenanceForecast | None, *, with_drivers: bool
    ) -> None:
        """A due forecast opens/extends the asset's maintenance alert; none lets an open one resolve."""
        assert self.maintenance is not None
        if forecast is not None:
            top = self.maintenance.driver_contributions(asset) if with_drivers else None
            events = self.alerts.observe_maintenance(forecast, top)
        else:
            events = self.alerts.maintenance_not_due(asset, ts_ns)
        for event in events:
            log_alert_event(event)


# What the detector leaves out, as counters (each a running total in the aligner or the monitor):
# stored readings that never become a verdict must show up somewhere.
_LEFT_OUT_COUNTERS = (
    "plantwatch_unknown_sensor_values_total",
    "plantwatch_late_readings_total",
    "plantwatch_incomplete_rows_total",
    "plantwatch_rows_skipped_total",
)


def _left_out_counts(monitor: AssetMonitor) -> tuple[int, int, int, int]:
    aligner = monitor.aligner_
    return (aligner.unknown_values_, aligner.late_readings_, aligner.incomplete_rows_, monitor.skipped_rows_)
