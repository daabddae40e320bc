"""Wiring of the live stages: MQTT source → writer (durable store, log, then ack) → detector → alerts.

Each stage runs in its own thread and hands small frozen messages to the next over a bounded queue:

    paho thread  --Inbound-->  writer thread  --Batch-->  detector thread
    (≤ max_in_flight           sink.write();              AssetMonitor per asset,
     unacknowledged)           readings log; ack          verdicts → sink, AlertManager;
                                                          checkpoints

The writer acknowledges an MQTT delivery only after ``sink.write`` returned, so a crash at any
point leaves unacknowledged readings with the broker, which redelivers them (at-least-once). With a
``model_dir``, the writer also logs each stored batch before acknowledging it, and the detector's
checkpoints say which batch they reflect: a restart scores again what a crash left unscored.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts.lifecycle import AlertManager
from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from ingest.messages import Inbound, inbound_queue
from ingest.sink import Sink
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.asset_view import asset_view, baseline_view
from plantwatch.service.checkpointing import DEFAULT_STATE_POLICY, StatePolicy
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.feedback_requests import FALSE_ALARM, TRUE_FAULT, OperatorVerdict
from plantwatch.service.idle_assets import Departed
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.reading_log import ReadingLog
from plantwatch.service.scoring_queue import SCORING_BACKLOG_READINGS, ScoringQueue
from plantwatch.service.sensor_checks import SensorCheckConfig, SensorChecks
from plantwatch.service.writer import StageHealth, Writer
from telemetry.counters import Counters

FEEDBACK_TIMEOUT_S = 30.0  # how long POST /assets/{asset}/feedback waits for the detector thread
# A write retried this long makes /healthz degraded (503): a batch takes well under a second, and
# the sink retries a TSDB that is down or answering 5xx for as long as it takes.
STORAGE_STALL_S = 10.0
READINGS_LOG = "readings-log"  # in model_dir (plantwatch.service.reading_log)

log = logging.getLogger(__name__)


class Pipeline:
    """Owns the queues and threads of the live service."""

    def __init__(
        self,
        *,
        source_factory: Callable[[queue.Queue[Inbound]], Any],
        sink: Sink,
        alerts: AlertManager,
        detector_config: Callable[[str], MonitorConfig],
        counters: Counters,
        batch_size: int,
        flush_interval_s: float,
        max_in_flight: int,
        stop_event: threading.Event | None = None,
        model_dir: str | None = None,
        maintenance: MaintenanceTracker | None = None,
        sensor_checks: SensorCheckConfig | None = None,
        state: StatePolicy = DEFAULT_STATE_POLICY,
        fatal: threading.Event | None = None,
        watch_gauges: bool = True,
    ) -> None:
        """``fatal`` and ``watch_gauges=False``: for a pipeline among several in one process (one per
        partition, :mod:`plantwatch.service.scaleout`), which share the event and serve the gauges summed."""
        # Shared with the sink, whose retry loop must end when the pipeline stops.
        self.stop_event = stop_event or threading.Event()
        self.fatal = fatal or threading.Event()
        self.health = StageHealth()
        self.counters = counters
        self.sink = sink
        self.inbound = inbound_queue(max_in_flight)
        self.source = source_factory(self.inbound)
        models = ModelPersistence(model_dir) if model_dir else None
        self.reading_log = ReadingLog(Path(model_dir) / READINGS_LOG) if model_dir else None
        self.scoring = ScoringQueue(SCORING_BACKLOG_READINGS)
        self.writer = Writer(
            self.inbound,
            sink,
            self.source.ack,
            self.scoring,
            reading_log=self.reading_log,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            health=self.health,
            stop=self.stop_event,
            fatal=self.fatal,
            metrics=counters,
            max_in_flight=max_in_flight,
        )
        self.detector = DetectorStage(
            self.scoring,
            sink,
            alerts,
            detector_config,
            counters,
            health=self.health,
            stop=self.stop_event,
            models=models,
            maintenance=maintenance,
            sensor_checks=SensorChecks(sensor_checks, alerts) if sensor_checks is not None else None,
            reading_log=self.reading_log,
            state=state,
        )
        self._threads: list[threading.Thread] = []
        if watch_gauges:
            for name, read in self.gauges().items():
                counters.watch(name, read)

    def gauges(self) -> dict[str, Callable[[], float]]:
        """Back-pressure and lag, read at each scrape of /metrics."""
        return {
            "plantwatch_unacked_messages": lambda: getattr(self.source, "unacknowledged", 0),
            "plantwatch_inbound_queue": self.inbound.qsize,
            "plantwatch_oldest_unwritten_seconds": self._oldest_unwritten_s,
            "plantwatch_storage_write_pending_seconds": self._write_pending_s,
            "plantwatch_scoring_backlog": self.scoring.qsize,
            "plantwatch_unscored_batches": self.detector.checkpoints.unscored_batches,
            "plantwatch_alert_store_failing_seconds": self.detector.alerts.store_failing_s,
        }

    def _oldest_unwritten_s(self) -> float:
        oldest = self.health.oldest_in_hand_ns
        if oldest is None:
            try:
                oldest = self.inbound.queue[0].received_ns  # a peek: a stale answer is fine for a gauge
            except IndexError:
                return 0.0
        return max(time.monotonic_ns() - oldest, 0) / 1e9

    def _write_pending_s(self) -> float:
        writing = self.health.writing_since_ns
        return max(time.time_ns() - writing, 0) / 1e9 if writing is not None else 0.0

    def start(self) -> None:
        for name, target in (("plantwatch-writer", self.writer.run), ("plantwatch-detector", self.detector.run)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.source.start()

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
        if self.reading_log is not None:
            self.reading_log.close()
        self.sink.close()

    def wait_stopped(self, timeout_s: float) -> bool:
        """After :meth:`stop`: True once the writer and detector threads have ended."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0))
        return not any(thread.is_alive() for thread in self._threads)

    def assets(self, only: str | None = None) -> list[dict[str, Any]]:
        """The assets seen since the start, or only the one named: state, baseline, latest verdict, model
        (``GET /assets``)."""
        monitors, departed = self._snapshot()
        latest = dict(self.detector.latest)
        views = {asset: d.view for asset, d in departed.items()}
        views.update((asset, asset_view(monitor, latest.get(asset))) for asset, monitor in monitors.items())
        names = sorted(views) if only is None else [only] if only in views else []
        return [views[asset] for asset in names]

    def _snapshot(self) -> tuple[dict[str, AssetMonitor], dict[str, Departed]]:
        """The assets in memory and those out of it for being idle, as the detector thread has them now."""
        return self.detector.idle.snapshot(self.detector.monitors)

    def knows(self, asset: str) -> bool:
        """Whether ``asset`` is this pipeline's: in memory, or out of it for being idle."""
        return self._known(asset)

    def _known(self, asset: str) -> bool:
        """In memory, or out of it for being idle (its charts then start again when it returns)."""
        return self.detector.idle.holds(self.detector.monitors, asset)

    def scores(self, asset: str, since_ns: int | None, limit: int) -> list[dict[str, Any]] | None:
        """The asset's recent scored rows as ``GET /assets/{asset}/scores`` serves them; None for an
        asset with no readings since the start."""
        if not self._known(asset):
            return None
        return [dataclasses.asdict(p) for p in self.detector.scores.since(asset, since_ns, limit)]

    def readings(self, asset: str, since_ns: int | None, limit: int) -> dict[str, Any] | None:
        """The asset's recent aligned rows as ``GET /assets/{asset}/readings`` serves them; None for an
        asset with no readings since the start."""
        if not self._known(asset):
            return None
        return dataclasses.asdict(self.detector.rows.since(asset, since_ns, limit))

    def relearn(self, asset: str, maintenance: bool = False) -> bool:
        """Forget ``asset``'s learned baseline and learn a new one (``POST /assets/{asset}/relearn``)."""
        return self.detector.request_relearn(asset, maintenance)

    def feedback(self, asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
        """An operator's verdict on ``asset``'s alert rows in ``[start_ns, end_ns]``
        (``POST /assets/{asset}/feedback``): the rows learned or dropped once the detector thread
        applied it; None for an unknown asset; the monitor's ``ValueError``; ``TimeoutError``."""
        if verdict not in (FALSE_ALARM, TRUE_FAULT):
            raise ValueError(f"verdict must be {FALSE_ALARM!r} or {TRUE_FAULT!r}, got {verdict!r}")
        checked: OperatorVerdict = FALSE_ALARM if verdict == FALSE_ALARM else TRUE_FAULT
        answer = self.detector.request_feedback(asset, checked, start_ns, end_ns)
        if answer is None:
            return None
        try:  # a refit takes about a second; the detector thread may first finish a large batch
            return answer.result(timeout=FEEDBACK_TIMEOUT_S)
        except TimeoutError:
            if answer.cancel():  # not started: it never will be, so "try again" is true
                raise
            return answer.result()  # being applied right now: its answer is moments away

    def health_report(self) -> dict[str, Any]:
        connected = bool(self.source.connected.is_set())
        alive = all(t.is_alive() for t in self._threads)
        pending_s = self._write_pending_s()
        storage_ok = pending_s < STORAGE_STALL_S
        alert_failing_s = self.detector.alerts.store_failing_s()
        alert_store_ok = alert_failing_s == 0.0
        healthy = connected and alive and storage_ok and alert_store_ok and self.health.fatal is None
        status = "ok" if healthy else "degraded"
        monitors, departed = self._snapshot()
        assets = sorted(monitors.keys() | departed.keys())
        return {
            "status": status,
            "mqtt_connected": connected,
            "threads_alive": alive,
            # False while a write has been retried for STORAGE_STALL_S or more (the TSDB is down or refusing)
            "storage_ok": storage_ok,
            "storage_write_pending_s": round(pending_s, 1),
            # False while the alert store fails: detection waits for it (alerts.retrying)
            "alert_store_ok": alert_store_ok,
            "alert_store_failing_s": round(alert_failing_s, 1),
            "inbound_queue": self.inbound.qsize(),
            "scoring_backlog": self.scoring.qsize(),  # readings written, waiting for the detector
            # batches written and not scored yet, in memory or left in the readings log
            "unscored_batches": self.detector.checkpoints.unscored_batches(),
            "fatal": self.health.fatal,
            "detector_errors": self.health.detector_errors,
            "assets": assets,
            "baselines": {
                asset: baseline_view(monitors[asset]) if asset in monitors else departed[asset].baseline
                for asset in assets
            },
        }
