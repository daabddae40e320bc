"""The writer stage: decoded deliveries are stored in batches, then acknowledged to the broker.

It acknowledges an MQTT delivery only after ``sink.write`` returned, so a crash at any point leaves
unacknowledged readings with the broker, which redelivers them (at-least-once).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.messages import Inbound, Reading
from ingest.sink import Sink, SinkFatal, SinkStopped

log = logging.getLogger(__name__)

Ack = Callable[[int, int], None]


@dataclass
class StageHealth:
    """What /healthz reports about the pipeline's threads."""

    fatal: str | None = None
    last_write_ns: int = 0
    detector_errors: int = 0
    # Wall clock when the write in progress began (None between writes): a write that lasts is a
    # storage outage the sink is retrying through (readings stay unacknowledged at the broker).
    writing_since_ns: int | None = None


class Writer:
    """Takes decoded deliveries, stores them in batches, then acknowledges them."""

    def __init__(
        self,
        inbound: queue.Queue[Inbound],
        sink: Sink,
        ack: Ack,
        downstream: queue.Queue[tuple[Reading, ...]],
        *,
        batch_size: int,
        flush_interval_s: float,
        health: StageHealth,
        stop: threading.Event,
        fatal: threading.Event,
    ) -> None:
        self.inbound = inbound
        self.sink = sink
        self.ack = ack
        self.downstream = downstream
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.health = health
        self.stop = stop
        self.fatal = fatal

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self._collect()
            if not batch:
                continue
            readings = tuple(r for item in batch for r in item.readings)
            self.health.writing_since_ns = time.time_ns()
            try:
                self.sink.write(readings)
            except SinkStopped:
                return  # shutting down: unacked deliveries stay with the broker
            except SinkFatal as exc:
                self.health.fatal = str(exc)
                log.critical("storage refused our writes, stopping ingestion: %s", exc)
                self.fatal.set()
                return
            finally:
                self.health.writing_since_ns = None
            for item in batch:
                if item.mid is not None:
                    self.ack(item.mid, item.qos)
            self.health.last_write_ns = time.time_ns()
            self._hand_on(readings)

    def _collect(self) -> list[Inbound]:
        """Block for the first delivery, then gather more until the batch is full or the linger ends."""
        try:
            first = self.inbound.get(timeout=0.2)
        except queue.Empty:
            return []
        batch, count = [first], len(first.readings)
        deadline = time.monotonic() + self.flush_interval_s
        while count < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self.inbound.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                # Nothing more arriving right now: a short linger keeps latency low under light load.
                if self.inbound.empty():
                    break
                continue
            batch.append(item)
            count += len(item.readings)
        return batch

    def _hand_on(self, readings: tuple[Reading, ...]) -> None:
        while not self.stop.is_set():
            try:
                self.downstream.put(readings, timeout=0.5)
                return
            except queue.Full:
                continue
