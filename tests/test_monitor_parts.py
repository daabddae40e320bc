"""The monitor's parts, each on its own: config, gate, baseline, episode, explanations, advice, state, registry."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
from typing import Any

import numpy as np
import pytest

import detector.gate as gate_module
from detector.advice import episode_advice, short_baseline_advice
from detector.baseline import BaselineRows, choose_columns, learn_baseline, window_from_sampling
from detector.calibration import EmpiricalCalibrator
from detector.config import MonitorConfig
from detector.episode import MIN_SCORES_BEYOND_ENTER, BaselineEpisode, find_episode, score_at_probability
from detector.explain import Explainer
from detector.gate import NEVER, RowGate
from detector.monitor import AssetMonitor
from detector.registry import REGISTRY, available, make_detector

SEC = 1_000_000_000


def _rows(n: int, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(n, dtype=np.int64) * SEC, rng.normal(0, 1, (n, d)) + np.arange(d)


# -- config -----------------------------------------------------------------------------------


def test_the_config_is_frozen_checked_once_and_plain_to_print() -> None:
    params = {"members": [{"kind": "pca_spc"}, {"kind": "robust_z"}]}
    config = MonitorConfig(detector="ensemble", detector_params=params, features=["level", "spread"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.enter = 0.9  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.detector_params["members"] = []  # type: ignore[index]
    params["members"].append({"kind": "knn"})  # the caller's dict is not the config's
    assert len(config.detector_params["members"]) == 2
    assert config.features == ("level", "spread") and MonitorConfig(features=[]).features is None
    assert config.as_dict()["features"] == ["level", "spread"] and config.as_dict()["detector_params"] == {
        "members": [{"kind": "pca_spc"}, {"kind": "robust_z"}]
    }
    assert list(config.model_settings()) == [
        "baseline_rows",
        "detector",
        "detector_params",
        "features",
        "window_s",
        "window_samples",
        "calibration",
        "calibration_fraction",
        "calibration_folds",
        "adapt",
        "adapt_every",
        "drift_ratio",
    ]
    assert dataclasses.replace(config, baseline_rows=400) == MonitorConfig(**{**config.as_dict(), "baseline_rows": 400})


def test_a_config_is_a_value_equal_configs_hash_alike() -> None:
    # Frozen, so it can key a cache or sit in a set (the read-only params take no part in the hash).
    ensemble = {"members": [{"kind": "pca_spc"}, {"kind": "robust_z"}]}
    configs = {MonitorConfig(), MonitorConfig(), MonitorConfig(baseline_rows=400)}
    configs |= {MonitorConfig(detector="ensemble", detector_params=ensemble)} | {MonitorConfig(detector="ensemble")}
    assert len(configs) == 4
    pca = {"variance": 0.9}
    assert hash(MonitorConfig(detector_params=pca)) == hash(MonitorConfig(detector_params=dict(pca)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"baseline_rows": 9}, "baseline_rows must be >= 10, got 9"),
        ({"calibration": "gauss"}, "calibration must be one of ['empirical', 'pot'], got 'gauss'"),
        ({"calibration_folds": 1}, "calibration_folds must be 0 (hold-out) or >= 2, got 1"),
        ({"calibration_fraction": 1.0}, "calibration_fraction must be in (0, 1), got 1.0"),
        ({"window_s": 0}, "window_s must be > 0, got 0"),
        ({"window_samples": 1}, "window_samples must be >= 2, got 1"),
        ({"drift_ratio": -1}, "drift_ratio must be >= 0 (0 = off), got -1"),
        ({"adapt": True, "adapt_every": 0}, "adapt_every must be >= 1, got 0"),
        ({"detector": "nope"}, "unknown detector 'nope'"),
        ({"detector_params": {"bogus": 1}}, "got unknown params ['bogus']"),
        ({"max_staleness_ns": -1}, "max_staleness_ns must be >= 0"),
        ({"exit": 0.999}, "need 0 <= exit <= enter <= 1"),
        ({"min_duration": 0}, "min_duration must be >= 1"),
        # the first bad setting is named, in the order the settings check relies on
        ({"baseline_rows": 5, "calibration": "gauss"}, "baseline_rows must be >= 10"),
    ],
)
def test_a_bad_setting_is_refused_when_the_config_is_made(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        MonitorConfig(**changes)
    assert message in str(err.value)
    with pytest.raises(ValueError):
        dataclasses.replace(MonitorConfig(), **changes)  # replace checks again


def test_a_monitor_takes_only_a_config() -> None:
    with pytest.raises(TypeError, match="config must be a MonitorConfig, got tuple"):
        AssetMonitor("pump", ("a", "b"))  # type: ignore[arg-type]  # the old (asset, sensors) order
    assert AssetMonitor("pump").config == MonitorConfig()


# -- gate -------------------------------------------------------------------------------------


def test_the_gate_skips_unusable_and_late_rows_and_keeps_its_cutoff_across_calls() -> None:
    gate = RowGate()
    ts = np.array([1, 2, 9, 3, 4], dtype=np.int64) * SEC
    X = np.ones((5, 2))
    X[2, 0] = np.nan  # unusable, with a far stamp that must not make the next rows late
    rows, previous, late = gate.in_order(ts, X)
    assert rows.tolist() == [0, 1, 3, 4] and late == 0
    assert previous.tolist() == [NEVER, 1 * SEC, 2 * SEC, 2 * SEC, 3 * SEC]
    rows, _, late = gate.in_order(np.array([2, 5], dtype=np.int64) * SEC, np.ones((2, 2)))
    assert rows.tolist() == [1] and late == 1 and gate.last_ts_ == 5 * SEC


def test_the_gate_holds_rows_until_the_window_has_refilled_after_a_gap() -> None:
    gate = RowGate()
    stamps = np.array([0, 1, 2, 20, 21, 30, 31], dtype=np.int64) * SEC
    previous = np.concatenate(([NEVER], stamps[:-1]))
    refilling = gate.refilling(stamps, previous, 10.0)
    assert refilling.tolist() == [False, False, False, True, True, False, False]
    assert gate.refill_until_ == 30 * SEC
    assert not gate.refilling(stamps, previous, None).any()  # features off: no window to refill


def test_one_row_calls_give_what_the_array_code_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate's plain-Python path for one-row calls against its array code on the same calls: late,
    unusable and far-future rows, gaps of a window and more, stamps near int64's ends."""
    rng = np.random.default_rng(11)
    deltas = rng.choice([-3, 0, *[1] * 8, 2, 2, 12, 40], size=400) * SEC
    ts = np.cumsum(deltas) + 10**18
    ts[[397, 398, 399]] = [2**62 + 5, 2**62 + 7, -(2**62) - 5]  # beyond the plain path's range: the array code's
    X = rng.normal(size=(400, 3))
    X[rng.random(400) < 0.1, 1] = np.nan
    X[rng.random(400) < 0.05, 2] = np.inf

    def run(gate: RowGate) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        for i in range(ts.size):
            rows, previous, late = gate.in_order(ts[i : i + 1], X[i : i + 1])
            refilling = gate.refilling(ts[i : i + 1][rows], previous[rows], 3.0)
            out.append((rows.tolist(), rows.dtype, previous.tolist(), previous.dtype, late, refilling.tolist()))
            out.append((gate.last_ts_, gate.refill_until_))
        return out

    fast = run(RowGate())
    monkeypatch.setattr(gate_module, "SCALAR_STAMPS", 0)  # every call through the array code
    assert run(RowGate()) == fast


# -- baseline ---------------------------------------------------------------------------------


def test_baseline_rows_fill_up_pop_and_start_empty() -> None:
    ts, X = _rows(30)
    rows = BaselineRows(20)
    assert rows.take(ts, X, np.arange(0, 30, 2)).tolist() == list(range(0, 30, 2))
    assert not rows.full and rows.count == 15
    assert rows.take(ts, X, np.arange(1, 30, 2)).size == 5 and rows.full
    popped_ts, popped_X = rows.pop()
    assert popped_ts.size == 20 and np.array_equal(popped_X[15], X[1])
    assert rows.count == 0 and rows.arrays() is None


def test_the_window_follows_the_sampling_interval_unless_set() -> None:
    ts = np.array([0, 2, 2, 4, 6, 8], dtype=np.int64) * SEC
    assert window_from_sampling(ts, 15) == 30.0
    assert window_from_sampling(ts[:1], 15) == 15.0  # unknown interval: 1 s
    ts, X = _rows(100)
    model, _, _ = learn_baseline(ts, X, MonitorConfig(baseline_rows=100))
    assert model.window_s == 15.0
    model, _, _ = learn_baseline(ts, X, MonitorConfig(baseline_rows=100, window_s=7.5))
    assert model.window_s == 7.5


def test_a_wandering_sensor_loses_only_its_level_columns() -> None:
    ts, X = _rows(600, seed=2)
    X[:, 1] += np.cumsum(np.random.default_rng(3).normal(0, 0.5, 600))  # a random walk
    config = MonitorConfig(baseline_rows=600, features=("level", "spread"))
    drifting, columns = choose_columns(ts, X, 15.0, config)
    assert drifting.tolist() == [False, True, False]
    assert columns is not None and columns.tolist() == [True, True, False, True, True, True]
    off, columns = choose_columns(ts, X, 15.0, dataclasses.replace(config, drift_ratio=0))
    assert not off.any() and columns is None  # the rule turned off
    single, columns = choose_columns(ts, X[:, 1:2], 15.0, config)
    assert not single.any() and columns is None  # nothing steady to lean on: judged by its level


def test_a_baseline_that_cannot_be_learned_raises_and_leaves_the_monitor_cold() -> None:
    ts, X = _rows(12)
    with pytest.raises(ValueError, match="n_neighbors"):
        learn_baseline(ts, X, MonitorConfig(baseline_rows=12, detector="knn"))
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=12, detector="knn"), ("a", "b", "c"))
    m.process_arrays(ts, X)
    assert (m.model_, m.features_, m.adaptation_) == (None, None, None) and m.baseline_failures_ == 1
    assert m.gate.refill_until_ == NEVER  # the failed fit moved nothing


# -- episode and advice -----------------------------------------------------------------------


def test_too_few_scores_beyond_the_alarm_level_judge_no_episode() -> None:
    config = MonitorConfig(enter=0.99)
    scores = np.random.default_rng(0).normal(size=500)
    calibrator = EmpiricalCalibrator().fit(scores)
    assert MIN_SCORES_BEYOND_ENTER > 500 * (1 - 0.99)
    assert find_episode(np.arange(500), scores, calibrator, config) is None


def test_an_episode_in_one_block_is_found_with_its_time_span() -> None:
    config = MonitorConfig(enter=0.97, exit=0.9, calibration_folds=10)  # 30 scores beyond: the episode's
    scores = np.random.default_rng(1).normal(size=1000)
    scores[420:450] += 6.0  # one stretch far above the rest, inside block 4 (rows 400-499)
    calibrator = EmpiricalCalibrator().fit(scores)
    episode = find_episode(np.arange(1000) * SEC, scores, calibrator, config)
    assert episode is not None and 420 * SEC <= episode.start_ns < episode.end_ns < 450 * SEC
    assert episode.scores_beyond >= 0.5 * episode.scores_beyond_total and episode.rarity >= 10


def test_the_score_at_a_probability_is_the_smallest_that_reaches_it() -> None:
    calibrator = EmpiricalCalibrator().fit(np.random.default_rng(2).normal(size=2000))
    level = score_at_probability(calibrator, 0.995, -3.0, 3.0)
    assert calibrator.transform(np.array([level]))[0] >= 0.995
    assert calibrator.transform(np.array([level - 1e-6]))[0] < 0.995
    beyond = score_at_probability(calibrator, 0.999999, -3.0, 3.0)  # in the tail past the baseline
    assert beyond > 3.0 and calibrator.transform(np.array([beyond]))[0] >= 0.999999


def _one_step_at_a_time(calibrator: EmpiricalCalibrator, probability: float, low: float, high: float) -> float:
    """score_at_probability as it was, one calibrator call a bisection step."""
    for _ in range(200):
        if calibrator.transform(np.array([high]))[0] >= probability:
            break
        high += 2.0 * (high - low) + 1.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if calibrator.transform(np.array([mid]))[0] >= probability else (mid, high)
    return high


def test_judging_bisection_steps_together_gives_the_same_score_as_one_at_a_time() -> None:
    rng = np.random.default_rng(4)
    for trial in range(60):
        scores = rng.gamma(rng.uniform(0.5, 4), rng.uniform(0.1, 10), int(rng.integers(20, 3000)))
        scores = np.round(scores, 1) if trial % 4 == 0 else scores  # ties
        calibrator = EmpiricalCalibrator(float(rng.uniform(0.01, 0.3))).fit(scores)
        low, high = float(scores.min()), float(scores.max())
        for probability in (0.9, 0.9999, 0.9999999, 1 - 1e-9):
            want = _one_step_at_a_time(calibrator, probability, low, high)
            assert score_at_probability(calibrator, probability, low, high) == want


def test_advice_texts_say_what_to_change() -> None:
    config = MonitorConfig(baseline_rows=400, enter=0.995)
    short = short_baseline_advice("pump", 2.0, config, 400)
    assert short is not None and "only 2.0 of its scores" in short and "baseline_rows >= 2000" in short
    went_on = short_baseline_advice("pump", 2.0, config, 1200)  # the baseline went on twice: 1,200 rows learned
    assert went_on is not None and "baseline_rows >= 6000" in went_on
    assert short_baseline_advice("pump", MIN_SCORES_BEYOND_ENTER, config, 400) is None
    assert short_baseline_advice("pump", None, config, 400) is None
    episode = BaselineEpisode(1_700_000_000 * SEC, 1_700_000_180 * SEC, 12, 15, 40.0)
    text = episode_advice("pump", episode, config)
    assert (
        text is not None and "12 of its 15 scores" in text and "2023-11-14 22:13:20 UTC to 2023-11-14 22:16:20" in text
    )
    assert episode_advice("pump", None, config) is None


# -- explanations -----------------------------------------------------------------------------


def test_left_out_columns_explain_nothing_and_each_sensor_is_judged_by_its_driving_feature() -> None:
    ts, X = _rows(600, seed=4)
    X[:, 1] += np.cumsum(np.random.default_rng(5).normal(0, 0.5, 600))
    config = MonitorConfig(baseline_rows=600)
    model, features, _ = learn_baseline(ts, X, config)
    assert model.columns is not None and not model.columns[2]  # sensor 1's level is left out
    new_ts, new_X = ts[-1] + np.arange(1, 31) * SEC, X[-30:].copy()
    new_X[:, 1] += 50.0  # the wandering sensor leaves its range: its level is not judged
    new_X[-5:, 0] += 8.0  # sensor 0 jumps
    F = model.model_rows(features.update(new_ts, new_X))
    explainer = Explainer(model, ("flow", "temp", "pressure"), config.column_features, 2)
    top = explainer.rows(new_X, np.array([29]), F[29:])[29].contributions
    assert top[0].sensor == "flow" and top[0].direction == "high" and len(top) <= 2
    assert all(c.feature == "spread" for c in top if c.sensor == "temp")
    assert sum(c.share for c in top) <= 1 + 1e-9


# -- state ------------------------------------------------------------------------------------


def test_a_refused_state_leaves_the_monitor_as_it_was() -> None:
    ts, X = _rows(300)
    learned = AssetMonitor("pump", MonitorConfig(baseline_rows=100), ("a", "b", "c"))
    learned.process_arrays(ts, X)
    other = AssetMonitor("pump", MonitorConfig(baseline_rows=100, detector="robust_z"), ("a", "b", "c"))
    other.process_arrays(ts[:50], X[:50])
    with pytest.raises(ValueError, match="learned with other settings"):
        other.set_state(learned.get_state())
    assert other.rows_seen_ == 50 and other.baseline_.count == 50
    damaged = learned.get_state()
    damaged["center"] = damaged["center"][:2]
    fresh = AssetMonitor("pump", MonitorConfig(baseline_rows=100))
    with pytest.raises(ValueError, match="do not fit 3 sensors"):
        fresh.set_state(damaged)
    assert not fresh.is_warm and fresh.sensor_names is None


def test_states_of_older_layouts_are_read() -> None:
    ts, X = _rows(300)
    m = AssetMonitor("pump", MonitorConfig(baseline_rows=100), ("a", "b", "c"))
    m.process_arrays(ts[:250], X[:250])
    state = m.get_state()
    assert "refill_until" in state and "columns" not in state and "episode" not in state
    del state["refill_until"]  # models saved before gaps were handled
    restored = AssetMonitor("pump", MonitorConfig(baseline_rows=100)).set_state(state)
    assert restored.gate.refill_until_ == NEVER and restored.sensor_names == ("a", "b", "c")
    assert np.array_equal(restored.process_arrays(ts[250:], X[250:]).score, m.process_arrays(ts[250:], X[250:]).score)


def test_an_adapting_state_without_a_memory_is_refused() -> None:
    ts, X = _rows(300)
    config = MonitorConfig(baseline_rows=100, adapt=True, adapt_every=50)
    m = AssetMonitor("pump", config, ("a", "b", "c"))
    m.process_arrays(ts, X)
    state = {k: v for k, v in m.get_state().items() if not k.startswith("memory")}
    with pytest.raises(ValueError, match="holds no memory of normal rows"):
        AssetMonitor("pump", config).set_state(state)


# -- registry ---------------------------------------------------------------------------------


def test_every_detector_plugin_file_is_loaded_without_a_list() -> None:
    import detector.detectors as plugins

    available()
    modules = [m.name for m in pkgutil.iter_modules(plugins.__path__, "detector.detectors.")]
    assert modules and all(name in sys.modules for name in modules)
    # every plugin registers something, and everything registered comes from a plugin file
    owners = {cls.__module__ for cls in REGISTRY.values()}
    assert owners == set(modules)
    assert {"pca_spc", "robust_z", "iforest", "ensemble"} <= set(available())
    assert make_detector("robust_z").__class__.__module__ == "detector.detectors.robust"
    assert plugins.__name__ == importlib.import_module("detector.registry")._PLUGINS
