"""Replay a historical sensor log over MQTT, one JSON frame per row, through the live pipeline.

Pacing: the log's own pace divided by ``speed``, a fixed ``rate`` in rows per second, or as fast as
the broker acknowledges. Outstanding QoS 1 publishes are bounded: paho reuses message ids and stalls
for ever past 65,535 unacknowledged publishes, and large in-flight windows make every ack slower.
"""

from __future__ import annotations

import json
import math
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import paho.mqtt.client as mqtt

from ingest.connack import NoSession, connect_and_await_connack, stop_network_loop
from ingest.logfile import SensorLog

MAX_OUTSTANDING = 2000
PROGRESS_EVERY = 500  # frames between progress calls: a bar's step, cheap next to 500 publishes


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`replay`: ``published`` of the log's ``rows`` frames had been handed to the client."""

    def __init__(self, published: int, rows: int) -> None:
        super().__init__(published, rows)
        self.published = published
        self.rows = rows


@dataclass(frozen=True)
class ReplayStats:
    rows: int
    published: int
    skipped_values: int
    seconds: float


def frames(log: SensorLog) -> Iterator[tuple[int, bytes, int]]:
    """Yield (ts_ns, JSON payload, number of non-finite values left out) for each row."""
    sensors = log.sensors
    for ts_ns, row in zip(log.timestamps_ns.tolist(), log.values.tolist(), strict=True):
        values = {name: value for name, value in zip(sensors, row, strict=True) if math.isfinite(value)}
        skipped = len(sensors) - len(values)
        # Nanosecond integers are unambiguous under the decoder's magnitude rule and lose nothing.
        payload = json.dumps({"ts": ts_ns, "values": values}, separators=(",", ":")).encode()
        yield ts_ns, payload, skipped


class Publisher:
    """A paho publisher that keeps at most ``max_outstanding`` QoS 1 publishes unacknowledged.

    Connecting raises OSError: ``socket.gaierror`` for a host that does not resolve, the refusal or
    TLS failure of the connect; :class:`~ingest.connack.NoSession` when the broker refuses the session or
    never answers.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "",
        qos: int = 1,
        max_outstanding: int = 1000,
        tls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ):
        self.qos = qos
        self.max_outstanding = max_outstanding
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(20)
        self.client.max_queued_messages_set(0)
        if tls:
            self.client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        if username:
            self.client.username_pw_set(username, password)
        # The messages leave the broker's name to the caller, which knows where it came from (a flag, a key).
        try:
            connect_and_await_connack(self.client, host, port, keepalive=30, timeout_s=10)
        except NoSession:
            self.close()
            raise

    def publish(self, topic: str, payload: bytes) -> None:
        while len(self._pending) >= self.max_outstanding:
            self._pending.popleft().wait_for_publish(timeout=30)
        info = self.client.publish(topic, payload, qos=self.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
        if self.qos > 0:
            self._pending.append(info)

    def flush(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self._pending)} publishes still unacknowledged after {timeout_s} s")
            self._pending.popleft().wait_for_publish(timeout=left)

    def unacknowledged(self) -> int:
        """QoS 1 publishes the broker has not acknowledged yet (lost if the connection closes now)."""
        return sum(not info.is_published() for info in self._pending)

    def close(self) -> None:
        stop_network_loop(self.client)


def replay(
    log: SensorLog,
    publisher: Publisher,
    topic: str,
    *,
    speed: float | None = None,
    rate: float | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayStats:
    """Publish every row of ``log``; ``speed`` and ``rate`` are exclusive, neither means as fast as possible.
    ``progress(frames, total)`` is called every ``PROGRESS_EVERY`` frames and at the end (a CLI progress bar)."""
    if speed is not None and rate is not None:
        raise ValueError("give either speed or rate, not both")
    if (speed is not None and speed <= 0) or (rate is not None and rate <= 0):
        raise ValueError("speed and rate must be positive")
    started = time.monotonic()
    first_ts = int(log.timestamps_ns[0]) if len(log.timestamps_ns) else 0
    published = skipped = 0
    try:
        for index, (ts_ns, payload, left_out) in enumerate(frames(log)):
            if stop is not None and stop.is_set():
                break
            due = _due(index, ts_ns - first_ts, speed, rate)
            if due is not None:
                wait = started + due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            publisher.publish(topic, payload)
            published += 1
            skipped += left_out
            if progress is not None and published % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY, len(log.timestamps_ns))
        publisher.flush()
        if progress is not None:
            progress(published % PROGRESS_EVERY, len(log.timestamps_ns))
    except KeyboardInterrupt:
        raise ReplayInterrupted(published, len(log.timestamps_ns)) from None
    return ReplayStats(len(log.timestamps_ns), published, skipped, time.monotonic() - started)


def _due(index: int, offset_ns: int, speed: float | None, rate: float | None) -> float | None:
    if rate is not None:
        return index / rate
    if speed is not None:
        return max(offset_ns, 0) / 1e9 / speed
    return None


def as_log(timestamps_ns: np.ndarray, sensors: tuple[str, ...], values: np.ndarray) -> SensorLog:
    """Wrap generated arrays as a SensorLog (used by the demo and tests)."""
    return SensorLog(
        timestamps_ns=timestamps_ns.astype(np.int64),
        timestamp_text=[str(t) for t in timestamps_ns.tolist()],
        sensors=sensors,
        values=values.astype(np.float64),
        labels={},
    )
