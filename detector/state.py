"""A monitor's saved state: flat keys -> arrays or plain JSON values (no objects, no pickle), and back.

This is a file format (``plantwatch/service/model_store.py`` stores it as one JSON and one npz file per
asset; ``tests/data/models-v1`` holds models written before the monitor was split into parts). Keys
are only ever added; every older layout is read here and nowhere else:

* ``settings``: JSON text of ``MonitorConfig.model_settings()``; a model is refused (``ValueError``)
  when they differ from the restoring monitor's, except ``adapt_every`` without adaptation (its default
  was 1,000 until commit b38dce6; it shapes nothing when ``adapt`` is off).
* ``refill_until``: absent from models saved before gaps were handled (before commit e52ded4): no
  refill pending.
* ``stopped``/``started_at``: the operating state (:mod:`detector.running`); absent from models saved
  before operating states: running, no start.
* ``baseline_extensions``: how often the learned baseline was extended (``detector.baseline``); absent
  from models saved before: none. Rows saved while warming up say how far an extension had come.
* ``columns``: absent when every feature column is used, and from models saved before drifting
  sensors were left out (before commit 73b719e).
* ``episode``: absent when no baseline episode set the alarm level, and before commit 20ddc91.
* ``one_way``: per sensor, +1 / -1 / 0 (:mod:`detector.transitions`); absent before it was learned:
  no advice about it.
* ``recal_*``: the recalibration (:mod:`detector.recalibration`): the baseline's scores, the memory of
  live scores, the rows waiting to be learned and the raised alarm level; absent from models saved
  before it (and with ``recalibrate`` off): a recalibration starts afresh from the model's calibrator.
  The baseline's scores are the calibrator's: ``recal_shared`` says so, and they are read from
  ``calibrator/baseline_scores``; models saved before that hold a copy in ``recal_scores``.
  ``recal_held`` / ``recal_held_long``, the open alert's scores while it is short: absent before
  short alerts were learned, when an alert open at the save is taken as a long one.
  ``recal_peaks``/``recal_peaks_seq``/``recal_peaks_counts`` (``[seen, rows learned since the peaks
  began]``), the live scores beyond the tail threshold: absent before they were kept, when the peaks
  begin empty at the restart.
* ``feedback/*``: the baseline's feature rows, the rows operators marked normal and the recent alert
  rows (:mod:`detector.feedback`); absent from models saved before feedback was kept: such a model
  cannot learn feedback until its baseline is relearned.
* ``alert_rate``: ``[rho, sample_s, reachable]`` of :class:`detector.alert_rate.AlertRate` (the third
  added later: read as 1.0, uncapped, when absent); absent from models saved
  before the alarm level was derived from ``false_alerts_per_week``: read as ``rho`` 1 (the
  conservative bound) and the sampling interval the feature window was made from.
* ``memory``/``memory_seq``/``memory_counts``: the adaptation memory since commit 22fa344; before it,
  ``ring``/``ring_pos`` held a ring of the latest rows (read as a memory of those rows, oldest first).

Alignment state is not kept: after a restart the first readings complete rows again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.adaptation import ADAPT_MEMORY, Adaptation
from detector.alert_rate import AlertRate
from detector.baseline import BaselineModel
from detector.calibration import Calibrator
from detector.config import MonitorConfig
from detector.episode import BaselineEpisode
from detector.features import RollingFeatures
from detector.feedback import AlertRows, Feedback
from detector.gate import NEVER
from detector.memory import NormalMemory
from detector.recalibration import Recalibration, restored_live_memory, restored_live_peaks


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare fields, not these
class Learned:
    """A warm monitor's learned parts."""

    model: BaselineModel
    features: RollingFeatures
    adaptation: Adaptation | None
    recalibration: Recalibration | None = None
    feedback: Feedback | None = None


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare fields, not these
class MonitorState:
    """Everything a monitor saves, decoded."""

    sensors: tuple[str, ...] | None
    counters: tuple[int, int, int, int, int]  # rows seen, scored, skipped, late, refits
    last_ts: int
    refill_until: int
    alarm: dict[str, Any]
    stopped: bool = False  # the last usable row was stopped (detector.running)
    started_at: int = NEVER  # the latest start's stamp
    baseline_extensions: int = 0  # how often the learned baseline was extended (detector.baseline)
    baseline: tuple[np.ndarray, np.ndarray] | None = None  # the rows so far, while warming up
    learned: Learned | None = None


def encode(saved: MonitorState, config: MonitorConfig) -> dict[str, Any]:
    """The flat state of ``saved`` (see the module docstring)."""
    state: dict[str, Any] = {
        "settings": json.dumps(config.model_settings(), sort_keys=True),  # nested params: one JSON text
        "sensors": list(saved.sensors) if saved.sensors else None,
        "counters": list(saved.counters),
        "last_ts": int(saved.last_ts),
        "refill_until": int(saved.refill_until),
        "stopped": bool(saved.stopped),
        "started_at": int(saved.started_at),
        "baseline_extensions": int(saved.baseline_extensions),
        "warm": saved.learned is not None,
    }
    state.update(_prefixed("alarm/", saved.alarm))
    if saved.learned is None:
        if saved.baseline is not None:
            state["baseline/ts"], state["baseline/X"] = saved.baseline
        return state
    model = saved.learned.model
    state["window_s"] = float(model.window_s or 0.0)
    state["expected_low"], state["expected_high"] = model.expected_low, model.expected_high
    state["center"] = model.center
    state["feature_low"], state["feature_high"] = model.feature_low, model.feature_high
    state["drifting"] = model.drifting.astype(np.int8)
    if model.one_way is not None:
        state["one_way"] = model.one_way.astype(np.int8)
    if model.columns is not None:
        state["columns"] = model.columns.astype(np.int8)
    if model.episode is not None:
        e = model.episode
        state["episode"] = [e.start_ns, e.end_ns, e.scores_beyond, e.scores_beyond_total, e.rarity]
    rate = model.alert_rate
    state["alert_rate"] = [rate.rho, rate.sample_s, rate.reachable]
    state.update(_prefixed("detector/", model.detector.get_state()))
    state.update(_prefixed("calibrator/", model.calibrator.get_state()))
    state.update(_prefixed("features/", saved.learned.features.get_state()))
    adaptation = saved.learned.adaptation
    if adaptation is not None:
        state["memory"], state["memory_seq"], seen = adaptation.memory.get_state()
        state["memory_counts"] = [seen, adaptation.since_refit]
    recalibration = saved.learned.recalibration
    if recalibration is not None:
        state.update(_encode_recalibration(recalibration, model.calibrator))
    feedback = saved.learned.feedback
    if feedback is not None:
        state["feedback/baseline"], state["feedback/marked"] = feedback.baseline32, feedback.marked
        state["feedback/alert_ts"], state["feedback/alert_F"] = feedback.alerts.ts, feedback.alerts.F
        state["feedback/enter"] = feedback.enter_
    return state


def decode(state: Mapping[str, Any], config: MonitorConfig, asset: str, sensors: Sequence[str] | None) -> MonitorState:
    """``state`` decoded for a monitor of ``config``; ``ValueError`` when it was learned with other
    settings or its parts do not fit together. ``sensors``: the monitor's own, if the state names none."""
    saved = json.loads(str(state["settings"]))
    if _comparable(saved) != _comparable(json.loads(json.dumps(config.model_settings()))):
        raise ValueError(f"saved model of {asset!r} was learned with other settings: {saved}")
    names = tuple(state["sensors"]) if state["sensors"] is not None else None
    rows_seen, scored, skipped, late, refits = (int(v) for v in state["counters"])
    common: dict[str, Any] = {
        "sensors": names,
        "counters": (rows_seen, scored, skipped, late, refits),
        "last_ts": int(state["last_ts"]),
        "refill_until": int(state["refill_until"]) if "refill_until" in state else NEVER,
        "stopped": bool(state.get("stopped", False)),
        "started_at": int(state.get("started_at", NEVER)),
        "baseline_extensions": int(state.get("baseline_extensions", 0)),
        "alarm": _unprefixed("alarm/", state),
    }
    if not state["warm"]:
        baseline = None
        if "baseline/ts" in state:
            baseline = np.asarray(state["baseline/ts"], dtype=np.int64), np.asarray(state["baseline/X"], np.float64)
        return MonitorState(**common, baseline=baseline)
    learned = _decode_learned(state, config)
    width = names if names is not None else (tuple(sensors) if sensors is not None else None)
    _check_shapes(learned.model, config, asset, None if width is None else len(width))
    return MonitorState(**common, learned=learned)


def _decode_learned(state: Mapping[str, Any], config: MonitorConfig) -> Learned:
    episode = None
    if "episode" in state:
        start, end, inside, total, rarity = state["episode"]
        episode = BaselineEpisode(int(start), int(end), int(inside), int(total), float(rarity))
    window_s = float(state["window_s"])
    # Older layouts: [rho, sample_s] without the reachable probability (read as uncapped); before the
    # level was derived, nothing: the bound rho = 1, and the sampling interval behind the window.
    rho, sample_s, reachable = 1.0, (window_s / config.window_samples if config.window_s is None else 1.0), 1.0
    if "alert_rate" in state:
        saved_rate = [float(v) for v in state["alert_rate"]]
        rho, sample_s = saved_rate[:2]
        reachable = saved_rate[2] if len(saved_rate) > 2 else 1.0
    model = BaselineModel(
        window_s=window_s,
        detector=config.make_detector().set_state(_unprefixed("detector/", state)),
        calibrator=config.make_calibrator().set_state(_unprefixed("calibrator/", state)),
        expected_low=np.asarray(state["expected_low"]),
        expected_high=np.asarray(state["expected_high"]),
        center=np.asarray(state["center"]),
        feature_low=np.asarray(state["feature_low"]),
        feature_high=np.asarray(state["feature_high"]),
        drifting=np.asarray(state["drifting"]).astype(bool),
        columns=np.asarray(state["columns"]).astype(bool) if "columns" in state else None,
        episode=episode,
        alert_rate=AlertRate(rho, sample_s, reachable),
        one_way=np.asarray(state["one_way"]).astype(np.int8) if "one_way" in state else None,
    )
    features = RollingFeatures(window_s, config.column_features)
    features.set_state(_unprefixed("features/", state))
    adaptation = _decode_adaptation(state, config) if config.adapt else None
    recalibration = _decode_recalibration(state, config, model) if config.recalibrates else None
    return Learned(model, features, adaptation, recalibration, _decode_feedback(state))


def _decode_feedback(state: Mapping[str, Any]) -> Feedback | None:
    if "feedback/baseline" not in state:  # saved before feedback was kept
        return None
    alerts = AlertRows(np.asarray(state["feedback/alert_ts"], dtype=np.int64), np.asarray(state["feedback/alert_F"]))
    marked = np.asarray(state["feedback/marked"])
    return Feedback(np.asarray(state["feedback/baseline"]), marked, alerts, float(state["feedback/enter"]))


def _encode_recalibration(recalibration: Recalibration, calibrator: Calibrator) -> dict[str, Any]:
    memory, seq, seen = recalibration.memory.get_state()
    peaks, peaks_seq, peaks_seen = recalibration.peaks.get_state()
    scores = recalibration.baseline_scores
    shared = np.array_equal(scores, calibrator.baseline_scores_)
    # The calibrator's own scores, as always since they were shared: saved once, with the calibrator.
    return {
        **({"recal_shared": 1} if shared else {"recal_scores": scores.copy()}),
        "recal_memory": memory.ravel(),
        "recal_seq": seq,
        "recal_pending": np.array(recalibration.pending, dtype=np.float64),
        "recal_counts": [seen, recalibration.since_refit, recalibration.guard_left, int(recalibration.in_alert)],
        "recal_enter": recalibration.enter_,
        # the open alert's scores while it is short (a long one's are not kept)
        "recal_held": np.array(recalibration.held or [], dtype=np.float64),
        "recal_held_long": int(recalibration.held is None),
        "recal_peaks": peaks.ravel(),
        "recal_peaks_seq": peaks_seq,
        "recal_peaks_counts": [peaks_seen, recalibration.peaks_of],
    }


def _decode_recalibration(state: Mapping[str, Any], config: MonitorConfig, model: BaselineModel) -> Recalibration:
    if "recal_counts" not in state:  # saved before recalibration, or with it off
        return Recalibration.start(config, model.calibrator)
    seen, since_refit, guard_left, in_alert = (int(v) for v in state["recal_counts"])
    peaks, peaks_of = None, 0
    if "recal_peaks" in state:  # absent before the peaks were kept: they begin now
        peaks_seen, peaks_of = (int(v) for v in state["recal_peaks_counts"])
        peaks = restored_live_peaks(state["recal_peaks"], state["recal_peaks_seq"], peaks_seen)
    scores = model.calibrator.baseline_scores_  # "recal_shared" (saved once, with the calibrator)
    if "recal_scores" in state:  # saved twice before that, or (never so far) scores of their own
        saved = np.asarray(state["recal_scores"], dtype=np.float64).ravel()
        scores = scores if np.array_equal(saved, scores) else saved
    return Recalibration(
        scores,
        restored_live_memory(config, state["recal_memory"], state["recal_seq"], seen),
        since_refit,
        state["recal_pending"],
        guard_left,
        bool(in_alert),
        float(state["recal_enter"]),
        None if int(state.get("recal_held_long", 1)) else state["recal_held"],
        peaks,
        peaks_of,
    )


def _decode_adaptation(state: Mapping[str, Any], config: MonitorConfig) -> Adaptation:
    if "memory" in state:
        rows, counts = state["memory"], state["memory_seq"]
        seen, since_refit = (int(v) for v in state["memory_counts"])
    elif "ring" in state:  # the ring of the latest rows of versions before commit 22fa344
        size, next_slot = int(state["ring_pos"][0]), int(state["ring_pos"][1])
        ring = np.asarray(state["ring"], dtype=np.float64)
        # A full ring's oldest row is at the next slot to write; a filling one starts at 0.
        rows = np.roll(ring, -next_slot, axis=0) if size == ring.shape[0] else ring[:size]
        counts, seen = np.arange(1, rows.shape[0] + 1), rows.shape[0]
        since_refit = int(state["ring_pos"][2])
    else:
        raise ValueError("it adapts, but holds no memory of normal rows to refit on")
    memory = NormalMemory.from_state(ADAPT_MEMORY * config.baseline_rows, rows, counts, seen)
    return Adaptation(memory, since_refit)


def _check_shapes(model: BaselineModel, config: MonitorConfig, asset: str, n: int | None) -> None:
    """``ValueError`` unless the restored arrays fit together (a foreign or damaged file would
    otherwise load and then fail on every row)."""
    per_sensor = {"expected_low": model.expected_low, "expected_high": model.expected_high}
    per_sensor |= {"center": model.center, "drifting": model.drifting}
    if model.one_way is not None:
        per_sensor["one_way"] = model.one_way
    widths = {name: np.asarray(v).shape for name, v in per_sensor.items()}
    if n is None or any(shape != (n,) for shape in widths.values()):
        raise ValueError(f"saved model of {asset!r}: per-sensor arrays {widths} do not fit {n} sensors")
    n_columns = n * len(config.column_features)
    columns = {"feature_low": model.feature_low, "feature_high": model.feature_high}
    if model.columns is not None:
        columns["columns"] = model.columns
    if any(np.asarray(v).shape != (n_columns,) for v in columns.values()):
        raise ValueError(f"saved model of {asset!r}: feature arrays do not fit {n_columns} feature columns")
    width = int(model.columns.sum()) if model.columns is not None else n_columns
    try:  # the detector and calibrator must take a row of that width
        model.calibrator.transform(model.detector.score(np.zeros((1, width))))
    except Exception as exc:
        raise ValueError(f"saved model of {asset!r} cannot score a row of {width} features: {exc}") from exc


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Model settings as far as they shape a saved model: without adaptation, ``adapt_every`` does not."""
    out = dict(settings)
    if not out.get("adapt"):
        out.pop("adapt_every", None)
    return out


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in values.items()}


def _unprefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in values.items() if key.startswith(prefix)}
