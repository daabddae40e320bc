"""The detector stage: one :class:`AssetMonitor` per asset; verdicts go to storage, alerts and maintenance."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from alerts.lifecycle import AlertManager
from alerts.retrying import AlertStoreStopped
from detector.config import MonitorConfig
from detector.events import (
    BaselineExtended,
    BaselineFailed,
    BaselineLearned,
    Event,
    LeftOut,
    ModelRefitted,
    RunningRuleUnusable,
    SensorsRediscovered,
    UnknownSensors,
)
from detector.features import update_streams
from detector.fleet import Scored, score_together
from detector.health import MaintenanceForecast
from detector.intake import REDISCOVER_AFTER
from detector.monitor import AssetMonitor, PendingObservation
from detector.types import Verdict
from ingest.messages import Reading
from ingest.sink import Sink, SinkStopped
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.alert_log import log_alert_event, log_baseline_extended, log_baseline_learned
from plantwatch.service.asset_view import asset_view, baseline_view
from plantwatch.service.checkpointing import DEFAULT_STATE_POLICY, Checkpointing, StatePolicy
from plantwatch.service.feedback_requests import FALSE_ALARM, FeedbackRequests, OperatorVerdict
from plantwatch.service.heap import HeapTrim, LearnedFreeze
from plantwatch.service.idle_assets import Departed, IdleAssets
from plantwatch.service.kept_baselines import KeptBaselines
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.reading_log import ReadingLog
from plantwatch.service.row_history import RowHistory
from plantwatch.service.score_history import ScoreHistory
from plantwatch.service.scoring_queue import Batch, ScoringQueue, join_logged
from plantwatch.service.sensor_checks import SensorChecks
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

log = logging.getLogger(__name__)

# While readings wait, one asset's smallest flagged shifts are worked out this often: one can take 0.2 s,
# and with recalibration changing levels every baseline length there is nearly always one due.
SHIFTS_BUSY_EVERY_S = 10.0
# Assets taken through the phases of a batch together: enough that the joint work costs little per
# asset, few enough that their transient arrays do not leave the allocator's memory fragmented.
ASSETS_TOGETHER = 32


@dataclass(frozen=True, slots=True, eq=False)
class _Begun:
    """One asset's readings of a batch, between ``begin_observe`` and ``finish_observe``."""

    asset: str
    readings: list[tuple[int, Mapping[str, float]]]
    monitor: AssetMonitor
    was_warm: bool
    pending: PendingObservation


class DetectorStage:
    """One :class:`AssetMonitor` per asset; verdicts go to storage and to the alert manager."""

    def __init__(
        self,
        upstream: ScoringQueue,
        sink: Sink,
        alerts: AlertManager,
        detector_config: Callable[[str], MonitorConfig],
        counters: Counters,
        *,
        health: StageHealth,
        stop: threading.Event,
        models: ModelPersistence | None = None,
        maintenance: MaintenanceTracker | None = None,
        sensor_checks: SensorChecks | None = None,
        reading_log: ReadingLog | None = None,
        state: StatePolicy = DEFAULT_STATE_POLICY,
    ) -> None:
        self.upstream = upstream
        self.sensor_checks = sensor_checks
        self._silence_checked_at = time.monotonic()
        self.sink = sink
        self.alerts = alerts
        self.detector_config = detector_config
        self.models = models
        self.counters = counters
        self.health = health
        self.stop = stop
        self.maintenance = maintenance
        self.monitors: dict[str, AssetMonitor] = {}
        self.latest: dict[str, Verdict] = {}  # each asset's latest verdict (GET /assets)
        # Each asset's recent scored rows (GET /assets/{asset}/scores) and their sensors' values (GET
        # /assets/{asset}/readings), in files: on the model directory's disk when there is one.
        history_folder = models.checkpoints.model_dir if models is not None else None
        self.scores = ScoreHistory(folder=history_folder)
        self.rows = RowHistory(folder=history_folder)
        self.kept = KeptBaselines(history_folder)  # each asset's baseline rows for operator feedback
        self._tags: dict[str, Mapping[str, str]] = {}  # each asset's latest topic tags
        # Assets whose smallest flagged shifts may need working out again (an ordered set).
        self._shifts_due: dict[str, None] = {}
        self._shifts_worked_at = time.monotonic()
        self._heap = HeapTrim()  # what learning and the smallest shifts leave free goes back to the system
        self._freeze = LearnedFreeze()  # learned assets out of the garbage collector's full passes
        # Assets whose baseline an operator asked to relearn; the detector thread applies them,
        # so a monitor is only ever touched by that thread.
        self._relearn: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self._feedback = FeedbackRequests()
        # With a model_dir: every asset's model and the trends, checkpointed together now and then.
        self.checkpoints = Checkpointing(models, reading_log, state.checkpoint_interval_s)
        # Idle assets leave memory only where a checkpoint can bring them back.
        self.idle = IdleAssets(state.evict_idle_after_s if models is not None else None)
        if models is not None and maintenance is not None:
            models.restore_trends(maintenance)

    def _new_monitor(self, asset: str) -> AssetMonitor:
        monitor = AssetMonitor(asset, self.detector_config(asset))
        if self.models is not None and not self.models.restore(monitor):
            self.counters.inc("plantwatch_model_restores_failed_total")
        if monitor.is_warm:
            self._freeze.learned()
        self.idle.move_in(self.monitors, monitor)
        return monitor

    def request_relearn(self, asset: str, maintenance: bool = False) -> bool:
        """Forget ``asset``'s baseline within a loop of the detector thread (False: no such asset here).

        Applied whether or not readings arrive (and at shutdown, before the models are saved), so a
        restart never brings the old baseline back.

        ``maintenance=True``: the asset was overhauled, so its health trend and RUL history go too.
        """
        # An asset known only from its saved model (no readings since a restart) counts too.
        if not self.knows(asset):
            return False
        self._relearn.put((asset, maintenance))
        return True

    def knows(self, asset: str) -> bool:
        """Whether the asset has sent readings since the start or has a saved model."""
        return asset in self.monitors or (self.models is not None and self.models.has(asset))

    def request_feedback(self, asset: str, verdict: OperatorVerdict, start_ns: int, end_ns: int) -> Future[int] | None:
        """Queue an operator's verdict on ``asset``'s alert rows stamped in ``[start_ns, end_ns]``
        (``false_alarm``: learned as normal; ``true_fault``: never learned); None for an unknown asset.
        The future answers with the rows learned or dropped, or the monitor's ``ValueError``."""
        return self._feedback.submit(asset, verdict, start_ns, end_ns) if self.knows(asset) else None

    def _feedback_applied(self, monitor: AssetMonitor, verdict: OperatorVerdict, rows: int) -> None:
        self.counters.inc("plantwatch_feedback_total", verdict=verdict)
        self._work_out_shifts(monitor)
        if rows:
            self.checkpoints.operator_changed(monitor.asset)  # what an operator taught must survive a restart
        log.warning(
            "operator feedback on %s: %d alert rows %s",
            monitor.asset,
            rows,
            "learned as normal" if verdict == FALSE_ALARM else "confirmed a fault, never to be learned",
        )

    def _apply_relearn_requests(self) -> None:
        # Requests for one asset that queued up together are one relearn (504 parallel requests had each
        # reset and saved the model, stalling this thread for seconds); an overhaul in any of them counts.
        wanted: dict[str, bool] = {}
        while True:
            try:
                asset, overhauled = self._relearn.get_nowait()
            except queue.Empty:
                break
            wanted[asset] = wanted.get(asset, False) or overhauled
        for asset, overhauled in wanted.items():
            monitor = self.monitors.get(asset) or self._new_monitor(asset)
            monitor.reset()
            if self.sensor_checks is not None:
                self.sensor_checks.forget(asset)
            self.latest.pop(asset, None)  # the forgotten model's verdict says nothing of the new one
            self.scores.forget(asset)
            self.rows.forget(asset)
            self.kept.forget(asset)
            if overhauled and self.maintenance is not None:
                self.maintenance.forget(asset)
            self.checkpoints.operator_changed(asset)  # a restart must not bring the old baseline back
            self.counters.inc("plantwatch_baselines_relearned_total")
            log.warning(
                "baseline of %s forgotten on request%s: learning a new one from the next readings",
                asset,
                " (maintenance done: its health trend and RUL history start again)" if overhauled else "",
            )

    def save_models(self) -> None:
        """At shutdown, once the detector thread has stopped: relearns and feedback still queued, then
        a last checkpoint."""
        self._apply_requests()
        self.checkpoints.write(self.monitors, self.maintenance)
        self.checkpoints.close()

    def run(self) -> None:
        self._recover()
        while not self.stop.is_set():
            try:
                batch, idle = self.upstream.get(timeout=0.2), False
            except queue.Empty:
                batch, idle = Batch(()), True  # a quiet asset's relearn must not wait for readings
            self._work_out_due_shifts(idle)
            if not self._score_logged(self.checkpoints.left_in_log(before=batch.seq))[1]:
                return
            if batch.seq and batch.seq <= self.checkpoints.scored_seq:
                continue  # read from the log already
            batch = self.upstream.join_waiting(batch)
            if not self._score(batch.readings, batch.seq):
                return
            if batch.received_ns:
                waited = (time.monotonic_ns() - batch.received_ns) / 1e9
                self.counters.observe("plantwatch_received_to_verdict_seconds", waited)

    def _score(self, readings: Sequence[Reading], seq: int = 0) -> bool:
        """One batch (number ``seq`` in the readings log) and the periodic work after it; False once
        storage stopped (shutting down)."""
        try:
            try:
                self._process(readings)
            finally:  # a batch a model bug failed on counts as scored: scoring it again would fail again
                self.checkpoints.scored(seq)
            self._check_silence_now_and_then()
            self._heap.now_and_then()
            self._freeze.now_and_then()
            if self.checkpoints.now_and_then(self.monitors, self.maintenance):
                self._evict_idle()  # a checkpoint was written: what is not dirty is on disk
        except (SinkStopped, AlertStoreStopped):
            return False
        except Exception:  # a model bug must not stop ingestion; it is logged and counted
            self._count_detector_errors(1)
            log.exception("detector stage failed on a batch of %d readings", len(readings))
        return True

    def _score_logged(self, batches: Iterable[tuple[int, Sequence[Reading]]]) -> tuple[int, bool]:
        """Score batches read from the readings log, in order: the readings scored, and False once
        stopping (or storage stopped)."""
        readings = 0
        for seq, batch in join_logged(batches, self.upstream.join_readings):
            if self.stop.is_set() or not self._score(batch, seq):
                return readings, False
            readings += len(batch)
        return readings, True

    def _recover(self) -> None:
        """Score again the batches stored before the last stop and not covered by its checkpoint (a crash,
        or readings still queued for the detector at a graceful stop). Their alerts were partly decided
        before the stop: the store's say stands for those (``AlertManager.begin_recovery``)."""
        first, last = self.checkpoints.unscored_range
        if first > last:
            return
        log.warning("scoring readings batches %d-%d again: stored before the last stop, not checkpointed", first, last)
        started = time.monotonic()
        self.alerts.begin_recovery()
        try:
            readings = self._score_logged(self.checkpoints.unscored())[0]
        finally:
            self.alerts.end_recovery()
        self.counters.inc("plantwatch_readings_rescored_total", readings)
        took, through = time.monotonic() - started, self.checkpoints.scored_seq
        log.warning("scored %d readings again (batches %d-%d) in %.1f s", readings, first, through, took)

    def _evict_idle(self) -> None:
        """Once a checkpoint is written: the assets idle for ``detector.evict_idle_after_s`` leave memory,
        those whose latest state is on disk."""
        gone = self.idle.due(self.checkpoints.dirty)
        for asset in gone:
            monitor = self.monitors[asset]
            view, baseline = asset_view(monitor, self.latest.get(asset)), baseline_view(monitor)
            view["in_memory"] = baseline["in_memory"] = False
            departed = Departed(view, baseline)
            self.idle.move_out(self.monitors, asset, departed)
            self.scores.forget(asset)
            self.rows.forget(asset)
            self.kept.forget(asset)
        if gone:
            self.counters.inc("plantwatch_assets_evicted_total", len(gone))
            log.info(
                "%d idle asset(s) left memory (%s); each comes back from its checkpoint with its next reading",
                len(gone),
                ", ".join(sorted(gone)[:5]) + (", ..." if len(gone) > 5 else ""),
            )

    def _check_silence_now_and_then(self) -> None:
        """Assets that went quiet altogether (no event time moves for them): once a second."""
        if self.sensor_checks is None or time.monotonic() - self._silence_checked_at < 1.0:
            return
        self._silence_checked_at = time.monotonic()
        for event in self.sensor_checks.check_silence(
            lambda a: m.sensor_names if (m := self.monitors.get(a)) else None
        ):
            log_alert_event(event)

    def _apply_requests(self) -> None:
        self._apply_relearn_requests()
        self._feedback.apply(lambda asset: self.monitors.get(asset) or self._new_monitor(asset), self._feedback_applied)

    def _process(self, readings: Sequence[Reading]) -> None:
        with self.alerts.batched():  # the batch's alert updates in one transaction
            self._process_batch(readings)

    def _process_batch(self, readings: Sequence[Reading]) -> None:
        self._apply_requests()
        by_asset: dict[str, list[tuple[int, Mapping[str, float]]]] = {}
        tags: dict[str, Mapping[str, str]] = {}
        for reading in readings:
            by_asset.setdefault(reading.asset, []).append((reading.ts_ns, reading.values))
            if reading.tags:
                tags[reading.asset] = reading.tags
        self._note_tags(tags)
        verdicts: list[Verdict] = []
        assets = list(by_asset.items())
        for start in range(0, len(assets), ASSETS_TOGETHER):
            verdicts.extend(self._process_assets(dict(assets[start : start + ASSETS_TOGETHER])))
        self._hand_on(verdicts)

    def _process_assets(self, by_asset: Mapping[str, list[tuple[int, Mapping[str, float]]]]) -> list[Verdict]:
        """These assets' readings, phase by phase over all of them; their verdicts."""
        begun = self._begin_assets(by_asset)
        features = self._features_together(begun)
        scores = self._score_together(begun, features)
        verdicts: list[Verdict] = []
        for b, F, of_model in zip(begun, features, scores, strict=True):
            try:
                of_asset = self._finish_asset(b, F, of_model)
                if of_asset:
                    self.latest[b.asset] = of_asset[-1]  # in time order: its latest verdict
                verdicts.extend(of_asset)
            except Exception:  # one asset's model failing must not starve the others in the batch
                self._asset_failed(b.asset, b.readings)
        return verdicts

    def _hand_on(self, verdicts: Sequence[Verdict]) -> None:
        """The batch's verdicts to storage, the score history, the alerts and maintenance."""
        if not verdicts:
            return
        # Stopped rows (running False) are neither stored nor counted as scored, like rows refilling
        # after a gap; the alert manager sees them: a stop lets an open alert resolve.
        scored = [v for v in verdicts if not v.warming_up and v.running]
        self.counters.inc("plantwatch_rows_scored_total", len(scored))
        self.counters.inc("plantwatch_baseline_rows_total", sum(v.warming_up for v in verdicts))
        if scored:
            self.sink.write_verdicts(scored)
            self.scores.add(scored)
            self._observe_lag(scored)
        for verdict in verdicts:
            for event in self.alerts.observe(verdict):
                log_alert_event(event)
            if self.maintenance is not None and not verdict.warming_up and verdict.running:
                self._track_maintenance(verdict)

    def _observe_lag(self, scored: Sequence[Verdict]) -> None:
        now_ns = time.time_ns()
        for verdict in scored:
            self.counters.observe("plantwatch_reading_to_verdict_seconds", (now_ns - verdict.ts_ns) / 1e9)

    def _note_tags(self, tags: Mapping[str, Mapping[str, str]]) -> None:
        """Hand the alerts the tags of each asset's topic (line, site, ...) when they change."""
        for asset, of_asset in tags.items():
            if self._tags.get(asset) != of_asset:
                self._tags[asset] = of_asset
                self.alerts.note_tags(asset, of_asset)

    def _begin_assets(self, by_asset: Mapping[str, list[tuple[int, Mapping[str, float]]]]) -> list[_Begun]:
        """Each asset's readings up to their rolling features (``AssetMonitor.begin_observe``)."""
        begun = []
        for asset, batch in by_asset.items():
            try:
                monitor = self.monitors.get(asset) or self._new_monitor(asset)
                self.idle.seen(asset)
                was_warm = monitor.is_warm
                begun.append(_Begun(asset, batch, monitor, was_warm, monitor.begin_observe(batch)))
            except Exception:  # one asset's model failing must not starve the others in the batch
                self._asset_failed(asset, batch)
        return begun

    def _asset_failed(self, asset: str, batch: Sequence[object]) -> None:
        self._count_detector_errors(1)
        log.exception("detector failed on %d readings of %s; the other assets go on", len(batch), asset)

    def _features_together(self, begun: Sequence[_Begun]) -> list[np.ndarray | None]:
        """The assets' rolling features in one go (``update_streams``): per asset and call they were a
        quarter of this thread. None: the asset works out its own."""
        inputs = [(i, f) for i, b in enumerate(begun) if (f := b.pending.feature_input) is not None]
        return self._together(
            "rolling features", len(begun), inputs, lambda fs: update_streams([f[0] for f in fs], [f[1:] for f in fs])
        )

    def _score_together(self, begun: Sequence[_Begun], features: Sequence[np.ndarray | None]) -> list[Scored | None]:
        """The assets' model scores and probabilities of those features in one go (``detector.fleet``):
        per asset and call they were a fifth of this thread. None: the asset scores its own."""
        inputs: list[tuple[int, tuple[Any, Any, np.ndarray]]] = []
        for i, (b, F) in enumerate(zip(begun, features, strict=True)):
            try:
                model_input = b.monitor.model_input(b.pending, F) if F is not None else None
            except Exception:  # left to the asset, whose own scoring fails (and is counted) alone
                model_input = None
            if model_input is not None:
                inputs.append((i, model_input))
        return self._together("model scores", len(begun), inputs, score_together)

    def _together(
        self, what: str, n: int, inputs: Sequence[tuple[int, In]], work: Callable[[list[In]], Sequence[T | None]]
    ) -> list[T | None]:
        """``work`` of the ``(asset index, input)`` pairs, at the indices of ``n`` assets; None for the
        others, and for all when it fails (counted and logged): then each asset works out its own,
        and a fault that is one asset's costs that asset's verdicts alone."""
        out: list[T | None] = [None] * n
        try:
            results = work([x for _, x in inputs])
        except Exception:
            self._count_detector_errors(1)
            log.exception("working out the assets' %s together failed; each asset works out its own", what)
            return out
        for (i, _), result in zip(inputs, results, strict=True):
            out[i] = result
        return out

    def _finish_asset(self, begun: _Begun, features: np.ndarray | None, scores: Scored | None) -> list[Verdict]:
        """Score one asset's readings (``features`` and ``scores``: those of its rows, worked out with
        the other assets'); its events become log lines, counters and model saves."""
        asset, batch, monitor, was_warm = begun.asset, begun.readings, begun.monitor, begun.was_warm
        observed = monitor.finish_observe(begun.pending, features, scores)
        events = observed.events
        self._report_unknown_sensors(monitor, _of(UnknownSensors, events))
        self._report_rediscovery(monitor, _of(SensorsRediscovered, events))
        self._report_running_rule(_of(RunningRuleUnusable, events))
        names, rows = monitor.sensor_names, observed.rows
        rul = self.maintenance.rul if self.maintenance is not None else None
        if rows and names:
            self.rows.add(asset, names, rows)
            if self.maintenance is not None:  # each row's operating regime, for its verdict's health trend
                lacking = self.maintenance.observe_rows(asset, names, rows)
                if lacking:
                    log.warning(
                        "maintenance.operating_settings: %s publishes no %s, so its health is trended as one "
                        "regime (sensors: %s)",
                        asset,
                        ", ".join(repr(s) for s in lacking),
                        ", ".join(names),
                    )
        if rul is not None and rows and names:
            # Aligned rows, so sensors published one per message reach the RUL model as whole rows.
            made = rul.observe(asset, [(ts, dict(zip(names, row.tolist(), strict=True))) for ts, row in rows])
            if made is not None and not was_warm:
                # No scored verdicts yet to carry the RUL check: a failure due soon must not wait for them.
                self._check_rul_alone(asset, rows[-1][0])
        if self.sensor_checks is not None:  # before the verdicts reach the alerts: a faulty sensor's are its own
            for event in self.sensor_checks.after_batch(asset, batch, monitor.sensor_names):
                log_alert_event(event)
        for left_out in _of(LeftOut, events):
            self._count_left_out(left_out)
        self._report_baseline_failures(_of(BaselineFailed, events))
        for extended in _of(BaselineExtended, events):
            log_baseline_extended(asset, extended)
        learned = _of(BaselineLearned, events)
        if learned:
            log_baseline_learned(asset, learned[-1])
            self._heap.due()
            self._freeze.learned()
        feedback = monitor.feedback_
        if feedback is not None and feedback.in_memory:  # learned or restored: its baseline rows to the file
            self.kept.move_out(asset, feedback)
        self.checkpoints.changed.add(asset)
        if learned or any(isinstance(e, ModelRefitted) for e in events):
            self.checkpoints.model_changed(asset)  # a fresh baseline, or an adapted one, survives a crash
        self._shifts_due[asset] = None
        return observed.verdicts

    def _work_out_due_shifts(self, idle: bool) -> None:
        """The smallest flagged shifts of the assets whose model or alarm level changed: while no
        readings wait, one after another until some do, else one every ``SHIFTS_BUSY_EVERY_S``. Each
        costs 25-200 ms, and recalibration changes the level every baseline length of scored rows:
        worked out at once, they took a fifth of this thread at full rate, and 100 assets' worked
        out in one quiet moment held the next readings for 3 s (bench/throughput.py). ``/healthz``
        shows the last figure meanwhile."""
        if not self._shifts_due or not (idle or time.monotonic() - self._shifts_worked_at >= SHIFTS_BUSY_EVERY_S):
            return
        self._shifts_worked_at = time.monotonic()
        while self._shifts_due:
            asset = next(iter(self._shifts_due))
            del self._shifts_due[asset]
            monitor = self.monitors.get(asset)  # None: evicted meanwhile, and worked out on its return
            if monitor is None or monitor.model_ is None or monitor.smallest_shifts(work_out=False) is not None:
                continue  # no model, or the figure is the current one's
            self._work_out_shifts(monitor)
            self._heap.due()
            if not idle or self.upstream.qsize():
                return

    def _work_out_shifts(self, monitor: AssetMonitor) -> None:
        """What the asset's model can see (``/healthz`` ``smallest_shifts``), worked out here on the
        detector thread once per model and alarm level (a check otherwise), never by the endpoint.
        A failure costs that figure only, not the batch's verdicts."""
        try:
            monitor.smallest_shifts()
        except Exception:
            self._count_detector_errors(1)
            log.exception("working out the smallest flagged shifts of %s failed", monitor.asset)

    def _report_unknown_sensors(self, monitor: AssetMonitor, events: list[UnknownSensors]) -> None:
        """Name each sensor outside the asset's model once (their values are counted as left out).

        A sensor renamed or added after the model was learned (or restored from disk) is otherwise
        ignored without a trace, and a renamed one leaves every row incomplete: no verdicts at all.
        """
        new = sorted(name for event in events for name in event.names)
        if new:
            log.warning(
                "%s publishes %s, not among the sensors its model uses (%s): those values are ignored. If the "
                "asset's sensors changed, POST /assets/%s/relearn learns a baseline from the current ones",
                monitor.asset,
                ", ".join(new),
                ", ".join(monitor.sensor_names or ()),
                monitor.asset,
            )

    def _report_rediscovery(self, monitor: AssetMonitor, events: list[SensorsRediscovered]) -> None:
        """Count and explain an asset discovering its sensors again (``detector.intake.SensorIntake``)."""
        if not events:
            return
        self.counters.inc("plantwatch_sensor_rediscoveries_total", len(events))
        last = events[-1]
        log.warning(
            "%s: no complete row for %g s (%dx max_staleness) before its baseline was learned; %s stopped "
            "reporting. Discovering its sensors again from the next readings (the baseline starts over)",
            monitor.asset,
            last.waited_ns / 1e9,
            REDISCOVER_AFTER,
            ", ".join(last.silent) or "a sensor",
        )

    def _report_running_rule(self, events: list[RunningRuleUnusable]) -> None:
        """``running_when`` names sensors the asset lacks (said once per sensor set): the asset is
        scored as always running until the rule is fixed."""
        for event in events:
            keys = f"detector.running_when or detector.assets.{event.asset}.running_when"
            log.error("%s (%s)", event.message, keys)

    def _report_baseline_failures(self, failures: list[BaselineFailed]) -> None:
        """The monitor has dropped those baselines and learns again: count them, say what to fix."""
        if failures:
            self._count_detector_errors(len(failures))
            many = f" ({len(failures)} baselines in this batch)" if len(failures) > 1 else ""
            log.error("%s%s", failures[-1].message, many)

    def _count_left_out(self, event: LeftOut) -> None:
        """Stored readings that never become a verdict must show up somewhere."""
        counts = (
            event.unknown_values,
            event.late_readings,
            event.incomplete_rows,
            event.skipped_rows,
            event.stopped_rows,
        )
        for name, n in zip(_LEFT_OUT_COUNTERS, counts, strict=True):
            if n:
                self.counters.inc(name, n)

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


# What the detector leaves out (``detector.events.LeftOut``), as counters.
_LEFT_OUT_COUNTERS = (
    "plantwatch_unknown_sensor_values_total",
    "plantwatch_late_readings_total",
    "plantwatch_incomplete_rows_total",
    "plantwatch_rows_skipped_total",
    "plantwatch_rows_stopped_total",
)

E = TypeVar("E", bound=Event)
T = TypeVar("T")
In = TypeVar("In")


def _of(kind: type[E], events: Sequence[Event]) -> list[E]:
    """The events of one kind, in order."""
    return [event for event in events if isinstance(event, kind)]
