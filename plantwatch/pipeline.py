"""Wiring of the live stages: MQTT source → writer (durable store, then ack) → detector → alerts.

Each stage runs in its own thread and hands small frozen messages to the next over a bounded queue:

    paho thread  --Inbound-->  writer thread  --Reading batch-->  detector thread
                               sink.write(); ack                 AssetMonitor per asset,
                                                                  verdicts → sink, AlertManager

The writer acknowledges an MQTT delivery only after ``sink.write`` returned, so a crash at any
point leaves unacknowledged readings with the broker, which redelivers them (at-least-once).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts.lifecycle import AlertManager
from detector.base import join_state, split_state
from detector.health import MaintenanceForecast
from detector.monitor import REDISCOVER_AFTER, AssetMonitor
from detector.types import Contribution, Verdict
from ingest.messages import Inbound, Reading
from ingest.sink import Sink, SinkFatal, SinkStopped
from plantwatch.maintenance import MaintenanceTracker
from plantwatch.metrics import Counters
from plantwatch.model_store import ModelStoreError, has_state, load_state, save_state

log = logging.getLogger(__name__)

Ack = Callable[[int, int], None]


@dataclass
class StageHealth:
    """What /healthz reports about the pipeline's threads."""

    fatal: str | None = None
    last_write_ns: int = 0
    detector_errors: int = 0
    started: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Writer:
    """Takes decoded deliveries, stores them in batches, then acknowledges them."""

    def __init__(
        self,
        inbound: queue.Queue[Inbound],
        sink: Sink,
        ack: Ack,
        downstream: queue.Queue[tuple[Reading, ...]],
        *,
        batch_size: int,
        flush_interval_s: float,
        health: StageHealth,
        stop: threading.Event,
        fatal: threading.Event,
    ) -> None:
        self.inbound = inbound
        self.sink = sink
        self.ack = ack
        self.downstream = downstream
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.health = health
        self.stop = stop
        self.fatal = fatal

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self._collect()
            if not batch:
                continue
            readings = tuple(r for item in batch for r in item.readings)
            try:
                self.sink.write(readings)
            except SinkStopped:
                return  # shutting down: unacked deliveries stay with the broker
            except SinkFatal as exc:
                self.health.fatal = str(exc)
                log.critical("storage refused our writes, stopping ingestion: %s", exc)
                self.fatal.set()
                return
            for item in batch:
                if item.mid is not None:
                    self.ack(item.mid, item.qos)
            self.health.last_write_ns = time.time_ns()
            self._hand_on(readings)

    def _collect(self) -> list[Inbound]:
        """Block for the first delivery, then gather more until the batch is full or the linger ends."""
        try:
            first = self.inbound.get(timeout=0.2)
        except queue.Empty:
            return []
        batch, count = [first], len(first.readings)
        deadline = time.monotonic() + self.flush_interval_s
        while count < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self.inbound.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                # Nothing more arriving right now: a short linger keeps latency low under light load.
                if self.inbound.empty():
                    break
                continue
            batch.append(item)
            count += len(item.readings)
        return batch

    def _hand_on(self, readings: tuple[Reading, ...]) -> None:
        while not self.stop.is_set():
            try:
                self.downstream.put(readings, timeout=0.5)
                return
            except queue.Full:
                continue


# The maintenance trends' file in the model directory. MQTT topic names cannot hold U+0000, so no
# asset can be called this.
TRENDS_NAME = "\x00maintenance-trends"
TRENDS_SAVE_INTERVAL_S = 300.0  # wall time between saves of the maintenance trends (and at shutdown)


class ModelPersistence:
    """Saves and restores each asset's learned state in ``model_dir`` (JSON + npz, never pickle)."""

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir

    def save(self, monitor: AssetMonitor) -> None:
        arrays, meta = split_state(monitor.get_state())
        try:
            save_state(self.model_dir, monitor.asset, meta, arrays)
        except OSError as exc:  # a full disk must not stop detection; the next save retries
            log.error("cannot save the model of %s in %s: %s", monitor.asset, self.model_dir, exc)

    def save_trends(self, tracker: MaintenanceTracker) -> None:
        try:
            meta, arrays = tracker.get_state()
            save_state(self.model_dir, TRENDS_NAME, meta, arrays)
        except Exception:  # losing a save must never stop detection, nor a shutdown half-way
            log.exception("cannot save the maintenance trends in %s", self.model_dir)

    def restore_trends(self, tracker: MaintenanceTracker) -> None:
        try:
            saved = load_state(self.model_dir, TRENDS_NAME)
            if saved is None:
                return
            tracker.set_state(*saved)
            log.info("restored the maintenance trends of %d asset(s) from %s", len(saved[0]["assets"]), self.model_dir)
        except Exception as exc:  # a corrupt or foreign file: the trends start again, detection goes on
            log.warning("not restoring the maintenance trends, starting them afresh: %s: %s", type(exc).__name__, exc)

    def has(self, asset: str) -> bool:
        try:
            return has_state(self.model_dir, asset)
        except (ModelStoreError, OSError):
            return False

    def restore(self, monitor: AssetMonitor) -> bool:
        """Restore ``monitor`` from its saved model; False (and a fresh monitor) when that failed.

        Any failure — a corrupt or truncated file, a foreign one, a model of other settings or other
        sensors — means a new baseline, never an asset left unmonitored.
        """
        try:
            saved = load_state(self.model_dir, monitor.asset)
            if saved is None:
                return True
            meta, arrays = saved
            monitor.set_state(join_state(arrays, meta))
            log.info("restored the model of %s from %s (warm: %s)", monitor.asset, self.model_dir, monitor.is_warm)
            return True
        except Exception as exc:
            log.warning(
                "not restoring the model of %s, learning a new baseline: %s: %s", monitor.asset, type(exc).__name__, exc
            )
            monitor.reset()
            return False


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
                _log_alert_event(event)
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
            _log_baseline_learned(monitor)
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
            _log_alert_event(event)


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


# Opening an alert is what an operator must see; peak updates are only for debugging.
_EVENT_LEVELS = {"opened": logging.WARNING, "resolved": logging.INFO}


def _log_baseline_learned(monitor: AssetMonitor) -> None:
    drifting = monitor.drifting_sensors
    note = f"; level wanders over the baseline, judged by how they move only: {', '.join(drifting)}" if drifting else ""
    log.info("baseline of %s learned, scoring starts%s", monitor.asset, note)
    advice = monitor.baseline_advice()
    if advice:
        log.warning("%s", advice)


def _feature_suffix(feature: str) -> str:
    # A reading needs no label; a level or a movement figure does ("motor_temp spread=0.8").
    return "" if feature in ("", "raw") else f" {feature}"


def _how_far(c: Contribution) -> str:
    if c.feature == "drift":  # a maintenance driver: how far its drift has come towards the threshold
        if c.expected_high <= 0:
            return "named by the remaining-life model"
        return f"{c.direction}, {abs(c.value) / c.expected_high:.0%} of the drift at the maintenance threshold"
    expected = f"{c.expected_low:.4g}..{c.expected_high:.4g}"
    if c.within_expected:  # "low, expected -0.49..0.51" for -0.32 would read as a contradiction
        return f"within expected {expected}, unusual with the others"
    return f"{c.direction}, expected {expected}"


def _log_alert_event(event: Any) -> None:
    alert = event.alert
    level = _EVENT_LEVELS.get(event.kind, logging.DEBUG)
    if not log.isEnabledFor(level):
        return
    sensors = ", ".join(
        f"{c.sensor}{_feature_suffix(c.feature)}={c.value:.4g} ({_how_far(c)}, {c.share:.0%})"
        for c in alert.top_sensors
    )
    log.log(
        level,
        "alert %s: asset=%s kind=%s severity=%s peak_probability=%.9f top sensors: %s",
        event.kind,
        alert.asset,
        alert.kind,
        alert.severity,
        alert.peak_probability,
        sensors or "-",
    )


class Pipeline:
    """Owns the queues and threads of the live service."""

    def __init__(
        self,
        *,
        source_factory: Callable[[queue.Queue[Inbound]], Any],
        sink: Sink,
        alerts: AlertManager,
        detector_config: Callable[[str], dict[str, Any]],
        counters: Counters,
        batch_size: int,
        flush_interval_s: float,
        max_in_flight: int,
        stop_event: threading.Event | None = None,
        model_dir: str | None = None,
        maintenance: MaintenanceTracker | None = None,
    ) -> None:
        # Shared with the sink, whose retry loop must end when the pipeline stops.
        self.stop_event = stop_event or threading.Event()
        self.fatal = threading.Event()
        self.health = StageHealth()
        self.counters = counters
        self.sink = sink
        # Larger than the broker's in-flight cap so paho's thread never waits on a full queue.
        self.inbound: queue.Queue[Inbound] = queue.Queue(maxsize=max_in_flight * 2 + 16)
        self.scoring: queue.Queue[tuple[Reading, ...]] = queue.Queue(maxsize=64)
        self.source = source_factory(self.inbound)
        self.writer = Writer(
            self.inbound,
            sink,
            self.source.ack,
            self.scoring,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            health=self.health,
            stop=self.stop_event,
            fatal=self.fatal,
        )
        self.detector = DetectorStage(
            self.scoring,
            sink,
            alerts,
            detector_config,
            counters,
            health=self.health,
            stop=self.stop_event,
            models=ModelPersistence(model_dir) if model_dir else None,
            maintenance=maintenance,
        )
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, target in (("plantwatch-writer", self.writer.run), ("plantwatch-detector", self.detector.run)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.source.start()
        self.health.started = True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop: the writer finishes and acknowledges the batch in hand, then we disconnect.

        Disconnecting first would strand the acknowledgements of a batch already written, and the
        broker would redeliver it (a duplicate, not a loss). Deliveries still queued here are not
        acknowledged, so the broker redelivers them to the next session.
        """
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self.source.stop()  # paho sends the queued PUBACKs before its DISCONNECT
        try:
            self.detector.save_models()
        except Exception:  # the sink and the alert store must still be closed and flushed
            log.exception("saving the learned models at shutdown failed")
        self.sink.close()

    def relearn(self, asset: str, maintenance: bool = False) -> bool:
        """Forget ``asset``'s learned baseline and learn a new one (``POST /assets/{asset}/relearn``)."""
        return self.detector.request_relearn(asset, maintenance)

    def health_report(self) -> dict[str, Any]:
        connected = bool(self.source.connected.is_set())
        alive = all(t.is_alive() for t in self._threads)
        status = "ok" if (connected and alive and self.health.fatal is None) else "degraded"
        monitors = dict(self.detector.monitors)  # a snapshot: the detector thread adds assets
        return {
            "status": status,
            "mqtt_connected": connected,
            "threads_alive": alive,
            "inbound_queue": self.inbound.qsize(),
            "fatal": self.health.fatal,
            "detector_errors": self.health.detector_errors,
            "assets": sorted(monitors),
            "baselines": {
                asset: {
                    "learned": monitor.is_warm,
                    "drifting_sensors": list(monitor.drifting_sensors),
                    "scores_beyond_enter": monitor.scores_beyond_enter,
                    "advice": monitor.baseline_advice(),
                    "unknown_sensors": sorted(monitor.aligner_.unknown_sensors_),
                    "stale_sensors": list(monitor.aligner_.stale_sensors()),
                }
                for asset, monitor in sorted(monitors.items())
            },
        }
