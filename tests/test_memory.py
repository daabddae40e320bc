"""NormalMemory: the adaptation's uniform, time-ordered reservoir of normal rows."""

from __future__ import annotations

import numpy as np
import pytest

from detector.memory import NormalMemory


def _rows(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float64)[:, None]  # each row holds its own index


def test_it_keeps_everything_until_full_then_a_uniform_sample_in_time_order() -> None:
    memory = NormalMemory(100, 1)
    memory.add(_rows(60))
    assert memory.size == 60 and np.array_equal(memory.in_time_order(), _rows(60))
    memory.add(_rows(99_940, start=60))
    assert memory.size == 100 and memory.seen == 100_000
    kept = memory.in_time_order()[:, 0]
    assert np.all(np.diff(kept) > 0)  # oldest first
    assert np.array_equal(np.sort(memory.counts()), kept + 1)  # counts are 1-based positions
    per_decile = np.histogram(kept, bins=10, range=(0, 100_000))[0]
    assert per_decile.min() >= 2 and per_decile.max() <= 20  # ~10 each: old rows stay as likely as new


@pytest.mark.parametrize("sizes", [[1] * 500, [7, 300, 193], [500]])
def test_the_same_rows_in_any_batches_give_the_same_memory(sizes: list[int]) -> None:
    whole = NormalMemory(50, 1)
    whole.add(_rows(500))
    split = NormalMemory(50, 1)
    start = 0
    for size in sizes:
        split.add(_rows(size, start))
        start += size
    for mine, theirs in zip(whole.get_state(), split.get_state(), strict=True):
        assert np.array_equal(np.asarray(mine), np.asarray(theirs))


def test_state_round_trip_continues_identically() -> None:
    memory = NormalMemory(40, 2)
    memory.add(np.column_stack([_rows(300), -_rows(300)]))
    restored = NormalMemory.from_state(40, *memory.get_state())
    more = np.column_stack([_rows(200, 300), -_rows(200, 300)])
    memory.add(more)
    restored.add(more)
    assert np.array_equal(restored.in_time_order(), memory.in_time_order())
    with pytest.raises(ValueError, match="do not fit"):
        NormalMemory.from_state(10, *memory.get_state())


def test_the_arrays_grow_with_the_rows_held_not_with_the_capacity() -> None:
    memory = NormalMemory(6_000, 1)
    memory.add(_rows(50))
    assert memory._rows.shape[0] < 200  # a memory that holds 50 rows does not hold 6,000 slots
    memory.add(_rows(20_000, start=50))
    assert memory._rows.shape[0] == 6_000 and memory.size == 6_000
    assert np.all(np.diff(memory.in_time_order()[:, 0]) > 0)


def test_counts_past_32_bits_keep_the_time_order() -> None:
    # Rows counted beyond 2**32 (13 years at 10 Hz) sort after the early ones, saved and restored.
    counts = np.array([2**32 + 7, 3, 2**32 + 1, 9])
    memory = NormalMemory.from_state(10, _rows(4), counts, 2**32 + 10)
    assert np.array_equal(memory.in_time_order()[:, 0], [1, 3, 2, 0])
    assert np.array_equal(memory.counts(), counts)
    # A memory that counts past 2**32 as it runs widens its counts before the first such row lands.
    running = NormalMemory(10, 1)
    running.add(_rows(10))
    running.seen = 2**32 - 1
    running.add(_rows(1))
    assert running.counts().min() == 1 and running.counts().dtype == np.int64
    assert running._counts.dtype == np.int64


def test_a_single_precision_memory_keeps_single_precision_rows() -> None:
    memory = NormalMemory(10, 1, np.float32)
    memory.add(_rows(30) + 0.1)
    assert memory.in_time_order().dtype == np.float32
    rows, counts, seen = memory.get_state()
    again = NormalMemory.from_state(10, rows, counts, seen, np.float32)
    assert np.array_equal(again.in_time_order(), memory.in_time_order())


def test_rows_added_a_few_at_a_time_land_where_one_large_add_puts_them_past_32_bits_too() -> None:
    # Small adds go one row at a time in plain Python (a faster path); large ones are vectorised.
    for start in (0, 2**32 - 300, 2**40):
        whole, few = NormalMemory(64, 1), NormalMemory(64, 1)
        whole.seen = few.seen = start
        whole.add(_rows(1_000))
        for offset in range(0, 1_000, 5):
            few.add(_rows(5, offset))
        for mine, theirs in zip(whole.get_state(), few.get_state(), strict=True):
            assert np.array_equal(np.asarray(mine), np.asarray(theirs))
