"""Recalibration: the alarm level rises when live normal scores have a heavier tail (detector/recalibration.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from detector.calibration import EmpiricalCalibrator
from detector.config import MonitorConfig
from detector.memory import NormalMemory
from detector.monitor import AssetMonitor
from detector.recalibration import RECALIBRATION_MEMORY, Recalibration, rising

CONFIG = MonitorConfig(baseline_rows=1000)


def _recalibration(baseline: np.ndarray) -> Recalibration:
    return Recalibration(baseline, NormalMemory(RECALIBRATION_MEMORY * CONFIG.baseline_rows, 1))


def test_rows_near_an_alert_are_not_learned() -> None:
    recal = _recalibration(np.zeros(10))
    scores = np.arange(20, dtype=float)
    flags = np.zeros(20, dtype=bool)
    flags[10:12] = True  # an alert on rows 10 and 11
    recal.learn(scores, flags, guard=3)
    # rows 0..9 waited for 3 newer rows; 7, 8, 9 were still waiting when the alert opened: dropped.
    # After the alert: rows 12, 13, 14 are its guard; 15..19 wait (the last 3 still pending).
    assert sorted(recal.memory.in_time_order().ravel().tolist()) == [0, 1, 2, 3, 4, 5, 6, 15, 16]
    assert recal.pending == [17.0, 18.0, 19.0]
    assert recal.since_refit == 20


def test_a_short_alert_is_learned_with_the_rows_around_it_and_a_long_one_is_not() -> None:
    scores = np.arange(30, dtype=float)
    flags = np.zeros(30, dtype=bool)
    flags[10:12] = True  # an alert of 2 rows, short when up to 2 rows are
    baseline = np.arange(21.0)  # the ceiling: 20 + 2 x (20 - 10) = 40
    short = _recalibration(baseline)
    assert short.ceiling == 40.0
    short.learn(scores, flags, guard=3, short=2)
    # rows 7, 8, 9 (waiting when it opened), 10, 11 (the alert) and 12.. (no guard after it) all wait
    # their turn: one leaves ``pending`` a row, so the last 3 + 2 held ones are still waiting.
    assert short.memory.in_time_order().ravel().tolist() == list(range(25))
    assert short.pending == [25.0, 26.0, 27.0, 28.0, 29.0] and short.held == [] and not short.in_alert
    long = _recalibration(baseline)
    long.learn(scores, flags, guard=3, short=1)  # the same 2 rows are a long alert now
    assert sorted(long.memory.in_time_order().ravel().tolist()) == [0, 1, 2, 3, 4, 5, 6, *range(15, 27)]
    assert long.held == []
    far = _recalibration(baseline)
    far.learn(np.where(flags, 41.0, scores), flags, guard=3, short=2)  # short, but beyond the ceiling
    assert far.memory.in_time_order().ravel().tolist() == long.memory.in_time_order().ravel().tolist()


def test_an_alert_that_grows_long_in_a_later_batch_is_not_learned() -> None:
    scores = np.arange(40, dtype=float)
    flags = np.zeros(40, dtype=bool)
    flags[10:20] = True  # 10 rows: long when up to 5 are short
    baseline = np.arange(21.0)  # the ceiling, 40, lies above every score: only the length keeps it out
    whole, pieces = _recalibration(baseline), _recalibration(baseline)
    whole.learn(scores, flags, guard=3, short=5)
    for part in (slice(0, 12), slice(12, 14), slice(14, 40)):  # the alert opens in one batch, grows in the next
        pieces.learn(scores[part], flags[part], guard=3, short=5)
    learned = whole.memory.in_time_order().ravel().tolist()
    assert learned == pieces.memory.in_time_order().ravel().tolist()
    assert not set(learned) & set(range(7, 23))  # the alert, 3 rows before it and its guard of 3 after


def test_a_batch_with_no_alert_near_it_is_learned_as_one_row_at_a_time_would_be() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        guard, waiting = int(rng.integers(0, 8)), int(rng.integers(0, 12))  # waiting > guard: a longer guard before
        scores = rng.normal(size=int(rng.integers(0, 20)))
        scores[rng.random(scores.size) < 0.2] = np.nan
        recal = _recalibration(np.zeros(10))
        recal.pending = rng.normal(size=waiting).tolist()
        pending, learned = list(recal.pending), []
        for score in scores.tolist():  # the rule, one row at a time
            if np.isfinite(score):
                pending.append(score)
                if len(pending) > guard:
                    learned.append(pending.pop(0))
        recal.learn(scores, np.zeros(scores.size, dtype=bool), guard)
        assert recal.pending == pending and recal.memory.in_time_order().ravel().tolist() == learned
        assert recal.since_refit == scores.size


def test_learning_in_pieces_remembers_what_learning_at_once_does() -> None:
    rng = np.random.default_rng(1)
    scores = rng.exponential(size=500)
    flags = scores > 3.0
    baseline = rng.exponential(size=200)  # a ceiling above most flagged scores: short alerts are learned
    whole, pieces = _recalibration(baseline), _recalibration(baseline)
    whole.learn(scores, flags, guard=7, short=2)
    for part in np.array_split(np.arange(500), 13):
        pieces.learn(scores[part], flags[part], guard=7, short=2)
    assert np.array_equal(whole.memory.in_time_order(), pieces.memory.in_time_order())
    assert whole.pending == pieces.pending and whole.guard_left == pieces.guard_left
    assert whole.held == pieces.held
    assert (whole.memory.in_time_order() > 3.0).any()  # short alerts were learned


def test_a_heavier_live_tail_raises_the_level_and_a_lighter_one_leaves_it() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.exponential(size=1000)
    calibrator = EmpiricalCalibrator().fit(baseline)
    enter = 0.99999
    heavier = _recalibration(baseline)
    heavier.learn(3.0 * rng.exponential(size=5000), np.zeros(5000, dtype=bool), guard=0)
    raised = heavier.refit(CONFIG, calibrator, enter)
    assert raised > enter
    lighter = _recalibration(baseline)
    lighter.learn(0.5 * rng.exponential(size=5000), np.zeros(5000, dtype=bool), guard=0)
    assert lighter.refit(CONFIG, calibrator, enter) < enter  # the monitor keeps the higher of the two
    assert heavier.since_refit == 0


def test_climbing_scores_are_wear_not_a_heavier_tail() -> None:
    rng = np.random.default_rng(3)
    assert rising(np.linspace(0, 5, 600) + rng.normal(0, 0.3, 600))
    assert not rising(rng.normal(size=600))
    assert not rising(np.arange(3.0))  # too few to judge
    baseline = rng.exponential(size=1000)
    recal = _recalibration(baseline)
    recal.learn(np.linspace(0, 30, 3000), np.zeros(3000, dtype=bool), guard=0)
    assert recal.refit(CONFIG, EmpiricalCalibrator().fit(baseline), 0.99999) == 0.0


def _independent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(n, dtype=np.int64) * 10**9, rng.normal(size=(n, 4))


def test_the_monitor_raises_only_its_alarm_level_and_keeps_it_across_a_restart() -> None:
    ts, X = _independent(6000, seed=4)
    X[1000:, 0] *= 1.6  # live rows vary more than the baseline's: a heavier tail, the same mean
    sensors = ("a", "b", "c", "d")
    monitor = AssetMonitor("pump", CONFIG, sensors)
    monitor.process_arrays(ts[:3500], X[:3500])
    model = monitor.model_
    assert model is not None and monitor.recalibrations_ >= 2
    assert monitor.recalibration_ is not None and monitor.recalibration_.enter_ > model.alarm_enter(CONFIG)
    assert monitor.alarm_.enter == monitor.alarm_enter == monitor.recalibration_.enter_
    restored = AssetMonitor("pump", CONFIG, sensors).set_state(monitor.get_state())
    assert restored.alarm_.enter == monitor.alarm_.enter
    rest = monitor.process_arrays(ts[3500:], X[3500:])
    again = restored.process_arrays(ts[3500:], X[3500:])
    assert np.array_equal(rest.anomaly, again.anomaly) and restored.alarm_.enter == monitor.alarm_.enter
    # the calibrator (and the probabilities it reports) are the baseline's
    assert monitor.model_ is model
    off = AssetMonitor("pump", dataclasses.replace(CONFIG, recalibrate=False), sensors)
    off.process_arrays(ts, X)
    assert off.recalibration_ is None and off.alarm_.enter == model.alarm_enter(CONFIG)


def test_the_recalibration_shares_its_calibrators_baseline_scores_before_and_after_a_restart() -> None:
    ts, X = _independent(1500, seed=6)
    monitor = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d"))
    monitor.process_arrays(ts, X)
    restored = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d")).set_state(monitor.get_state())
    for m in (monitor, restored):
        assert m.model_ is not None and m.recalibration_ is not None
        calibrator_scores = m.model_.calibrator.baseline_scores_
        assert np.shares_memory(m.recalibration_.baseline_scores, calibrator_scores)  # one copy an asset
        assert not calibrator_scores.flags.writeable  # so neither can change the other's
    assert np.array_equal(restored.recalibration_.baseline_scores, monitor.recalibration_.baseline_scores)  # type: ignore[union-attr]


def test_the_saved_state_holds_the_shared_baseline_scores_once_and_reads_an_older_copy() -> None:
    ts, X = _independent(1500, seed=6)
    monitor = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d"))
    monitor.process_arrays(ts, X)
    state = monitor.get_state()
    assert "recal_scores" not in state and state["recal_shared"] == 1  # saved once, as the calibrator's
    assert monitor.model_ is not None and monitor.recalibration_ is not None
    scores = monitor.model_.calibrator.baseline_scores_
    older = {key: value for key, value in state.items() if key != "recal_shared"}
    for saved in (state, {**older, "recal_scores": scores.copy()}):  # as saved before: a copy
        restored = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d")).set_state(saved)
        assert restored.recalibration_ is not None and restored.model_ is not None
        assert np.shares_memory(restored.recalibration_.baseline_scores, restored.model_.calibrator.baseline_scores_)
        assert np.array_equal(restored.recalibration_.baseline_scores, scores)
        assert restored.recalibration_.enter_ == monitor.recalibration_.enter_
    without = {key: value for key, value in older.items() if not key.startswith("recal_")}
    fresh = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d")).set_state(without)  # saved before recalibration
    assert fresh.recalibration_ is not None and fresh.recalibration_.memory.seen == 0


def test_an_open_short_alert_is_kept_across_a_restart_and_one_saved_before_is_taken_as_long() -> None:
    ts, X = _independent(1500, seed=5)
    monitor = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d"))
    monitor.process_arrays(ts, X)
    recal = monitor.recalibration_
    assert recal is not None
    recal.in_alert, recal.held = True, [4.0, 5.0]  # saved while a short alert is open
    state = monitor.get_state()
    restored = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d")).set_state(state)
    assert restored.recalibration_ is not None and restored.recalibration_.held == [4.0, 5.0]
    assert restored.recalibration_.peaks_of == recal.peaks_of > 0
    assert np.array_equal(restored.recalibration_.peaks.in_time_order(), recal.peaks.in_time_order())
    older = {key: value for key, value in state.items() if not key.startswith(("recal_held", "recal_peaks"))}
    before = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d")).set_state(older)
    assert before.recalibration_ is not None and before.recalibration_.held is None  # its length is unknown
    assert before.recalibration_.peaks_of == before.recalibration_.peaks.seen == 0  # the peaks begin now


def test_recurring_glitches_far_beyond_normal_running_are_not_learned_and_hide_no_fault() -> None:
    ts, X = _independent(14000, seed=6)
    for start in range(1500, 12000, 400):
        X[start : start + 3, 0] += 40.0  # a loose contact: three rows far off, every 400 rows
    X[13000:13300, 1] += 6.0  # then a real fault on another sensor
    monitor = AssetMonitor("pump", CONFIG, ("a", "b", "c", "d"))
    out = monitor.process_arrays(ts, X)
    assert monitor.recalibrations_ >= 10
    # each glitch is a short alert, but far beyond the baseline's scores: none is learned, so each
    # one still alerts, and the level stays where the fault is flagged
    glitches_alerting = [bool(out.anomaly[start : start + 30].any()) for start in range(1500, 12000, 400)]
    assert all(glitches_alerting)
    assert out.anomaly[13000:13300].mean() > 0.9


def test_adaptation_turns_recalibration_off() -> None:
    assert not dataclasses.replace(CONFIG, adapt=True).recalibrates
    assert CONFIG.recalibrates


def test_every_learned_score_beyond_the_threshold_counts_in_the_tail_however_long_it_has_run() -> None:
    rng = np.random.default_rng(7)
    recal = _recalibration(rng.exponential(size=1000))
    rows = 0
    for _ in range(20):  # 200,000 live rows: twenty times what the memory of live scores holds
        scores = rng.exponential(size=10_000)
        recal.learn(scores, np.zeros(scores.size, dtype=bool), guard=0)
        rows += scores.size
    assert recal.memory.size == RECALIBRATION_MEMORY * CONFIG.baseline_rows < rows
    assert recal.peaks_of == rows and recal.peaks.seen > 0.005 * rows  # every one beyond the threshold counted
    # an exponential tail: the score one row in 100,000 exceeds is ln(1e5) = 11.5, read from every peak
    # seen, where the memory alone holds one such row in ten
    assert abs(recal.tail_level(np.log(1e5)) - np.log(1e5)) < 0.5
