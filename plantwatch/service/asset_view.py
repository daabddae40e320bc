"""What ``GET /assets`` says of one asset: its state, baseline, latest verdict and model, as plain data.

Read on the API's thread from a monitor the detector thread owns, like ``/healthz``: each value is
read once, and a value that changes meanwhile is at worst one batch old.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from detector.monitor import AssetMonitor
from detector.types import Verdict

LEARNING, NORMAL, ALARM, STOPPED = "learning", "normal", "alarm", "stopped"


def asset_view(monitor: AssetMonitor, latest: Verdict | None) -> dict[str, Any]:
    """One asset as ``api.schemas.AssetOut`` takes it."""
    config, model = monitor.config, monitor.model_
    learned = model is not None
    # Rows it learns from (more once extended: detector.baseline_extensions), or learned from.
    rows = monitor.learned_baseline_rows if learned else monitor.baseline_.size
    if not learned:
        latest = None  # a verdict of a model since forgotten (relearn) says nothing of the one being learned
    return {
        "asset": monitor.asset,
        "state": _state(learned, latest),
        "learned": learned,
        "baseline_rows": rows,
        "baseline_rows_seen": rows if learned else monitor.baseline_.count,
        "alarm_enter": monitor.alarm_enter if learned else None,
        "last_row_at_ns": None if latest is None else latest.ts_ns,
        "probability": None if latest is None or latest.warming_up or not latest.running else latest.probability,
        "anomaly": latest is not None and latest.anomaly,
        "top_sensors": []
        if latest is None or not latest.anomaly
        else [dataclasses.asdict(c) for c in latest.contributions],
        "unseen_operating_point": latest is not None and latest.unseen_operating_point,
        "sensors": list(monitor.sensor_names or ()),
        "drifting_sensors": list(monitor.drifting_sensors),
        "stale_sensors": list(monitor.stale_sensors()),
        "detector": config.detector,
        "features": list(config.features or ()),
        "window_s": None if model is None else model.window_s,
        "refits": monitor.refits_,
        "in_memory": True,
    }


def baseline_view(monitor: AssetMonitor) -> dict[str, Any]:
    """The asset's entry in ``/healthz`` ``baselines``."""
    return {
        "learned": monitor.is_warm,
        "drifting_sensors": list(monitor.drifting_sensors),
        "alarm_enter": monitor.alarm_enter if monitor.is_warm else None,
        "scores_beyond_enter": monitor.scores_beyond_enter,
        "smallest_shifts": _shifts(monitor),
        "advice": monitor.baseline_advice(),
        "unknown_sensors": sorted(monitor.unknown_sensors),
        "stale_sensors": list(monitor.stale_sensors()),
        "in_memory": True,
    }


def _shifts(monitor: AssetMonitor) -> dict[str, dict[str, float | None]] | None:
    """The smallest settled shift of each sensor the alarm flags, as the detector thread worked it out
    for the current model and alarm level (None before a baseline, or until it has)."""
    shifts = monitor.smallest_shifts(work_out=False)
    return shifts.as_dict() if shifts is not None else None


def _state(learned: bool, latest: Verdict | None) -> str:
    if not learned:
        return LEARNING
    if latest is not None and not latest.running:
        return STOPPED
    return ALARM if latest is not None and latest.anomaly else NORMAL
