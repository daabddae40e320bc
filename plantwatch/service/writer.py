"""The writer stage: decoded deliveries are stored in batches, logged, then acknowledged to the broker.

It acknowledges an MQTT delivery only after ``sink.write`` returned and the batch is in the readings
log, so a crash at any point leaves unacknowledged readings with the broker, which redelivers them
(at-least-once), and every acknowledged reading not yet covered by a checkpoint can be scored again
from the log (:mod:`plantwatch.service.reading_log`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.messages import Inbound, Reading
from ingest.sink import Sink, SinkFatal, SinkStopped
from plantwatch.service.reading_log import ReadingLog
from plantwatch.service.scoring_queue import Batch, oldest_received
from telemetry.counters import Counters

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
    # time.monotonic_ns() at receipt of the oldest delivery in the writer's hands (None: none).
    oldest_in_hand_ns: int | None = None


class Writer:
    """Takes decoded deliveries, stores them in batches, then acknowledges them."""

    def __init__(
        self,
        inbound: queue.Queue[Inbound],
        sink: Sink,
        ack: Ack,
        downstream: queue.Queue[Batch],
        *,
        reading_log: ReadingLog | None = None,
        batch_size: int,
        flush_interval_s: float,
        health: StageHealth,
        stop: threading.Event,
        fatal: threading.Event,
        metrics: Counters | None = None,
        max_in_flight: int = 65535,
    ) -> None:
        self.metrics = metrics  # latency and batch-size histograms
        self.inbound = inbound
        self.sink = sink
        self.ack = ack
        self.downstream = downstream
        self.reading_log = reading_log
        self._log_failed_at = -60.0
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_in_flight = max_in_flight  # the source's bound on deliveries unacknowledged (mqtt.max_in_flight)
        self.health = health
        self.stop = stop
        self.fatal = fatal

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self._collect()
            if not batch:
                continue
            readings = tuple(r for item in batch for r in item.readings)
            self.health.oldest_in_hand_ns = batch[0].received_ns
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
            seq = self._log(readings)
            for item in batch:
                if item.mid is not None:
                    self.ack(item.mid, item.qos)
            self._observe(batch, len(readings))
            self.health.oldest_in_hand_ns = None
            self.health.last_write_ns = time.time_ns()
            self._hand_on(Batch(readings, seq, oldest_received(item.received_ns for item in batch)))

    def _observe(self, batch: list[Inbound], readings: int) -> None:
        if self.metrics is None:
            return
        acked_ns = time.monotonic_ns()
        self.metrics.observe("plantwatch_write_batch_readings", readings)
        for item in batch:
            if item.received_ns:  # 0: not from the broker (a test's delivery)
                self.metrics.observe("plantwatch_received_to_acked_seconds", (acked_ns - item.received_ns) / 1e9)

    def _log(self, readings: tuple[Reading, ...]) -> int:
        """The batch's number in the readings log; 0 without a log, or when it cannot be written (a full
        disk costs the verdicts a crash would leave unscored, never a reading: those are stored)."""
        if self.reading_log is None:
            return 0
        try:
            return self.reading_log.append(readings)
        except OSError as exc:
            now = time.monotonic()
            if now - self._log_failed_at >= 60.0:
                self._log_failed_at = now
                log.error("cannot append to the readings log in %s: %s", self.reading_log.directory, exc)
            return 0

    def _collect(self) -> list[Inbound]:
        """Block for the first delivery, then gather more until the batch is full or the linger ends."""
        try:
            first = self.inbound.get(timeout=0.2)
        except queue.Empty:
            return []
        batch, count = [first], len(first.readings)
        held = int(first.mid is not None)
        deadline = time.monotonic() + self.flush_interval_s
        # Holding max_in_flight unacknowledged deliveries, no more can come until these are acknowledged.
        while count < self.batch_size and held < self.max_in_flight:
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
            held += item.mid is not None
        return batch

    def _hand_on(self, batch: Batch) -> None:
        """To the detector. A logged batch never waits: when the detector is behind it reads the batch
        back from the readings log, so acknowledgements never wait on scoring (they used to, and paho's
        thread, waiting for an in-flight slot meanwhile, let the MQTT keepalive lapse). Without a log the
        writer waits, and the broker keeps what follows."""
        if batch.seq:
            # When full, left in the log: the detector sees the gap in the numbers and reads it there.
            with contextlib.suppress(queue.Full):
                self.downstream.put_nowait(batch)
            return
        while not self.stop.is_set():
            try:
                self.downstream.put(batch, timeout=0.5)
                return
            except queue.Full:
                continue
