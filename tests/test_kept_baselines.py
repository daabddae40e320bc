"""The service keeps each asset's baseline feature rows (for operator feedback) in a file, not in memory."""

from __future__ import annotations

import os

import numpy as np
import pytest

from detector.feedback import AlertRows, Feedback
from plantwatch.service.kept_baselines import KeptBaselines
from plantwatch.service.ring_file import RingFile


def file_of(kept: KeptBaselines, rows: int, width: int) -> RingFile:
    return kept._rings._files[(np.dtype([("F", "<f4", (width,))]), rows)]


def feedback(seed: int, rows: int = 600, width: int = 16) -> Feedback:
    F = np.random.default_rng(seed).normal(50, 5, (rows, width))
    return Feedback.start(F)


def test_rows_moved_out_read_back_the_same_and_a_forgotten_slot_serves_the_next_asset() -> None:
    kept = KeptBaselines()
    pump, fan = feedback(1), feedback(2)
    expected = pump.baseline32.copy(), fan.baseline32.copy()
    assert kept.move_out("pump", pump) and kept.move_out("fan", fan)
    assert not pump.in_memory and not fan.in_memory
    assert np.array_equal(pump.baseline32, expected[0]) and np.array_equal(fan.baseline32, expected[1])
    assert pump.baseline.dtype == np.float64 and np.array_equal(pump.baseline, expected[0].astype(np.float64))
    file = file_of(kept, 600, 16)
    size = os.fstat(file._fd).st_size
    kept.forget("pump")
    with pytest.raises(LookupError, match="pump"):
        _ = pump.baseline32
    other = feedback(3)
    assert kept.move_out("mixer", other) and os.fstat(file._fd).st_size == size  # pump's slot, reused
    assert np.array_equal(fan.baseline32, expected[1])


def test_a_relearned_asset_of_another_shape_leaves_its_old_slot() -> None:
    kept = KeptBaselines()
    assert kept.move_out("pump", feedback(1))
    wider = feedback(2, rows=1200, width=18)
    assert kept.move_out("pump", wider)
    assert "pump" not in file_of(kept, 600, 16) and wider.baseline32.shape == (1200, 18)


def test_a_failing_write_leaves_the_rows_in_memory() -> None:
    kept = KeptBaselines()
    assert kept.move_out("fan", feedback(0))  # the file exists; now every write fails (ENOSPC)
    file = file_of(kept, 600, 16)
    file._fd = os.open("/dev/full", os.O_RDWR)
    pump = feedback(1)
    before = pump.baseline32.copy()
    assert not kept.move_out("pump", pump)
    assert pump.in_memory and np.array_equal(pump.baseline32, before)


def test_feedback_learned_from_rows_in_the_file_matches_feedback_from_memory() -> None:
    from detector.config import MonitorConfig

    config = MonitorConfig(baseline_rows=600)
    in_memory, in_file = feedback(4), feedback(4)
    assert KeptBaselines().move_out("pump", in_file)
    ts = np.arange(50, dtype=np.int64)
    unusual = np.random.default_rng(5).normal(80, 5, (50, 16))
    for fb in (in_memory, in_file):
        fb.alerts = AlertRows.empty(16)
        fb.remember_alerts(ts, unusual, np.ones(50, bool), config)
    rows_a, fitted_a = in_memory.learn(0, 49, config)
    rows_b, fitted_b = in_file.learn(0, 49, config)
    assert rows_a == rows_b == 50 and fitted_a is not None and fitted_b is not None
    assert in_memory.enter_ == in_file.enter_
