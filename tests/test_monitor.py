"""AssetMonitor: the chain the live service and the backtest share — restarts, adaptation, explanations."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from saved_state import through_disk
from waiting import wait_until

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.calibration import EmpiricalCalibrator
from detector.config import MonitorConfig
from detector.events import BaselineLearned
from detector.features import level_drift_ratio
from detector.monitor import SCORED, SKIPPED, WARMING_UP, AssetMonitor
from ingest.messages import Reading
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.model_store import decode, encode, load_state, save_state
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

SENSORS = ("flow", "current", "pressure", "temp")
CONFIGS: list[dict[str, Any]] = [
    {},  # the monitor's defaults
    {"detector": "robust_z", "features": None},
    {"detector": "pca_spc", "features": ["level", "spread", "slope"], "adapt": True, "adapt_every": 150},
    {"detector": "iforest", "detector_params": {"model_params": {"n_estimators": 30}}, "calibration": "empirical"},
]


def plant(n: int = 1500, fault: tuple[int, int] = (1000, 1200), seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flow = 30 + np.sin(np.arange(n) / 40) + rng.normal(0, 0.2, n)
    X = np.column_stack(
        [
            flow,
            2 + 0.05 * flow + rng.normal(0, 0.01, n),
            1 - 0.01 * flow + rng.normal(0, 0.005, n),
            rng.normal(60, 0.2, n),
        ]
    )
    X[fault[0] : fault[1], 3] += 3.0  # the motor runs hot
    ts = (1_700_000_000 + np.arange(n, dtype=np.int64)) * 10**9
    return ts, X


def monitor(**config: Any) -> AssetMonitor:
    return AssetMonitor("pump", MonitorConfig(baseline_rows=300, **config), SENSORS)


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: c.get("detector", "default") + ("+adapt" if c.get("adapt") else "")
)
@pytest.mark.parametrize("cut", [150, 700, 1100])  # during warm-up, while normal, inside the fault
def test_restart_from_saved_state_continues_identically(config: dict[str, Any], cut: int, tmp_path: Path) -> None:
    ts, X = plant()
    whole = monitor(**config).process_arrays(ts, X)
    first = monitor(**config)
    first.process_arrays(ts[:cut], X[:cut])
    second = monitor(**config).set_state(through_disk(first.get_state(), tmp_path))
    rest = second.process_arrays(ts[cut:], X[cut:])
    assert np.array_equal(rest.score, whole.score[cut:], equal_nan=True)
    assert np.array_equal(rest.probability, whole.probability[cut:], equal_nan=True)
    assert np.array_equal(rest.anomaly, whole.anomaly[cut:])


@pytest.mark.parametrize("config", CONFIGS[:3], ids=["default", "robust_z", "adapt"])
def test_micro_batches_and_truncation_change_nothing(config: dict[str, Any]) -> None:
    ts, X = plant()
    whole = monitor(**config).process_arrays(ts, X)
    split = monitor(**config)
    bounds = [0, 1, 7, 299, 300, 301, 640, 1001, 1313, 1500]
    parts = [split.process_arrays(ts[a:b], X[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert np.array_equal(np.concatenate([p.score for p in parts]), whole.score, equal_nan=True)
    assert np.array_equal(np.concatenate([p.anomaly for p in parts]), whole.anomaly)
    truncated = monitor(**config).process_arrays(ts[:900], X[:900])
    assert np.array_equal(truncated.probability, whole.probability[:900], equal_nan=True)


def readings(ts: np.ndarray, X: np.ndarray) -> list[tuple[int, dict[str, float]]]:
    return [(int(t), dict(zip(SENSORS, row.tolist(), strict=True))) for t, row in zip(ts, X, strict=True)]


@pytest.mark.parametrize("config", [{}, {"adapt": True, "adapt_every": 100}], ids=["default", "adapt"])
def test_observing_in_two_halves_with_features_worked_out_together_changes_nothing(config: dict[str, Any]) -> None:
    """The detector stage's path (begin_observe, the assets' features and model scores together,
    finish_observe) gives the verdicts, events and saved state of observe."""
    from detector.features import update_streams
    from detector.fleet import score_together

    data = [plant(900, fault=(700, 760), seed=s) for s in (1, 2, 3)]
    together, alone = [monitor(**config) for _ in data], [monitor(**config) for _ in data]
    joined = jointly_scored = anomalies = 0
    for start in range(0, 900, 7):
        batches = [readings(ts[start:][:7], X[start:][:7]) for ts, X in data]
        pending = [m.begin_observe(b) for m, b in zip(together, batches, strict=True)]
        ready = [(i, f) for i, p in enumerate(pending) if (f := p.feature_input) is not None]
        joint = update_streams([f[0] for _, f in ready], [(f[1], f[2]) for _, f in ready])
        features: list[np.ndarray | None] = [None] * len(pending)
        for (i, _), F in zip(ready, joint, strict=True):
            features[i], joined = F, joined + (F is not None)
        inputs = [
            (i, mi)
            for i, (m, p, F) in enumerate(zip(together, pending, features, strict=True))
            if F is not None and (mi := m.model_input(p, F)) is not None
        ]
        scores: list[Any] = [None] * len(pending)
        for (i, _), scored in zip(inputs, score_together([mi for _, mi in inputs]), strict=True):
            scores[i], jointly_scored = scored, jointly_scored + (scored is not None)
        for m, p, F, S, own, b in zip(together, pending, features, scores, alone, batches, strict=True):
            got, want = m.finish_observe(p, F, S), own.observe(b)
            assert got.verdicts == want.verdicts and got.events == want.events
            assert [(t, r.tolist()) for t, r in got.rows] == [(t, r.tolist()) for t, r in want.rows]
            anomalies += sum(v.anomaly for v in got.verdicts)
    assert joined > 100 and jointly_scored > 100 and anomalies > 0  # worked out together; the faults flagged
    for m, own in zip(together, alone, strict=True):
        mine, theirs = m.get_state(), own.get_state()
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(theirs[key]), err_msg=key)


def test_restoring_with_other_settings_is_refused() -> None:
    ts, X = plant()
    first = monitor()
    first.process_arrays(ts[:400], X[:400])
    with pytest.raises(ValueError, match="other settings"):
        monitor(detector="robust_z").set_state(first.get_state())


def test_the_fault_is_found_and_explained() -> None:
    ts, X = plant()
    m = monitor()
    verdicts = m.process(ts, X)
    flagged = [v for v in verdicts if v.anomaly]
    assert flagged, "the hot motor was not flagged"
    in_fault = [v for v in flagged if ts[1000] <= v.ts_ns < ts[1200]]
    assert len(in_fault) > 0.8 * len(flagged)
    for verdict in in_fault:
        top = verdict.contributions[0]
        assert top.sensor == "temp" and top.direction == "high"
        assert top.feature in ("raw", "level", "spread")
        assert top.expected_low < top.expected_high < top.value  # above the range learned from the baseline
        if top.feature == "spread":  # the step inside the window: its spread, against the baseline's spreads
            assert top.expected_high < 0.5
        else:  # the reading, against the baseline's readings
            assert top.expected_low < 60 < top.expected_high
        assert 0 < top.share <= 1 and sum(c.share for c in verdict.contributions) <= 1 + 1e-9


def test_adaptation_never_learns_the_fault() -> None:
    # A fault that lasts far longer than adapt_every: refits happen, but only on clearly normal rows,
    # so the fault stays flagged until it ends.
    ts, X = plant(n=3000, fault=(1000, 2800))
    m = monitor(detector="pca_spc", adapt=True, adapt_every=200)
    out = m.process_arrays(ts, X)
    assert m.refits_ >= 1
    assert out.anomaly[1100:2800].mean() > 0.95


def test_adaptation_follows_slow_normal_drift() -> None:
    ts, X = plant(n=6000, fault=(0, 0))
    X[:, 3] += np.linspace(0, 3, 6000)  # the ambient warms up over hours: normal operation
    fixed = monitor(features=["raw"]).process_arrays(ts, X)
    adaptive = monitor(features=["raw"], adapt=True, adapt_every=100).process_arrays(ts, X)
    assert adaptive.anomaly[3000:].mean() < 0.05 < fixed.anomaly[3000:].mean()


def test_adaptation_does_not_narrow_itself_on_steady_data() -> None:
    # Normal rows between exit and enter are learned too: dropping the top of the normal
    # distribution at every refit would make each model narrower than the last (false alarms grow).
    ts, X = plant(n=16000, fault=(0, 0))
    m = monitor(adapt=True, adapt_every=300)
    m.process_arrays(ts[:600], X[:600])
    assert m.model_ is not None and isinstance(m.model_.calibrator, EmpiricalCalibrator)
    first = np.quantile(m.model_.calibrator.baseline_scores_, 0.95)
    out = m.process_arrays(ts[600:], X[600:])
    assert m.refits_ > 40
    assert m.model_ is not None and isinstance(m.model_.calibrator, EmpiricalCalibrator)
    assert np.quantile(m.model_.calibrator.baseline_scores_, 0.95) > 0.7 * first
    assert out.anomaly.mean() < 0.01


def test_adaptation_memory_is_a_uniform_time_ordered_sample_whatever_the_batching() -> None:
    ts, X = plant(n=6000, fault=(0, 0))
    whole = monitor(adapt=True, adapt_every=250)
    whole.process_arrays(ts, X)
    split = monitor(adapt=True, adapt_every=250)
    for a, b in zip([0, 3, 301, 1777, 4000], [3, 301, 1777, 4000, 6000], strict=True):
        split.process_arrays(ts[a:b], X[a:b])
    assert whole.adaptation_ is not None and split.adaptation_ is not None
    memory = whole.adaptation_.memory
    for mine, theirs in zip(memory.get_state(), split.adaptation_.memory.get_state(), strict=True):
        assert np.array_equal(np.asarray(mine), np.asarray(theirs))
    size, seen = memory.size, memory.seen
    assert size == 4 * 300 and seen > 5000  # full; nearly every row was normal
    seq = memory.counts()
    assert np.unique(seq).size == size and seq.max() <= seen
    older_half = np.mean(seq <= seen / 2)
    assert 0.4 < older_half < 0.6  # old operating conditions are kept as well as recent ones


def test_adaptation_explains_each_row_with_the_model_that_scored_it() -> None:
    ts, X = plant(n=2400, fault=(1000, 1400))
    X[1900:2000, 0] += 3.0  # a second fault after several refits
    config: dict[str, Any] = {"adapt": True, "adapt_every": 200}
    batch, explained = monitor(**config).process_explained(ts, X)
    one_by_one = monitor(**config)
    singles: dict[int, Any] = {}
    for i in range(ts.size):
        singles.update({i + k: v for k, v in one_by_one.process_explained(ts[i : i + 1], X[i : i + 1])[1].items()})
    assert set(explained) == set(np.flatnonzero(batch.anomaly).tolist()) and len(explained) > 100
    assert explained == singles


def test_a_model_saved_with_the_older_ring_memory_still_adapts(tmp_path: Path) -> None:
    ts, X = plant(n=1200, fault=(0, 0))
    first = monitor(adapt=True, adapt_every=250)
    first.process_arrays(ts[:800], X[:800])
    state = first.get_state()
    rows = state.pop("memory")
    state.pop("memory_seq"), state.pop("memory_counts")
    state["ring"], state["ring_pos"] = rows, [rows.shape[0], 0, 100]  # the earlier layout
    restored = monitor(adapt=True, adapt_every=250).set_state(through_disk(state, tmp_path))
    adaptation = restored.adaptation_
    assert adaptation is not None and adaptation.memory.size == rows.shape[0] and adaptation.since_refit == 100
    restored.process_arrays(ts[800:], X[800:])
    assert restored.refits_ > first.refits_


def test_late_and_non_finite_rows_are_skipped() -> None:
    ts, X = plant(n=600)
    ts = ts.copy()
    ts[450] = ts[440]  # a row stamped in the past
    X = X.copy()
    X[460, 1] = np.nan
    X[470, 2] = 1.7976931348623157e308  # an "invalid" sentinel: its square overflows, the row is unusable
    m = monitor()
    out = m.process_arrays(ts, X)
    assert out.status[450] == SKIPPED and out.status[460] == SKIPPED and out.status[470] == SKIPPED
    assert out.status[451] == SCORED and np.isfinite(out.probability[out.status == SCORED]).all()
    assert m.late_rows_ == 1 and m.skipped_rows_ == 3


def test_a_skipped_row_with_a_corrupt_future_stamp_does_not_make_later_rows_late() -> None:
    ts, X = plant(n=600)
    ts, X = ts.copy(), X.copy()
    ts[450] = ts[-1] + 10**15  # ~12 days ahead, on a row that is skipped anyway
    X[450] = np.nan
    m = monitor()
    out = m.process_arrays(ts, X)
    assert out.status[450] == SKIPPED and (out.status[451:] == SCORED).all()
    assert m.late_rows_ == 0


def _saved_model(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, ModelPersistence]:
    """The plant's rows and a model store holding a monitor warm after its first 700 of them."""
    ts, X = plant()
    models = ModelPersistence(str(tmp_path / "models"))
    first = monitor()
    first.process_arrays(ts[:700], X[:700])
    models.save(first)
    return ts, X, models


def test_service_persistence_restores_a_learned_baseline(tmp_path: Path) -> None:
    ts, X, models = _saved_model(tmp_path)
    restored = monitor()
    models.restore(restored)
    assert restored.is_warm
    first = monitor()
    first.process_arrays(ts[:700], X[:700])
    expected = first.process_arrays(ts[700:], X[700:])
    assert np.array_equal(restored.process_arrays(ts[700:], X[700:]).probability, expected.probability)


class _NullSink:
    def write_verdicts(self, verdicts: object) -> None:
        pass


def _stage(
    tmp_path: Path, models: ModelPersistence, config: dict[str, Any], counters: Counters | None = None
) -> DetectorStage:
    """The live detector stage with model persistence, storage left out."""
    counters = counters or Counters()
    return DetectorStage(
        ScoringQueue(),
        sink=_NullSink(),  # type: ignore[arg-type]
        alerts=AlertManager(SqliteAlertStore(tmp_path / "alerts.db"), resolve_after_s=60, counters=counters),
        detector_config=lambda asset: MonitorConfig(**config),
        counters=counters,
        health=StageHealth(),
        stop=threading.Event(),
        models=models,
    )


def _checkpointed(stage: DetectorStage) -> None:
    """Until what the stage changed is in a written checkpoint: they are written on a thread of their
    own, one at a time, so one due while another was written starts at the detector's next loop."""
    stage.checkpoints.wait()
    stage._score([])
    stage.checkpoints.wait()


def _readings(ts: np.ndarray, X: np.ndarray) -> list[Reading]:
    return [Reading("pump", int(ts[i]), dict(zip(SENSORS, X[i].tolist(), strict=True))) for i in range(len(ts))]


def test_relearn_forgets_the_baseline_before_the_next_readings_and_learns_a_new_one(tmp_path: Path) -> None:
    counters = Counters()
    models = ModelPersistence(str(tmp_path / "models"))
    stage = _stage(tmp_path, models, {"baseline_rows": 300}, counters)
    ts, X = plant(n=1000, fault=(0, 0))
    readings = _readings(ts, X)
    stage._score(readings[:400])
    assert stage.monitors["pump"].is_warm
    assert stage.request_relearn("pump") and not stage.request_relearn("fan")
    assert stage.monitors["pump"].is_warm  # nothing happens on the API's thread
    stage._score(readings[400:500])
    _checkpointed(stage)
    monitor = stage.monitors["pump"]
    assert not monitor.is_warm and monitor.rows_seen_ == 100  # the old baseline is gone
    assert "plantwatch_baselines_relearned_total 1" in counters.render()
    after_restart = AssetMonitor("pump", MonitorConfig(baseline_rows=300))
    models.restore(after_restart)
    assert not after_restart.is_warm  # a restart does not bring the old baseline back
    stage._process(readings[500:800])
    assert stage.monitors["pump"].is_warm


def test_relearn_requests_queued_together_are_one_relearn(tmp_path: Path) -> None:
    """504 parallel POSTs had each reset and saved the model, stalling the detector thread for seconds."""
    counters = Counters()
    stage = _stage(tmp_path, ModelPersistence(str(tmp_path / "models")), {"baseline_rows": 300}, counters)
    ts, X = plant(n=500, fault=(0, 0))
    readings = _readings(ts, X)
    stage._process(readings[:400])
    for _ in range(50):
        assert stage.request_relearn("pump")
    stage._process(readings[400:450])
    assert counters.get("plantwatch_baselines_relearned_total") == 1
    assert stage.monitors["pump"].rows_seen_ == 50


def test_relearn_right_after_a_restart_reaches_an_asset_known_only_from_its_saved_model(tmp_path: Path) -> None:
    models = ModelPersistence(str(tmp_path / "models"))
    ts, X = plant(n=400, fault=(0, 0))
    first = _stage(tmp_path, models, {"baseline_rows": 300})
    first._score(_readings(ts, X))
    _checkpointed(first)
    assert first.monitors["pump"].is_warm  # checkpointed at warm-up
    restarted = _stage(tmp_path, models, {"baseline_rows": 300})
    assert restarted.request_relearn("pump") and not restarted.request_relearn("never-seen")
    restarted._score([])  # the next batch (of any asset) applies it
    _checkpointed(restarted)
    on_disk = AssetMonitor("pump", MonitorConfig(baseline_rows=300))
    models.restore(on_disk)
    assert not on_disk.is_warm


def test_relearn_is_applied_while_no_readings_arrive(tmp_path: Path) -> None:
    counters = Counters()
    models = ModelPersistence(str(tmp_path / "models"))
    stage = _stage(tmp_path, models, {"baseline_rows": 300}, counters)
    ts, X = plant(n=400, fault=(0, 0))
    stage._process(_readings(ts, X))
    thread = threading.Thread(target=stage.run)
    thread.start()
    try:
        assert stage.request_relearn("pump")
        wait_until(lambda: counters.get("plantwatch_baselines_relearned_total") == 1, 10, "the relearn")
    finally:
        stage.stop.set()
        thread.join()
        stage.checkpoints.wait()
    assert not stage.monitors["pump"].is_warm  # /healthz says so at once, not at the next reading
    on_disk = AssetMonitor("pump", MonitorConfig(baseline_rows=300))
    models.restore(on_disk)
    assert not on_disk.is_warm


def test_a_relearn_requested_just_before_shutdown_is_saved(tmp_path: Path) -> None:
    models = ModelPersistence(str(tmp_path / "models"))
    stage = _stage(tmp_path, models, {"baseline_rows": 300})
    ts, X = plant(n=400, fault=(0, 0))
    stage._process(_readings(ts, X))
    assert stage.request_relearn("pump")
    stage.save_models()  # the pipeline's stop, after the detector thread has ended
    on_disk = AssetMonitor("pump", MonitorConfig(baseline_rows=300))
    models.restore(on_disk)
    assert not on_disk.is_warm  # the old baseline does not come back after the restart


def test_service_persistence_starts_fresh_from_a_broken_or_foreign_model(tmp_path: Path) -> None:
    ts, X = plant()
    models = ModelPersistence(str(tmp_path))
    first = monitor()
    first.process_arrays(ts[:700], X[:700])
    models.save(first)
    other = monitor(detector="robust_z")  # other settings: the saved baseline does not apply
    models.restore(other)
    assert not other.is_warm
    for path in tmp_path.glob("*.state"):
        path.write_bytes(b"not a state file")
    broken = monitor()
    models.restore(broken)
    assert not broken.is_warm and broken.rows_seen_ == 0


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _document_a_list(path: Path) -> None:
    path.write_bytes(encode(cast(dict[str, Any], []), []))


def _one_sensor_fewer(path: Path) -> None:
    document, data = decode(path.read_bytes())
    document["meta"]["sensors"] = document["meta"]["sensors"][:-1]
    path.write_bytes(encode(document, [np.frombuffer(data, np.uint8)]))


def _short_detector_array(path: Path) -> None:
    asset = decode(path.read_bytes())[0]["asset"]
    meta, arrays = load_state(path.parent, asset)  # type: ignore[misc]
    key = next(k for k in arrays if k.startswith("detector/") and arrays[k].ndim == 1 and arrays[k].size > 3)
    arrays[key] = arrays[key][:3]
    save_state(path.parent, asset, meta, arrays)


@pytest.mark.parametrize("damage", [_truncate, _empty, _document_a_list, _one_sensor_fewer, _short_detector_array])
def test_a_damaged_model_file_means_a_new_baseline_and_a_counter(damage: Any, tmp_path: Path) -> None:
    ts, X, models = _saved_model(tmp_path)
    (path,) = (tmp_path / "models").glob("*.state")
    damage(path)
    counters = Counters()
    stage = _stage(tmp_path, models, {"baseline_rows": 300}, counters)
    stage._process(_readings(ts[700:1100], X[700:1100]))
    fresh = stage.monitors["pump"]
    assert fresh.rows_seen_ == 400 and fresh.is_warm  # learned again from the readings after the restart
    assert counters.get("plantwatch_model_restores_failed_total") == 1
    assert stage.health.detector_errors == 0
    # Baseline rows are not counted as scored: a baseline that never completes must not look busy.
    assert counters.get("plantwatch_baseline_rows_total") == 300
    assert counters.get("plantwatch_rows_scored_total") == 100


# -- drifting sensors -------------------------------------------------------------------------


def _wandering(n: int, seed: int) -> np.ndarray:
    """A slow, smooth wander (a temperature following ambient): integrated noise, smoothed."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.05, n))
    return np.convolve(walk, np.ones(50) / 50, mode="same")


def test_level_drift_ratio_separates_wandering_from_steady_and_shared_movement() -> None:
    n = 600
    rng = np.random.default_rng(1)
    ts = (1_700_000_000 + np.arange(n, dtype=np.int64)) * 10**9
    load = np.sin(np.arange(n) / 40)  # flow and current both follow the load
    X = np.column_stack(
        [
            30 + load + rng.normal(0, 0.2, n),  # flow
            2 + 0.05 * load + rng.normal(0, 0.01, n),  # current, explained by the flow
            rng.normal(1.0, 0.1, n),  # pressure: steady
            60 + 20 * _wandering(n, 2) + rng.normal(0, 0.05, n),  # temperature: wanders on its own
            np.full(n, 5.0),  # constant
        ]
    )
    ratio = level_drift_ratio(ts, X, 20.0)
    assert ratio[3] > 100
    assert (ratio[[0, 1, 2]] < 5).all()
    assert ratio[4] == 0.0


def _drifting_plant(n: int = 2400, step: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    flow = 32 + rng.normal(0, 0.45, n)
    if step is not None:
        flow[step[0] : step[1]] -= 1.5  # a valve closes partly: the flow drops and stays down
    t = np.arange(n)
    # The motor temperature wobbles with the ambient during the baseline, then warms up by 4 °C.
    temp = 70 + 0.3 * np.sin(2 * np.pi * t / 300) + 4.0 * np.clip((t - 400) / 2000, 0, None) + rng.normal(0, 0.05, n)
    X = np.column_stack([flow, rng.normal(1.0, 0.25, n), temp])
    ts = (1_700_000_000 + np.arange(n, dtype=np.int64)) * 10**9
    return ts, X


def test_a_wandering_sensor_is_judged_by_how_it_moves_not_where_it_is() -> None:
    ts, X = _drifting_plant()
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=400), ("flow", "current", "temp"))
    out = m.process_arrays(ts, X)
    assert m.drifting_sensors == ("temp",)
    assert X[2000:, 2].min() > X[:400, 2].max() + 2  # it leaves the baseline's range far behind ...
    assert out.anomaly[400:].mean() < 0.02  # ... and is not alarmed on
    judged_by_level = AssetMonitor("pump", MonitorConfig(baseline_rows=400, drift_ratio=0), ("flow", "current", "temp"))
    assert judged_by_level.process_arrays(ts, X).anomaly[400:].mean() > 0.2
    assert judged_by_level.drifting_sensors == ()


def test_a_steady_sensor_beside_a_wandering_one_is_still_watched_and_explained(tmp_path: Path) -> None:
    ts, X = _drifting_plant(step=(1500, 1900))
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=400), ("flow", "current", "temp"))
    out, explanations = m.process_explained(ts, X)
    assert out.anomaly[1530:1900].mean() > 0.9
    assert out.anomaly[400:1500].mean() < 0.02
    tops = [explanations[i].contributions[0] for i in range(1530, 1900) if i in explanations]
    assert tops and all(c.sensor == "flow" and c.direction == "low" for c in tops)
    # the temperature is still watched, but only by its spread
    assert all(c.feature == "spread" for why in explanations.values() for c in why.contributions if c.sensor == "temp")
    # the choice of columns survives a restart
    restored = AssetMonitor("pump", MonitorConfig(baseline_rows=400), ("flow", "current", "temp"))
    first = AssetMonitor("pump", MonitorConfig(baseline_rows=400), ("flow", "current", "temp"))
    first.process_arrays(ts[:1000], X[:1000])
    restored.set_state(through_disk(first.get_state(), tmp_path))
    assert restored.drifting_sensors == ("temp",)
    assert np.array_equal(restored.process_arrays(ts[1000:], X[1000:]).score, out.score[1000:])


def test_a_single_wandering_sensor_is_still_judged_by_its_level() -> None:
    ts, X = _drifting_plant()
    m = AssetMonitor("oven", MonitorConfig(baseline_rows=400), ("temp",))
    m.process_arrays(ts, X[:, 2:])
    assert m.drifting_sensors == ()
    assert m.model_ is not None and m.model_.columns is None


def test_the_service_log_names_drifting_sensors_when_the_baseline_is_learned(caplog: pytest.LogCaptureFixture) -> None:
    from plantwatch.service.alert_log import log_baseline_learned

    ts, X = _drifting_plant(n=500)
    m = AssetMonitor("pump-3", MonitorConfig(baseline_rows=400), ("flow", "current", "temp"))
    learned = _learned_live(m, ts, X)
    assert learned.drifting_sensors == m.drifting_sensors == ("temp",)
    with caplog.at_level("INFO", logger="plantwatch.service"):
        log_baseline_learned("pump-3", learned)
    assert "baseline of pump-3 learned" in caplog.text
    assert "judged by how they move only: temp" in caplog.text


def test_a_short_baseline_says_how_few_scores_its_alarm_level_rests_on(caplog: pytest.LogCaptureFixture) -> None:
    from plantwatch.service.alert_log import log_baseline_learned

    ts, X = _drifting_plant(n=500)
    m = AssetMonitor("pump-3", MonitorConfig(baseline_rows=400, enter=0.995), ("flow", "current", "temp"))
    assert m.scores_beyond_enter is None and m.short_baseline_advice() is None  # nothing learned yet
    learned = _learned_live(m, ts, X)
    assert m.model_ is not None
    n = m.model_.calibrator.n_baseline_
    assert 300 < n <= 400  # the settled baseline rows, each scored by a model fitted without it
    assert m.scores_beyond_enter == pytest.approx(n * 0.005)
    advice = m.short_baseline_advice()
    assert advice is not None and "pump-3" in advice and "enter=0.995" in advice
    needed = int(advice.split("baseline_rows >= ")[1].split(")")[0])
    assert needed * n / 400 * 0.005 == pytest.approx(10, rel=0.02)  # enough rows for 10 scores beyond
    assert learned.advice == advice
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        log_baseline_learned("pump-3", learned)
    assert advice in caplog.text
    # A lower alarm level rests on more scores: 400 rows are enough for enter 0.95.
    relaxed = AssetMonitor(
        "pump-3", MonitorConfig(baseline_rows=400, enter=0.95, exit=0.9), ("flow", "current", "temp")
    )
    relaxed.process_arrays(ts, X)
    assert relaxed.scores_beyond_enter is not None and relaxed.scores_beyond_enter >= 10
    assert relaxed.short_baseline_advice() is None


def _learned_live(m: AssetMonitor, ts: np.ndarray, X: np.ndarray) -> BaselineLearned:
    """Rows as live readings of ``m``'s sensors; the event of the baseline they complete."""
    names = m.sensor_names or ()
    readings = [(int(t), dict(zip(names, row.tolist(), strict=True))) for t, row in zip(ts, X, strict=True)]
    (learned,) = [event for event in m.observe(readings).events if isinstance(event, BaselineLearned)]
    return learned


def _loaded_pump(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """1 Hz rows of four sensors, three following a slow load, one steady."""
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000 * 10**9 + np.arange(n, dtype=np.int64) * 1_000_000_000
    load = np.sin(np.arange(n) / 300)
    noise = rng.normal(0, 0.1, (n, 4))
    return ts, np.column_stack([load, 2 * load, np.zeros(n), -load]) + noise


def test_a_baseline_episode_that_sets_the_alarm_level_is_reported_and_restored(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from plantwatch.service.alert_log import log_baseline_learned

    sensors = ("a", "b", "c", "d")
    ts, X = _loaded_pump(4200)
    fault = X[3600:].copy()
    fault[300:, 2] -= 6.0  # sensor c falls 60 noise widths, 5 minutes into the scored hour
    clean = AssetMonitor("pump", MonitorConfig(baseline_rows=3600), sensors)
    clean.process_arrays(ts[:3600], X[:3600])
    assert clean.scores_beyond_enter is not None and clean.scores_beyond_enter >= 10
    assert clean.model_ is not None and clean.model_.episode is None and clean.baseline_advice() is None
    assert clean.process_arrays(ts[3600:], fault).anomaly[300:].mean() > 0.9

    # The same hour with a 3-minute start-up dip of sensor c, half as deep as the later fault.
    with_dip = X[:3600].copy()
    with_dip[1500:1680, 2] -= 3.0
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=3600), sensors)
    learned = _learned_live(m, ts[:3600], with_dip)
    assert m.model_ is not None
    episode = m.model_.episode
    assert episode is not None
    assert ts[1500] <= episode.start_ns < episode.end_ns <= ts[1680 + 15]  # + the 15-row feature window
    assert episode.scores_beyond >= 0.5 * episode.scores_beyond_total >= 5
    advice = m.baseline_advice()
    assert advice is not None and "one episode, 2023-11-14 22:38" in advice and "will not alarm" in advice
    assert learned.advice == advice
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        log_baseline_learned("pump", learned)
    assert advice in caplog.text
    restored = AssetMonitor("pump", MonitorConfig(baseline_rows=3600), sensors).set_state(
        through_disk(m.get_state(), tmp_path)
    )
    assert restored.model_ is not None and restored.model_.episode == episode
    assert restored.baseline_advice() == advice
    # What the advice warns of: the deeper fault is not flagged at all.
    assert not m.process_arrays(ts[3600:], fault).anomaly.any()
    # Across a cross-fitting block boundary (blocks of ~6 minutes) the episode is named too.
    straddling = X[:3600].copy()
    straddling[1700:1880, 2] -= 3.0
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=3600), sensors)
    m.process_arrays(ts[:3600], straddling)
    assert m.model_ is not None and m.model_.episode is not None and ts[1700] <= m.model_.episode.start_ns


def test_alert_log_lines_label_movement_figures(caplog: pytest.LogCaptureFixture) -> None:
    from alerts.lifecycle import AlertEvent
    from alerts.model import Alert
    from detector.types import Contribution
    from plantwatch.service.alert_log import log_alert_event

    top = (
        Contribution("flow", 0.7, "low", 30.0, 31.0, 33.0, "level"),
        Contribution("motor_temp", 0.3, "high", 0.8, 0.05, 0.2, "spread"),
    )
    alert = Alert.opened("pump-3", "anomaly", 0, "critical", 9.0, 0.9999, top)
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        log_alert_event(AlertEvent("opened", alert))
    assert "flow level=30 (low, expected 31..33, 70%)" in caplog.text
    assert "motor_temp spread=0.8 (high, expected 0.05..0.2, 30%)" in caplog.text


def test_an_alert_log_line_says_when_a_sensor_is_off_only_in_combination(caplog: pytest.LogCaptureFixture) -> None:
    from alerts.lifecycle import AlertEvent
    from alerts.model import Alert
    from api.schemas import SensorContributionOut
    from detector.types import Contribution
    from plantwatch.service.alert_log import log_alert_event

    inside = Contribution("current", 0.6, "low", 1.92, 1.85, 1.98, "level")  # in range: the pairing is off
    outside = Contribution("flow", 0.4, "low", 30.0, 31.0, 33.0, "level")
    alert = Alert.opened("pump-3", "anomaly", 0, "critical", 9.0, 0.9999, (inside, outside))
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        log_alert_event(AlertEvent("opened", alert))
    assert "current level=1.92 (within expected 1.85..1.98, unusual with the others, 60%)" in caplog.text
    assert "flow level=30 (low, expected 31..33, 40%)" in caplog.text
    assert SensorContributionOut.from_contribution(inside).within_expected is True
    assert SensorContributionOut.from_contribution(outside).within_expected is False


def test_maintenance_drivers_say_how_far_their_drift_has_come(caplog: pytest.LogCaptureFixture) -> None:
    from alerts.lifecycle import AlertEvent
    from alerts.model import Alert
    from detector.types import Contribution
    from plantwatch.service.alert_log import log_alert_event

    drift = Contribution("bearing_temp", 0.7, "high", 2.6, -4.0, 4.0, "drift")  # inside ±threshold, yet no
    named = Contribution("vibration", 0.3, "high", 0.0, 0.0, 0.0, "drift")  # combination story to tell
    assert not drift.within_expected and not named.within_expected
    alert = Alert.opened("pump-1", "maintenance", 0, "warning", 0.0, 0.0, (drift, named))
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        log_alert_event(AlertEvent("opened", alert))
    assert "bearing_temp drift=2.6 (high, 65% of the drift at the maintenance threshold, 70%)" in caplog.text
    assert "vibration drift=0 (named by the remaining-life model, 30%)" in caplog.text


@pytest.mark.parametrize("scale, offset", [(1000.0, 0.0), (1e-3, 5.0), (-2.0, 1e4)])
def test_level_drift_ratio_does_not_depend_on_units(scale: float, offset: float) -> None:
    # °C or K, bar or Pa: the rule must pick the same sensors whatever units a plant reports in.
    ts, X = _drifting_plant(n=600)
    ratio = level_drift_ratio(ts, X, 15.0)
    rescaled = X.copy()
    rescaled[:, 0] = rescaled[:, 0] * scale + offset
    rescaled[:, 2] = rescaled[:, 2] * scale + offset
    assert np.allclose(level_drift_ratio(ts, rescaled, 15.0), ratio, rtol=1e-6)


@pytest.mark.parametrize("detector", ["pca_spc", "robust_z", "ensemble"])
@pytest.mark.parametrize("calibration", ["empirical", "pot"])
def test_an_asset_whose_readings_never_change_does_not_alarm(detector: str, calibration: str) -> None:
    # An idle machine with held values: every baseline score ties, and so does every live one.
    n = 1000
    ts = np.arange(n, dtype=np.int64) * 1_000_000_000
    X = np.tile([10.0, 5.0, 3.0], (n, 1))
    m = AssetMonitor(
        "idle", MonitorConfig(baseline_rows=600, detector=detector, calibration=calibration), ("a", "b", "c")
    )
    out = m.process_arrays(ts, X)
    assert not out.anomaly.any()
    assert np.all(out.probability[600:] < 0.6)
    X[900:, 1] = 6.0  # ... until one of them moves
    assert (
        AssetMonitor(
            "idle", MonitorConfig(baseline_rows=600, detector=detector, calibration=calibration), ("a", "b", "c")
        )
        .process_arrays(ts, X)
        .anomaly[910:]
        .all()
    )


def test_rows_refilling_the_window_after_an_outage_are_skipped_not_alarmed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 6000
    ts = np.arange(n, dtype=np.int64) * 1_000_000_000
    outages = np.arange(1000, n, 950)
    for start in outages:
        ts[start:] += 600 * 1_000_000_000  # ten minutes without data
    X = 10 + 0.1 * rng.standard_normal((n, 3))
    m = AssetMonitor("a", MonitorConfig(baseline_rows=600), ("s0", "s1", "s2"))
    out = m.process_arrays(ts, X)
    window = int(m.model_.window_s if m.model_ is not None else 0)
    assert window == 15
    for start in outages:  # a 1-sample spread would look like a dead sensor: not scored ...
        assert (out.status[start : start + window] == SKIPPED).all()
        assert (out.status[start + window : start + window + 5] == SCORED).all()  # ... until refilled
    assert not out.anomaly.any()
    # the same across batch boundaries and a restart in the middle of a refill
    first = AssetMonitor("a", MonitorConfig(baseline_rows=600), ("s0", "s1", "s2"))
    cut = outages[2] + 4
    first.process_arrays(ts[:cut], X[:cut])
    second = AssetMonitor("a", MonitorConfig(baseline_rows=600), ("s0", "s1", "s2")).set_state(
        through_disk(first.get_state(), tmp_path)
    )
    rest = second.process_arrays(ts[cut:], X[cut:])
    assert np.array_equal(rest.status, out.status[cut:])
    assert np.array_equal(rest.probability, out.probability[cut:], equal_nan=True)


def test_a_baseline_that_cannot_be_learned_is_dropped_with_a_clear_error_and_relearned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ts, X = plant(n=60, fault=(0, 0))
    # KNN with 5 neighbours cannot be fitted on the ~4 rows a cross-fitting fold leaves of 12.
    whole = AssetMonitor("pump", MonitorConfig(baseline_rows=12, detector="knn"), SENSORS)
    out = whole.process_arrays(ts[:20], X[:20])
    assert whole.baseline_failures_ == 1 and not whole.is_warm
    failure = whole.baseline_failure_
    assert failure is not None and "learning the baseline from 12 rows failed" in failure.message
    assert (out.status == WARMING_UP).all() and whole.baseline_.count == 8  # the rest start the next one
    assert whole.model_ is None and whole.features_ is None and whole.drifting_sensors == ()  # nothing of it is left
    split = AssetMonitor("pump", MonitorConfig(baseline_rows=12, detector="knn"), SENSORS)
    split.process_arrays(ts[:12], X[:12])
    split.process_arrays(ts[12:20], X[12:20])
    assert split.baseline_.count == 8 and split.rows_seen_ == whole.rows_seen_ == 20
    # the live stage logs it and counts it as a detector error, once per failed baseline
    counters = Counters()
    models = ModelPersistence(str(tmp_path / "models"))
    stage = _stage(tmp_path, models, {"baseline_rows": 12, "detector": "knn"}, counters)
    rows = zip(ts[:30].tolist(), X[:30], strict=True)
    readings = [Reading("pump", t, dict(zip(SENSORS, row.tolist(), strict=True))) for t, row in rows]
    with caplog.at_level("ERROR", logger="plantwatch.service"):
        stage._process(readings)
    assert stage.health.detector_errors == 2  # rows 0-11 and 12-23
    assert "learning the baseline from 12 rows failed" in caplog.text


def test_one_failing_asset_does_not_starve_the_others_in_its_batch(tmp_path: Path) -> None:
    counters = Counters()
    stage = _stage(tmp_path, ModelPersistence(str(tmp_path / "models")), {"baseline_rows": 300}, counters)

    def fail(*args: Any) -> Any:
        raise RuntimeError("model bug")

    # Failing before the rolling features, and after them: the stage works on the assets in phases.
    stage._new_monitor("pump-bad").begin_observe = fail  # type: ignore[method-assign,assignment]
    stage._new_monitor("pump-late").finish_observe = fail  # type: ignore[method-assign,assignment]
    ts, X = plant(n=400, fault=(0, 0))
    readings = []
    for t, row in zip(ts.tolist(), X, strict=True):
        for asset in ("pump-bad", "pump-ok", "pump-late"):
            readings.append(Reading(asset, t, dict(zip(SENSORS, row.tolist(), strict=True))))
    stage._process(readings)
    assert stage.monitors["pump-ok"].is_warm and stage.monitors["pump-ok"].scored_rows_ > 0
    assert stage.health.detector_errors == 2


@pytest.mark.parametrize("part", ["update_streams", "score_together"])
def test_when_working_out_the_assets_together_fails_each_asset_works_out_its_own(
    part: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plantwatch.service.detector_stage as stage_module

    def fail(*args: Any) -> Any:
        raise RuntimeError("bug in the joint path")

    stages = [_stage(tmp_path / name, ModelPersistence(str(tmp_path / name)), {"baseline_rows": 300}) for name in "ab"]
    ts, X = plant(n=400, fault=(0, 0))
    readings = [
        Reading(asset, t, dict(zip(SENSORS, row.tolist(), strict=True)))
        for t, row in zip(ts.tolist(), X, strict=True)
        for asset in ("pump-1", "pump-2")
    ]
    for stage in stages:
        stage._process(readings[:700])  # the baselines, and a few rows scored together
    monkeypatch.setattr(stage_module, part, fail)
    stages[0]._process(readings[700:])
    monkeypatch.undo()
    stages[1]._process(readings[700:])
    failed, joint = stages
    assert failed.health.detector_errors == 1 and joint.health.detector_errors == 0  # counted once
    for name in ("pump-1", "pump-2"):
        assert failed.monitors[name].scored_rows_ == joint.monitors[name].scored_rows_ == 100
        assert failed.latest[name] == joint.latest[name]  # each asset on its own gave the same verdict


def test_models_saved_before_the_adapt_every_default_changed_still_load(tmp_path: Path) -> None:
    ts, X = plant(n=800)
    old = monitor(adapt_every=1000)  # the earlier default; it does nothing without adaptation
    old.process_arrays(ts[:500], X[:500])
    restored = monitor().set_state(through_disk(old.get_state(), tmp_path))
    assert restored.is_warm
    adaptive = monitor(adapt=True, adapt_every=1000)
    adaptive.process_arrays(ts[:500], X[:500])
    with pytest.raises(ValueError, match="other settings"):  # with adaptation it shapes the model
        monitor(adapt=True).set_state(adaptive.get_state())


@pytest.mark.parametrize("gap_s", [15, 16])  # a gap of exactly one window, and longer
@pytest.mark.parametrize("where", [597, 1000])  # in the baseline's last window, and while scoring
def test_the_rows_after_a_gap_of_a_window_or_more_are_skipped(gap_s: int, where: int) -> None:
    ts, X = plant(n=1300, fault=(0, 0))
    ts = ts.copy()
    ts[where:] += (gap_s - 1) * 1_000_000_000  # rows 1 s apart: the step is gap_s seconds
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=600), SENSORS)
    out = m.process_arrays(ts, X)
    assert m.model_ is not None and m.model_.window_s == 15.0
    refilled = ts[where] + 15 * 1_000_000_000
    after = np.arange(max(where, 600), 1300)
    assert (out.status[after[ts[after] < refilled]] == SKIPPED).all()
    assert (out.status[after[ts[after] >= refilled]] == SCORED).all()
    assert not out.anomaly.any()


def test_a_full_older_ring_is_restored_oldest_row_first(tmp_path: Path) -> None:
    ts, X = plant(n=1200, fault=(0, 0))
    first = monitor(adapt=True, adapt_every=250)
    first.process_arrays(ts[:800], X[:800])
    state = first.get_state()
    in_time_order = state.pop("memory")[:300]
    state.pop("memory_seq"), state.pop("memory_counts")
    # the earlier layout: a full ring of 300 rows whose next slot to write (the oldest row) is 120
    state["ring"], state["ring_pos"] = np.roll(in_time_order, 120, axis=0), [300, 120, 100]
    restored = monitor(adapt=True, adapt_every=250).set_state(through_disk(state, tmp_path))
    assert restored.adaptation_ is not None
    assert np.array_equal(restored.adaptation_.memory.in_time_order(), in_time_order)


def test_a_sensor_outside_the_restored_model_is_named_counted_and_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ts, X, models = _saved_model(tmp_path)
    counters = Counters()
    stage = _stage(tmp_path, models, {"baseline_rows": 300}, counters)
    renamed = [
        Reading("pump", r.ts_ns, {("vibration" if k == SENSORS[-1] else k): v for k, v in r.values.items()})
        for r in _readings(ts[700:800], X[700:800])
    ]
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        stage._process(renamed[:50])
        stage._process(renamed[50:])
    assert caplog.text.count("pump publishes vibration, not among the sensors its model uses") == 1  # once
    assert "POST /assets/pump/relearn" in caplog.text
    assert counters.get("plantwatch_unknown_sensor_values_total") == 100
    assert counters.get("plantwatch_rows_scored_total") == 0  # the old sensor never comes: no rows
    assert stage.monitors["pump"].unknown_sensors == {"vibration"}


def test_readings_the_detector_leaves_out_are_counted_and_a_silent_sensor_is_named(tmp_path: Path) -> None:
    ts, X = plant(n=500)
    counters = Counters()
    stage = _stage(tmp_path, ModelPersistence(str(tmp_path / "models")), {"baseline_rows": 300}, counters)
    readings = _readings(ts[:400], X[:400])
    readings.append(Reading("pump", int(ts[390]), {"flow": 1.0}))  # late: before the newest instant
    silent = [
        Reading("pump", r.ts_ns, {k: v for k, v in r.values.items() if k != "temp"})
        for r in _readings(ts[400:], X[400:])
    ]
    stage._process(readings + silent)
    monitor = stage.monitors["pump"]
    assert monitor.stale_sensors() == ("temp",)  # /healthz stale_sensors
    assert counters.get("plantwatch_late_readings_total") == 1
    # temp's last value is carried for max_staleness (the monitor's default 10 s, at 1 Hz: 11 more
    # instants, ages 0-10 s), then each instant is given up: 89 of the 100 silent ones
    assert counters.get("plantwatch_incomplete_rows_total") == monitor.intake.counts().incomplete_rows == 89


def test_a_sensor_seen_once_during_discovery_does_not_stall_the_asset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ts, X = plant(n=800)
    counters = Counters()
    stage = _stage(tmp_path, ModelPersistence(str(tmp_path / "models")), {"baseline_rows": 300}, counters)
    readings = _readings(ts, X)
    readings[1] = Reading("pump", readings[1].ts_ns, {**readings[1].values, "debug": 1.0})  # a one-off key
    with caplog.at_level("WARNING", logger="plantwatch.service"):
        for start in range(0, 800, 50):
            stage._process(readings[start : start + 50])
    m = stage.monitors["pump"]
    assert m.rediscoveries_ == 1 and m.rediscovered_ == ("debug",)
    # 10 x the monitor's default 10 s staleness, at 1 Hz
    assert "pump: no complete row for 100 s (10x max_staleness) before its baseline was learned; debug" in caplog.text
    assert counters.get("plantwatch_sensor_rediscoveries_total") == 1
    assert set(m.sensor_names or ()) == set(SENSORS) and m.is_warm  # learned after the rediscovery
    assert counters.get("plantwatch_rows_scored_total") > 300
    # every incomplete instant is counted, those of the aligner the rediscovery replaced too
    assert counters.get("plantwatch_incomplete_rows_total") == m.intake.counts().incomplete_rows > 100


def test_a_learned_model_keeps_its_sensors_when_one_stops() -> None:
    ts, X = plant(n=900)
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=300))
    for t, row in zip(ts[:400], X[:400], strict=True):
        m.feed(int(t), dict(zip(SENSORS, row.tolist(), strict=True)))
    assert m.is_warm
    for t, row in zip(ts[400:], X[400:], strict=True):
        m.feed(int(t), dict(zip(SENSORS[:-1], row[:-1].tolist(), strict=True)))
    assert m.rediscoveries_ == 0 and set(m.sensor_names or ()) == set(SENSORS)
    assert m.stale_sensors() == ("temp",)


def test_a_slow_sensor_that_is_sometimes_late_is_not_rediscovered_away() -> None:
    # a at 10 Hz; b about every 25 s, once 40 s late: 10 s of incomplete instants, nowhere near
    # 10 x the 30 s staleness limit.
    m = AssetMonitor("mixer", MonitorConfig(baseline_rows=100_000, max_staleness_ns=30 * 10**9))
    t0 = 1_700_000_000 * 10**9
    b_times = [t0 + k * 25 * 10**9 for k in range(12)] + [t0 + (11 * 25 + 40) * 10**9]
    b_times += [b_times[-1] + k * 25 * 10**9 for k in range(1, 12)]
    events = [(t0 + i * 10**8, {"a": 1.0}) for i in range(6000)] + [(t, {"b": 2.0}) for t in b_times]
    for ts_ns, values in sorted(events, key=lambda e: e[0]):
        m.feed(ts_ns, values)
    assert m.rediscoveries_ == 0 and set(m.sensor_names or ()) == {"a", "b"}
    assert m.intake.counts().incomplete_rows > 50  # the late stretch was given up, as it should be
