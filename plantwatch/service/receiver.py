"""MQTT receiving in a process of its own (``mqtt.receiver: process``): paho's network loop and the
decoding get a core and an interpreter lock to themselves.

Profiled at full rate in one process (``bench/throughput.py``, py-spy ``--gil``), paho's thread held
the lock 60 % of the time, the detector 23 %, the writer 10 %, the API 6 %: every stage waited for the
others, and ``plantwatch run`` stored and scored 2,200 frames/s where a bare paho subscriber received
10,000. Here the child process runs :class:`~ingest.mqtt_source.MqttSource` exactly as the service
does in-process (in-flight bound, redelivery answers, connection trouble, rejects), and hands its
:class:`~ingest.messages.Inbound` deliveries to this process in chunks over a pipe; the writer's
acknowledgements go back in chunks the same way. The writer, the detector and the API are unchanged:
to them this is a source like any other (``start``, ``stop``, ``ack``, ``connected``,
``unacknowledged``).

Delivery guarantees hold: a delivery is acknowledged to the broker only when the writer here calls
:meth:`ReceiverProcess.ack`, after the durable write. If the child dies, its deliveries still queued
here are never acknowledged (their packet ids belong to its connection: each child's ids carry its
generation, and acknowledgements of an earlier generation are dropped), the broker redelivers them
to the next child, which starts at once. Counters the child increments reach ``/metrics`` here
within ``RELAY_S``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from ingest.decode import Decoder
from ingest.messages import Inbound, inbound_queue
from ingest.mqtt_source import MqttOptions, MqttSource

if TYPE_CHECKING:  # a type only: the receiver child runs without prometheus_client (~3 MB)
    from telemetry.counters import Counters

log = logging.getLogger(__name__)

CHUNK = 256  # deliveries per message from the child: one pickle and one pipe write for many
RELAY_S = 0.2  # the child's counters reach this process's within this long
GENERATION = 1 << 16  # MQTT packet ids are below 2**16: a child's ids carry its generation above them
STOP_TIMEOUT_S = 10.0
# The child's first words: it leaves SIGINT and SIGTERM to the service (a Ctrl-C or a service manager
# signals the whole process group; the service stops the child when its writer is done, and the
# child stops when the service's end of the pipes closes), takes this process's import path from the
# pipe of acknowledgements (``argv[2]``; deliveries go up ``argv[1]``), then its arguments. A plain
# interpreter started with subprocess rather than multiprocessing's ``spawn``: that one also starts
# multiprocessing's resource tracker, a third interpreter of 13 MB that has nothing to track here,
# and imports the service's ``__main__`` into the child.
_BOOTSTRAP = (
    "import signal, sys; from multiprocessing.connection import Connection; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "acks = Connection(int(sys.argv[2]), writable=False); sys.path[:] = acks.recv(); "
    "from plantwatch.service.receiver import main; main(Connection(int(sys.argv[1]), readable=False), acks)"
)


class _CountRelay:
    """The child's stand-in for :class:`Counters`: increments gathered and sent to the parent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + amount

    def take(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts


# What a formatter may ask of a relayed record besides its message (the child's pid and thread stay).
_RECORD_FIELDS: tuple[str, ...] = ("name", "levelno", "levelname", "pathname", "filename", "module", "lineno")
_RECORD_FIELDS += ("funcName", "created", "msecs", "thread", "threadName", "process", "processName")


class _LogRelay(logging.Handler):
    """The child's log records go up the pipe, to be handled by the parent's loggers: one log, in the
    parent's format and levels, that the parent's handlers (and tests' captures) see."""

    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        fields = {key: getattr(record, key) for key in _RECORD_FIELDS}
        fields["msg"] = record.getMessage()
        if record.exc_info:
            fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
        with contextlib.suppress(OSError, ValueError):  # the parent is gone: nobody is left to tell
            self._send(("log", fields))


def _relayed(fields: dict[str, Any]) -> None:
    """A record the child logged, handled here as if logged here (unless this logger is quieter)."""
    logger = logging.getLogger(fields["name"])
    if logger.isEnabledFor(fields["levelno"]):
        logger.handle(logging.makeLogRecord(fields))


def _child(options: MqttOptions, decoder: Decoder, data: Connection, acks: Connection, level: int) -> None:
    """The child process: an MqttSource whose deliveries, counters and log records go up ``data``;
    acknowledgements (and the word to stop) come down ``acks``."""
    send_lock = threading.Lock()
    stopping = threading.Event()

    def send(message: tuple[str, Any]) -> None:
        with send_lock:
            data.send(message)

    logging.getLogger().addHandler(_LogRelay(send))
    logging.getLogger().setLevel(level)
    relay = _CountRelay()
    out = inbound_queue(options.max_in_flight)
    source = MqttSource(options, decoder, out, relay)  # type: ignore[arg-type]

    def forward() -> None:
        connected, relayed_at = False, time.monotonic()
        while not stopping.is_set():
            chunk = _gather(out)
            # The counts go first: the parent's counters never lag the deliveries they describe.
            if chunk or time.monotonic() - relayed_at >= RELAY_S:
                relayed_at = time.monotonic()
                if counts := relay.take():
                    send(("counts", counts))
            if chunk:
                send(("in", chunk))
            if source.connected.is_set() != connected:
                connected = not connected
                send(("connected", connected))

    def forward_until_the_parent_is_gone() -> None:
        with contextlib.suppress(OSError):  # a broken pipe: the main thread reads its end and stops
            forward()

    forwarder = threading.Thread(target=forward_until_the_parent_is_gone, name="receiver-forward", daemon=True)
    source.start()
    forwarder.start()
    try:
        while (message := acks.recv()) is not None:  # None: stop, the parent's writer is done
            for mid, qos in message:
                source.ack(mid, qos)
    except (EOFError, KeyboardInterrupt):
        pass  # the parent is gone: stop, leaving the rest unacknowledged with the broker
    finally:
        source.stop()  # paho sends the queued PUBACKs before its DISCONNECT
        stopping.set()
        forwarder.join(timeout=2)
        with contextlib.suppress(OSError):  # the parent is gone: nobody is left to count them
            send(("counts", relay.take()))


def main(data: Connection, acks: Connection) -> None:
    """The child's entry (see ``_BOOTSTRAP``): its arguments come down ``acks`` first."""
    options, decoder, level = acks.recv()
    _child(options, decoder, data, acks, level)


def _ended(process: subprocess.Popen[bytes]) -> int | None:
    """Wait for the child to exit, killing it if it does not (it ignores SIGTERM): its exit code."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        return process.wait(timeout=STOP_TIMEOUT_S)
    process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        return process.wait(timeout=STOP_TIMEOUT_S)
    return None


def _gather(out: queue.Queue[Inbound]) -> list[Inbound]:
    """The deliveries waiting, up to CHUNK, after waiting up to RELAY_S for the first."""
    try:
        chunk = [out.get(timeout=RELAY_S)]
    except queue.Empty:
        return []
    try:
        while len(chunk) < CHUNK:
            chunk.append(out.get_nowait())
    except queue.Empty:
        pass
    return chunk


class ReceiverProcess:
    """A source for the pipeline whose MQTT client runs in a child process (see the module docstring)."""

    def __init__(self, options: MqttOptions, decoder: Decoder, out: queue.Queue[Inbound], counters: Counters) -> None:
        self.options = options
        self.out = out
        self.counters = counters
        self.connected = threading.Event()
        # Pickled to each child as it is now (a child started after one died begins with the publisher
        # limits' first state: the assets it admits are those of the saved models, then the first new ones).
        self._decoder = decoder
        self._lock = threading.Condition()
        self._acks: list[tuple[int, int, int]] = []  # (generation, packet id, qos) not yet sent down
        self._generation = 0
        self._unacked = 0
        self._stopping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._data: Connection | None = None
        self._ack_pipe: Connection | None = None
        self._threads: list[threading.Thread] = []

    @property
    def unacknowledged(self) -> int:
        """Deliveries of the current child handed on and not yet acknowledged."""
        return self._unacked

    def start(self) -> None:
        self._spawn()
        for name, target in (("receiver-read", self._read), ("receiver-acks", self._send_acks)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn(self) -> None:
        """A new child (not forked: that would copy this process's threads' locks), and its pipes."""
        data_recv, data_send = os.pipe()
        ack_recv, ack_send = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(data_send), str(ack_recv)],
                stdin=subprocess.DEVNULL,
                pass_fds=(data_send, ack_recv),
            )
        finally:
            os.close(data_send)
            os.close(ack_recv)
        acks = Connection(ack_send, readable=False)
        with contextlib.suppress(OSError):  # a child that died at once is found by the reader, as any other
            acks.send(sys.path)
            acks.send((self.options, self._decoder, logging.getLogger().getEffectiveLevel()))
        with self._lock:
            self._generation += 1
            self._unacked = 0
            self._process, self._data, self._ack_pipe = process, Connection(data_recv, writable=False), acks
            self._lock.notify_all()

    def ack(self, mid: int, qos: int = 1) -> None:
        """Acknowledge one delivery (any thread); one of an earlier child is dropped: its broker
        connection is gone, and the broker redelivers it to the current child."""
        generation, packet_id = divmod(mid, GENERATION)
        with self._lock:
            if generation != self._generation:
                return
            self._acks.append((generation, packet_id, qos))
            self._unacked -= 1
            self._lock.notify_all()

    def _send_acks(self) -> None:
        while True:
            with self._lock:
                while not self._acks and not self._stopping:
                    self._lock.wait()
                if not self._acks:
                    return
                current = [(mid, qos) for gen, mid, qos in self._acks if gen == self._generation]
                self._acks = []
                pipe = self._ack_pipe
            if current and pipe is not None:
                with contextlib.suppress(OSError):  # the child died: its deliveries return to the next one
                    pipe.send(current)

    def _read(self) -> None:
        while True:
            data = self._data
            assert data is not None
            try:
                kind, body = data.recv()
            except (EOFError, OSError):
                if self._stopping:
                    return
                self._child_died()
                continue
            if kind == "in":
                self._hand_on(body)
            elif kind == "log":
                _relayed(body)
            elif kind == "connected":
                (self.connected.set if body else self.connected.clear)()
            else:
                for (name, labels), amount in body.items():
                    self.counters.inc(name, amount, **dict(labels))

    def _hand_on(self, chunk: list[Inbound]) -> None:
        if self._stopping:
            return  # unacknowledged: the broker redelivers them to the next session
        offset = self._generation * GENERATION
        with self._lock:
            self._unacked += sum(item.mid is not None for item in chunk)
        for item in chunk:
            if item.mid is not None:
                item = Inbound(item.readings, offset + item.mid, item.qos, item.received_ns)
            while not self._stopping:
                try:
                    self.out.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def _child_died(self) -> None:
        self.connected.clear()
        code = _ended(self._process) if self._process is not None else None
        if self._data is not None:
            self._data.close()  # this thread's own; the acknowledgements' pipe may be in use: left to be collected
        log.error("the MQTT receiver process ended (exit code %s); starting another", code)
        time.sleep(1.0)
        self._spawn()

    def stop(self) -> None:
        """After the writer has acknowledged what it stored: send those acknowledgements, then stop the child."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._threads[1].join(timeout=STOP_TIMEOUT_S)  # the acknowledgements are sent
        pipe, process = self._ack_pipe, self._process
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.send(None)
        if process is not None:
            _ended(process)
        self._threads[0].join(timeout=STOP_TIMEOUT_S)
        self.connected.clear()
