"""Process-wide counters rendered in Prometheus text format.

Dependency-free on purpose: every stage (ingest, pipeline, API) increments these.
"""

from __future__ import annotations

import threading
from collections import defaultdict

_HELP = {
    "plantwatch_messages_received_total": "MQTT messages received.",
    "plantwatch_messages_rejected_total": "MQTT messages rejected, by reason.",
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
    "plantwatch_model_restores_failed_total": "Saved models that could not be restored (a new baseline is learned).",
    "plantwatch_detector_errors_total": "Batches the detector stage failed on (logged; ingestion goes on).",
    "plantwatch_alerts_opened_total": "Alerts opened.",
    "plantwatch_alerts_resolved_total": "Alerts resolved.",
    "plantwatch_maintenance_alerts_opened_total": "Maintenance alerts opened (projected threshold crossing due).",
    "plantwatch_maintenance_alerts_resolved_total": "Maintenance alerts resolved.",
    "plantwatch_baselines_relearned_total": "Baselines forgotten on request (POST /assets/{asset}/relearn).",
}


class Counters:
    """Thread-safe monotonically increasing counters with optional labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def get(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._values.get(name, {}).get(key, 0.0)

    def total(self, name: str) -> float:
        with self._lock:
            return sum(self._values.get(name, {}).values())

    def render(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            names = sorted(set(self._values) | set(_HELP))
            for name in names:
                lines.append(f"# HELP {name} {_HELP.get(name, name)}")
                lines.append(f"# TYPE {name} counter")
                series = self._values.get(name) or {(): 0.0}
                for key, value in sorted(series.items()):
                    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                    suffix = f"{{{label_text}}}" if label_text else ""
                    lines.append(f"{name}{suffix} {value:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
