"""The service's counters, exposed in Prometheus text format at ``GET /metrics``.

Every stage (ingest, pipeline, alerts, API) increments these by name through one :class:`Counters`
object, which keeps them in its own ``prometheus_client`` registry: two services in one process
(as in the tests) never share a count. A counter must be declared in :data:`HELP` (and its labels in
:data:`LABELS`), so a typo in a name fails where it is made instead of creating a new series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import disable_created_metrics as _disable_created_metrics

# No "<name>_created" sample beside each counter: nothing reads them, and they would double /metrics.
_disable_created_metrics()

# name -> help text. Labelled counters name their labels in LABELS.
HELP: dict[str, str] = {
    "plantwatch_messages_received_total": "MQTT messages received.",
    "plantwatch_messages_rejected_total": "MQTT messages rejected, by reason.",
    "plantwatch_redeliveries_skipped_total": "MQTT redeliveries of deliveries already received (not written twice).",
    "plantwatch_mqtt_connect_failures_total": "Failed MQTT connection attempts, by cause.",
    "plantwatch_readings_written_total": "Readings durably written to the storage sink.",
    "plantwatch_points_dropped_total": "Points the storage sink refused (400/422), by reason.",
    "plantwatch_sink_retries_total": "Storage sink write attempts that were retried.",
    "plantwatch_rows_scored_total": "Aligned rows scored by the detectors (after their baseline).",
    "plantwatch_baseline_rows_total": "Aligned rows learned into a baseline (not scored).",
    "plantwatch_unknown_sensor_values_total": "Values of sensors outside their asset's model (ignored).",
    "plantwatch_late_readings_total": "Readings stamped before their asset's newest instant (stored, not scored).",
    "plantwatch_incomplete_rows_total": "Instants not scored: a sensor had no value within max_staleness_s.",
    "plantwatch_sensor_rediscoveries_total": "Sensor sets discovered again: a sensor stopped before the baseline.",
    "plantwatch_rows_skipped_total": "Rows not scored: unusable values, out of time order, or refilling after a gap.",
    "plantwatch_rows_stopped_total": "Rows not scored: the asset stopped (running_when) or settling after a start.",
    "plantwatch_readings_rescored_total": "Readings scored again at a start: stored before a stop, not checkpointed.",
    "plantwatch_assets_evicted_total": "Idle assets dropped from memory (restored from model_dir on return).",
    "plantwatch_model_restores_failed_total": "Saved models that could not be restored (a new baseline is learned).",
    "plantwatch_detector_errors_total": "Batches the detector stage failed on (logged; ingestion goes on).",
    "plantwatch_alert_store_retries_total": "Alert store writes tried again (database down or locked).",
    "plantwatch_alerts_opened_total": "Alerts opened.",
    "plantwatch_alerts_resolved_total": "Alerts resolved.",
    "plantwatch_alerts_reopened_total": "Alerts reopened: anomalous again within alerts.reopen_within_s of resolving.",
    "plantwatch_maintenance_alerts_opened_total": "Maintenance alerts opened (projected threshold crossing due).",
    "plantwatch_maintenance_alerts_resolved_total": "Maintenance alerts resolved.",
    "plantwatch_baselines_relearned_total": "Baselines forgotten on request (POST /assets/{asset}/relearn).",
    "plantwatch_feedback_total": "Operator verdicts on alert rows applied (POST /assets/{asset}/feedback).",
    "plantwatch_sensor_alerts_opened_total": "Sensor-health alerts opened (sensor_fault, stale_data), by kind.",
    "plantwatch_alert_deliveries_total": "Alert changes handed on by an alert output (MQTT, webhook), by output.",
    "plantwatch_alert_delivery_failures_total": "Alert deliveries tried again (receiver down or busy), by output.",
    "plantwatch_alert_deliveries_refused_total": "Alert changes a receiver refused for good (skipped), by output.",
    "plantwatch_alert_deliveries_silenced_total": "Changes of shelved alerts not sent to a webhook, by output.",
}
# Gauges: read from the running service at each scrape (Counters.watch), never set by hand.
GAUGES: dict[str, str] = {
    "plantwatch_unacked_messages": "MQTT deliveries received and not yet acknowledged (at most mqtt.max_in_flight).",
    "plantwatch_inbound_queue": "Decoded deliveries waiting for the writer.",
    "plantwatch_oldest_unwritten_seconds": "Age of the oldest delivery received and not yet written to storage.",
    "plantwatch_storage_write_pending_seconds": "How long the write in progress has been retried (0 between writes).",
    "plantwatch_scoring_backlog": "Readings written and waiting for the detector in memory.",
    "plantwatch_unscored_batches": "Batches written and not scored yet (in memory or left in the readings log).",
    "plantwatch_alert_store_failing_seconds": "How long the alert store has failed the write in hand (0: it works).",
    "plantwatch_partitions_held": "source: nats: the partitions this worker holds (each a pipeline of its own).",
    "plantwatch_live_workers": "source: nats: the workers whose heartbeats this worker sees, itself included.",
}
# Seconds a reading waits for its verdict: from 10 ms to the +Inf of rows replayed from old logs.
_VERDICT_LAG_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0)
# Histograms: name -> (help text, bucket upper bounds), observed by the stage that knows the value.
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "plantwatch_received_to_acked_seconds": (
        "From an MQTT delivery's arrival to its acknowledgement (stored, and logged with a model_dir).",
        (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    ),
    "plantwatch_reading_to_verdict_seconds": (
        "From a scored row's own timestamp to its verdict: how far detection lags the plant (includes the "
        "publisher's clock offset; rows replayed from old logs land in +Inf).",
        _VERDICT_LAG_S,
    ),
    "plantwatch_received_to_verdict_seconds": (
        "From the arrival of the oldest MQTT delivery of each batch scored to the batch's verdicts: the "
        "service's own share of the detection lag (the rest waited at the broker or the publisher).",
        _VERDICT_LAG_S,
    ),
    "plantwatch_write_batch_readings": (
        "Readings per batch written to storage (storage.batch_size at most, fewer under light load).",
        (1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
    ),
}
LABELS: dict[str, tuple[str, ...]] = {
    "plantwatch_sensor_alerts_opened_total": ("kind",),
    "plantwatch_alert_deliveries_total": ("output",),
    "plantwatch_alert_delivery_failures_total": ("output",),
    "plantwatch_alert_deliveries_refused_total": ("output",),
    "plantwatch_alert_deliveries_silenced_total": ("output",),
    "plantwatch_feedback_total": ("verdict",),
    "plantwatch_messages_rejected_total": ("reason",),
    "plantwatch_mqtt_connect_failures_total": ("cause",),
    "plantwatch_points_dropped_total": ("reason",),
}


class Counters:
    """The counters of one service: thread-safe, monotonically increasing, optionally labelled."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = {
            name: Counter(name, help_text, LABELS.get(name, ()), registry=self.registry)
            for name, help_text in HELP.items()
        }
        self._histograms = {
            name: Histogram(name, help_text, buckets=buckets, registry=self.registry)
            for name, (help_text, buckets) in HISTOGRAMS.items()
        }

    def watch(self, name: str, read: Callable[[], float]) -> None:
        """Serve gauge ``name`` (declared in :data:`GAUGES`) from ``read()`` at every scrape."""
        Gauge(name, GAUGES[name], registry=self.registry).set_function(read)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        counter = self._counters[name]
        (counter.labels(**labels) if labels else counter).inc(amount)

    def observe(self, name: str, value: float) -> None:
        """One observation of histogram ``name`` (declared in :data:`HISTOGRAMS`)."""
        self._histograms[name].observe(value)

    def get(self, name: str, **labels: str) -> float:
        """The current value of one series (0 for a labelled series not incremented yet)."""
        if name not in self._counters:
            raise KeyError(name)
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def total(self, name: str) -> float:
        """The sum over every label value of ``name``."""
        (metric,) = self._counters[name].collect()
        return sum(sample.value for sample in metric.samples if sample.name == name)

    def render(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry).decode("utf-8")
