"""How the service logs alert events and learned baselines: one line an operator can act on."""

from __future__ import annotations

import logging
from typing import Any

from detector.events import BaselineExtended, BaselineLearned
from detector.types import Contribution

log = logging.getLogger(__name__)

# Opening an alert is what an operator must see; peak updates are only for debugging.
_EVENT_LEVELS = {"opened": logging.WARNING, "reopened": logging.INFO, "resolved": logging.INFO}


def log_baseline_learned(asset: str, learned: BaselineLearned) -> None:
    drifting = learned.drifting_sensors
    note = f"; level wanders over the baseline, judged by how they move only: {', '.join(drifting)}" if drifting else ""
    log.info("baseline of %s learned, scoring starts%s", asset, note)
    if learned.advice:
        log.warning("%s", learned.advice)


def log_baseline_extended(asset: str, extended: BaselineExtended) -> None:
    ways = ((extended.rose, "rose"), (extended.fell, "fell"))
    moved = [f"{', '.join(names)} only {way}" for names, way in ways if names]
    log.warning(
        "baseline of %s: %s in its %d rows; learning until row %d to see the way back (extension %d of %d, "
        "detector.baseline_extensions)",
        asset,
        "; ".join(moved),
        extended.rows,
        extended.size,
        extended.extension,
        extended.extensions,
    )


def _feature_suffix(feature: str) -> str:
    # A reading needs no label; a level or a movement figure does ("motor_temp spread=0.8").
    return "" if feature in ("", "raw") else f" {feature}"


def _how_far(c: Contribution) -> str:
    if c.feature == "flat":
        return "stuck: unchanged, a sensor fault"
    if c.feature == "silent":
        return f"no reading for {c.value:.0f} s"
    if c.feature == "out_of_range":
        return f"beyond what the instrument reads, {c.expected_low:.4g}..{c.expected_high:.4g}: a sensor fault"
    if c.feature == "drift":  # a maintenance driver: how far its drift has come towards the threshold
        if c.expected_high <= 0:
            return "named by the remaining-life model"
        return f"{c.direction}, {abs(c.value) / c.expected_high:.0%} of the drift at the maintenance threshold"
    expected = f"{c.expected_low:.4g}..{c.expected_high:.4g}"
    if c.within_expected:  # "low, expected -0.49..0.51" for -0.32 would read as a contradiction
        return f"within expected {expected}, unusual with the others"
    return f"{c.direction}, expected {expected}"


def log_alert_event(event: Any) -> None:
    alert = event.alert
    level = _EVENT_LEVELS.get(event.kind, logging.DEBUG)
    if not log.isEnabledFor(level):
        return
    sensors = ", ".join(
        f"{c.sensor}{_feature_suffix(c.feature)}={c.value:.4g} ({_how_far(c)}, {c.share:.0%})"
        for c in alert.top_sensors
    )
    # Sensors that moved together beyond the baseline's range, as a new load would: say so first,
    # so the line does not read as a fault of each of them.
    where = "an operating point the baseline never saw; " if getattr(alert, "unseen_operating_point", False) else ""
    log.log(
        level,
        "alert %s: asset=%s kind=%s severity=%s peak_probability=%.9f %stop sensors: %s",
        event.kind,
        alert.asset,
        alert.kind,
        alert.severity,
        alert.peak_probability,
        where,
        sensors or "-",
    )
