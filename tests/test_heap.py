"""HeapTrim: freed memory back to the system after a burst, at most once a second. LearnedFreeze: learned
assets out of the garbage collector's full passes, which is safe only while they form no reference cycles."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from plantwatch.service import heap
from plantwatch.service.heap import HeapTrim, LearnedFreeze


def test_a_trim_comes_only_when_due_and_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(heap.time, "monotonic", lambda: now[0])
    trim = HeapTrim(every_s=1.0)
    assert trim._trim is not None  # glibc here
    assert not trim.now_and_then()  # nothing due
    trim.due()
    assert trim.now_and_then()
    assert not trim.now_and_then()  # done: not due again
    trim.due()
    now[0] += 0.5
    assert not trim.now_and_then()  # due, but within the second
    now[0] += 0.6
    assert trim.now_and_then()


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)  # musl, say
    trim = HeapTrim()
    trim.due()
    assert not trim.now_and_then()


def test_a_freeze_comes_as_the_assets_learned_grow_by_a_tenth_and_at_most_once_an_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(heap.time, "monotonic", lambda: now[0])
    freeze = LearnedFreeze(every_s=30.0, growth=0.1)

    def learn(count: int) -> None:
        for _ in range(count):
            freeze.learned()

    try:
        assert not freeze.now_and_then()  # nothing learned
        learn(100)
        before = gc.get_freeze_count()
        kept = [[1], [2]]  # tracked objects made after the last freeze
        assert freeze.now_and_then() and gc.get_freeze_count() >= before + len(kept)
        frozen = gc.get_freeze_count()
        learn(50)
        now[0] = 110.0
        assert not freeze.now_and_then()  # grown, but within 30 s of the last freeze
        now[0] = 200.0
        assert freeze.now_and_then()  # 150 learned: grown by a half
        learn(14)
        now[0] = 300.0
        assert not freeze.now_and_then()  # 164: grown by less than a tenth of 150
        learn(2)
        kept.append([3])
        assert freeze.now_and_then() and gc.get_freeze_count() > frozen
        assert not freeze.now_and_then()  # done: nothing learned since
    finally:
        gc.unfreeze()


def test_a_monitor_scored_refitted_and_dropped_leaves_no_garbage_in_reference_cycles() -> None:
    """What LearnedFreeze rests on: frozen objects in a cycle would never be freed. Scoring, the refits of
    recalibration and a dropped monitor (evicted, relearned) must all go by reference counts alone."""
    rng = np.random.default_rng(3)
    sensors = ("flow", "current", "temp")
    monitor = AssetMonitor("pump", MonitorConfig(baseline_rows=300), sensors)
    t0 = 1_700_000_000 * 10**9

    def feed(monitor: AssetMonitor, first: int, count: int) -> None:
        for i in range(first, first + count):  # one row a call, as the live service mostly sees them
            row = (30 + rng.normal(0, 0.2), 2 + rng.normal(0, 0.01), 60 + rng.normal(0, 0.2))
            monitor.observe([(t0 + i * 10**9, dict(zip(sensors, row, strict=True)))])

    feed(monitor, 0, 400)
    assert monitor.is_warm
    gc.collect()
    gc.disable()
    try:
        feed(monitor, 400, 1200)  # four baseline lengths: recalibration refits the model
        assert monitor.scored_rows_ > 1000
        assert gc.collect() == 0
        del monitor
        assert gc.collect() == 0
    finally:
        gc.enable()
