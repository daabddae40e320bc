"""The writer-to-detector queue is bounded by readings, not by batches."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.config import MonitorConfig
from ingest.messages import Reading
from plantwatch.service.pipeline import Pipeline
from plantwatch.service.scoring_queue import (
    SCORING_BACKLOG_READINGS,
    Batch,
    ScoringQueue,
    join_logged,
)
from telemetry.counters import Counters


def _batch(n: int) -> Batch:
    return Batch(tuple(Reading(asset="pump", ts_ns=i, values={"flow": float(i)}) for i in range(n)))


def test_the_bound_counts_readings_not_batches() -> None:
    q = ScoringQueue(maxsize=10)
    q.put(_batch(4))
    q.put(_batch(5))
    assert q.qsize() == 9 and not q.full()
    q.put(_batch(3))  # 9 < 10 waiting: accepted, and now over the bound
    assert q.qsize() == 12 and q.full()
    with pytest.raises(queue.Full):
        q.put(_batch(1), timeout=0.01)
    assert len(q.get().readings) == 4
    assert q.qsize() == 8
    q.put(_batch(1), timeout=0.01)
    assert [len(q.get_nowait().readings) for _ in range(3)] == [5, 3, 1]
    assert q.empty() and q.qsize() == 0


def test_a_batch_larger_than_the_bound_passes_an_empty_queue() -> None:
    q = ScoringQueue(maxsize=10)
    q.put(_batch(25), timeout=0.01)
    assert q.qsize() == 25
    with pytest.raises(queue.Full):
        q.put(_batch(1), timeout=0.01)


def test_an_empty_batch_is_delivered() -> None:
    q = ScoringQueue(maxsize=10)
    q.put(Batch(()))
    assert q.get(timeout=1) == Batch(())
    assert q.qsize() == 0


def test_a_waiting_writer_goes_on_once_the_detector_takes_a_batch() -> None:
    q = ScoringQueue(maxsize=5)
    q.put(_batch(5))
    done = threading.Event()

    def writer() -> None:
        q.put(_batch(2))
        done.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert not done.wait(0.1)  # the queue is full: the writer waits
    assert len(q.get(timeout=1).readings) == 5
    assert done.wait(5)
    thread.join(5)
    assert q.qsize() == 2


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        ScoringQueue(maxsize=0)


def _numbered(seq: int, n: int) -> Batch:
    return Batch(_batch(n).readings, seq)


def test_batches_waiting_behind_one_are_joined_while_they_continue_it_and_fit() -> None:
    q = ScoringQueue(maxsize=100)
    for seq, n in ((2, 3), (3, 4), (5, 1), (6, 2)):  # 4 was left in the readings log: a gap
        q.put(_numbered(seq, n))
    joined = q.join_waiting(_numbered(1, 2))
    assert joined.seq == 3 and len(joined.readings) == 2 + 3 + 4 and q.qsize() == 3
    small = ScoringQueue(maxsize=100, join_readings=2)
    for batch in (q.get(), q.get()):
        small.put(batch)
    alone = small.join_waiting(small.get())  # 5 and 6 continue, but together exceed the limit
    assert alone.seq == 5 and len(alone.readings) == 1 and small.qsize() == 2
    unlogged = ScoringQueue(maxsize=100)
    unlogged.put(_batch(2))
    unlogged.put(_numbered(9, 1))  # a logged batch never joins unlogged ones
    assert len(unlogged.join_waiting(_batch(1)).readings) == 3 and unlogged.qsize() == 1


def test_joining_makes_room_for_a_waiting_writer() -> None:
    q = ScoringQueue(maxsize=5)
    q.put(_numbered(2, 5))
    assert q.full()
    q.join_waiting(_numbered(1, 1))
    q.put(_numbered(3, 1), timeout=0.5)  # the writer may go on
    assert q.qsize() == 1


def test_batches_read_back_from_the_log_are_joined_up_to_the_limit() -> None:
    logged = [(seq, _batch(n).readings) for seq, n in ((4, 3), (5, 3), (6, 3), (7, 1))]
    assert [(seq, len(r)) for seq, r in join_logged(logged, limit=6)] == [(5, 6), (7, 4)]
    assert list(join_logged([], limit=6)) == []


def test_a_joined_batch_arrived_when_its_oldest_delivery_did() -> None:
    q = ScoringQueue(maxsize=100)
    q.put(Batch(_batch(2).readings, 0, received_ns=700))
    q.put(Batch(_batch(2).readings, 0, received_ns=0))  # not from a broker: no arrival time
    q.put(Batch(_batch(2).readings, 0, received_ns=900))
    assert q.join_waiting(Batch(_batch(1).readings, 0, received_ns=800)).received_ns == 700
    assert ScoringQueue().join_waiting(Batch(_batch(1).readings)).received_ns == 0


@pytest.mark.parametrize("model_dir", [False, True])
def test_the_bound_is_as_short_with_a_readings_log_as_without(model_dir: bool, tmp_path: Path) -> None:
    # Without a log the writer waits and the broker keeps the rest; with one, what the queue cannot
    # take is read back from disk, as cheaply as it would be taken from memory.
    store = SqliteAlertStore(tmp_path / "alerts.db")
    counters = Counters()
    pipeline = Pipeline(
        source_factory=lambda inbound: SimpleNamespace(connected=threading.Event(), ack=lambda mid, qos: None),
        sink=SimpleNamespace(),
        alerts=AlertManager(store, resolve_after_s=60, counters=counters),
        detector_config=lambda asset: MonitorConfig(),
        counters=counters,
        batch_size=100,
        flush_interval_s=0.1,
        max_in_flight=10,
        model_dir=str(tmp_path / "models") if model_dir else None,
    )
    assert pipeline.scoring.maxsize == SCORING_BACKLOG_READINGS and (pipeline.reading_log is not None) == model_dir
    store.close()
