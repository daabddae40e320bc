"""HeapTrim: freed memory back to the system after a burst, at most once a second."""

from __future__ import annotations

import pytest

from plantwatch.service import heap
from plantwatch.service.heap import HeapTrim


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
