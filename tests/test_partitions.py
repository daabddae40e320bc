"""Partition leases against a real nats-server: fencing when the server is gone, and take-over timing.

The scale-out test (tests/test_scaleout.py) runs whole workers; these drive the lease keeper alone
with recording callbacks, to check the timing the design rests on (docs/scaling.md, "Leases").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from pathlib import Path

import pytest
from servers import NatsServer, run_nats
from workers import wait_for

from ingest.nats_source import NatsLink, NatsOptions
from plantwatch.service.partitions import LeaseKeeper
from plantwatch.service.reachability import CheckFailed
from plantwatch.service.scaleout import check_nats

pytestmark = pytest.mark.integration

PARTITIONS = 4
LEASE_S = 3.0


class Recorder:
    """take/release callbacks that note when each partition started and stopped here."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken: dict[int, float] = {}
        self.released: dict[int, float] = {}

    def take(self, partition: int) -> None:
        with self.lock:
            self.taken[partition] = time.monotonic()

    def release(self, partition: int) -> None:
        with self.lock:
            self.released[partition] = time.monotonic()

    def holding(self) -> set[int]:
        with self.lock:
            return set(self.taken) - set(self.released)


def keeper(server: NatsServer, worker: str, recorder: Recorder) -> LeaseKeeper:
    link = NatsLink(NatsOptions(server.url, "UNUSED", "pw", PARTITIONS, name=worker))
    link.start()
    return LeaseKeeper(link, "leases", worker, PARTITIONS, LEASE_S, recorder.take, recorder.release)


def test_a_worker_that_cannot_reach_nats_stops_its_partitions_within_half_a_lease(tmp_path: Path) -> None:
    recorder = Recorder()
    with run_nats(tmp_path) as server:
        solo = keeper(server, "solo", recorder)
        solo.start()
        wait_for(lambda: recorder.holding() == set(range(PARTITIONS)), 20, "every partition taken")
        down_at = time.monotonic()
    # The server is gone: no renewal can succeed, so each partition is stopped by lease_s / 2 after
    # its last renewal (which came before down_at), long before another worker could take it.
    wait_for(lambda: len(recorder.released) == PARTITIONS, LEASE_S + 5, "the partitions to be fenced")
    assert all(at - down_at <= LEASE_S / 2 + 0.5 for at in recorder.released.values()), (down_at, recorder.released)
    solo._stop.set()
    for thread in solo._threads:  # a renewal scheduled on the loop as it stops would never be awaited
        thread.join(timeout=LEASE_S + 15)
    solo.link.close()


def test_a_dead_workers_partitions_are_taken_only_after_its_lease_expired(tmp_path: Path) -> None:
    first, second = Recorder(), Recorder()
    with run_nats(tmp_path) as server:
        a, b = keeper(server, "a", first), keeper(server, "b", second)
        a.start()
        b.start()
        half = PARTITIONS // 2

        def split() -> bool:
            return len(first.holding()) == half and len(second.holding()) == half

        wait_for(split, 30, "the fair split")
        held_by_a = first.holding()
        assert not held_by_a & second.holding()
        # a dies: its threads stop without freeing anything (as after SIGKILL).
        a._stop.set()
        for thread in a._threads:
            thread.join(10)
        dead_at = time.monotonic()
        wait_for(lambda: second.holding() == set(range(PARTITIONS)), 4 * LEASE_S, "b to take a's partitions")
        # Its last renewal was at most one renewal interval (lease_s / 6) before it died; b waits for
        # the revision to stay unchanged for lease_s from when it read it.
        for partition in held_by_a:
            assert second.taken[partition] - dead_at >= LEASE_S - LEASE_S / 6 - 0.1, (partition, second.taken)
        b.stop()
        assert set(second.released) == set(range(PARTITIONS))  # a graceful stop frees all it holds
        a.link.close()
        b.link.close()


def test_check_reaches_the_nats_server_and_tells_whether_the_stream_exists(tmp_path: Path) -> None:
    with run_nats(tmp_path) as server:
        assert check_nats(server.url, "PLANTWATCH") == (
            f"{server.url}: JetStream on; stream PLANTWATCH: none yet: will be created at start"
        )
        link = NatsLink(NatsOptions(server.url, "PLANTWATCH", "pw", PARTITIONS))
        link.start()
        link.ensure_stream()
        link.close()
        assert check_nats(server.url, "PLANTWATCH") == f"{server.url}: JetStream on; stream PLANTWATCH: 0 message(s)"
        url = server.url
    with pytest.raises(CheckFailed, match=url):
        check_nats(url, "PLANTWATCH", timeout_s=2)


def test_a_call_that_times_out_never_runs_later_and_a_closed_link_refuses_calls(tmp_path: Path) -> None:
    """A lease update the keeper gave up on must not land once it counts the partition lost."""
    ran = threading.Event()

    async def late() -> None:
        await asyncio.sleep(0.3)
        ran.set()

    async def anything() -> None:
        return None

    with run_nats(tmp_path) as server:
        link = NatsLink(NatsOptions(server.url, "UNUSED", "pw", PARTITIONS))
        with pytest.raises(ConnectionError, match="not running"):
            link.call(anything())  # before start()
        link.start()
        with pytest.raises(concurrent.futures.TimeoutError):
            link.call(late(), 0.05)
        assert not ran.wait(0.6)  # cancelled, not finished in the background
        link.close()
    refused = anything()
    with pytest.raises(ConnectionError, match="not running"):
        link.call(refused)
    assert inspect.getcoroutinestate(refused) == inspect.CORO_CLOSED  # not left to warn as never awaited
