"""The NATS JetStream edge: one durable pull consumer per partition of the sensor stream.

Sensors keep publishing MQTT (v3.1.1) to nats-server's own MQTT listener, which turns topic
``plant/l1/pump-7`` into subject ``plant.l1.pump-7``. A subject mapping of the server puts the
partition of the asset in front (``pw.<partition>.plant.l1.pump-7``, see :func:`partition_mapping`),
and a stream captures ``pw.>``. A worker that holds partition ``p`` (:mod:`plantwatch.service.partitions`)
consumes it through the durable consumer ``<stream>-p<p>`` with a :class:`NatsPartitionSource`, which
has the interface the pipeline's writer needs, as :class:`ingest.mqtt_source.MqttSource` has:

- it puts :class:`~ingest.messages.Inbound` items on the writer's queue, decoded by the same
  :class:`~ingest.decode.Decoder` from the subject turned back into the MQTT topic it was published on;
- :meth:`NatsPartitionSource.ack` acknowledges a delivery once the writer has stored it; the
  acknowledgement is sent from the connection's event-loop thread;
- it holds at most ``max_in_flight`` deliveries unacknowledged (it fetches no more than the free
  slots, and the consumer's ``max_ack_pending`` says the same to the server);
- ``connected`` and ``unacknowledged`` as for MQTT.

Takeover (:meth:`NatsPartitionSource.start`) recreates the partition's consumer at its acknowledgement
floor, so what the previous owner held unacknowledged comes again at once and in stream order,
instead of after ``ack_wait`` and behind newer messages (which the detector would find late). A
message acknowledged above the floor comes again too: a duplicate write, which the stores keep as one
point, never a gap. A stop gives back (``nak``) what was fetched and not stored.

All NATS calls run on one asyncio loop in a thread of its own (:class:`NatsLink`), shared by the
partitions of a worker and by its lease keeper.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import re
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

from ingest.decode import Decoder
from ingest.messages import DecodeError, Inbound
from ingest.rejects import count_reject
from ingest.topics import TopicTemplate
from telemetry.counters import Counters

log = logging.getLogger(__name__)

T = TypeVar("T")

FETCH_WAIT_S = 1.0  # a pull request waits this long for messages before it is made again
FETCH_MAX = 256  # messages asked for per pull request (fewer when fewer in-flight slots are free)


# -- subjects ------------------------------------------------------------------------------------


def template_subject_filter(template: TopicTemplate | str) -> tuple[str, int]:
    """The NATS subject filter of ``template``'s MQTT subscription and the (1-based) wildcard position
    of ``{asset}`` in it: ``plant/{line}/{asset}`` gives ``("plant.*.*", 2)``."""
    template = template if isinstance(template, TopicTemplate) else TopicTemplate(template)
    text = template.template
    segments = text.split("/")
    names = [s[1:-1] if s.startswith("{") and s.endswith("}") else None for s in segments]
    if "asset" not in names:
        raise ValueError(f"topic template {text!r} has no {{asset}} segment to partition by")
    wildcards = [n for n in names if n is not None]
    subject = ".".join("*" if n is not None else s for s, n in zip(segments, names, strict=True))
    return subject, wildcards.index("asset") + 1


def partition_mapping(template: TopicTemplate | str, prefix: str, partitions: int) -> tuple[str, str]:
    """The nats-server mapping (source, destination) that puts each asset's partition in front of its
    subject: ``("plant.*.*", "pw.{{partition(12,2)}}.plant.{{wildcard(1)}}.{{wildcard(2)}}")``."""
    source, asset_position = template_subject_filter(template)
    parts = source.split(".")
    position = 0
    mapped = []
    for part in parts:
        if part == "*":
            position += 1
            mapped.append(f"{{{{wildcard({position})}}}}")
        else:
            mapped.append(part)
    return source, f"{prefix}.{{{{partition({partitions},{asset_position})}}}}." + ".".join(mapped)


def partition_subject(prefix: str, partition: int) -> str:
    """The subjects of one partition in the stream."""
    return f"{prefix}.{partition}.>"


_ESCAPED_DOT = re.compile("//")


def subject_to_topic(subject: str) -> str:
    """The MQTT topic a subject came from through nats-server's MQTT listener (its conversion, reversed:
    ``.`` separates levels, ``//`` is a ``.`` of the topic (nats-server 2.10 and later), and the
    ``/.``, ``./`` escapes stand for empty levels)."""
    if "/" not in subject:
        return subject.replace(".", "/")
    levels = _ESCAPED_DOT.sub("\x00", subject).split(".")
    return "/".join("" if level == "/" else level for level in levels).replace("\x00", ".")


# -- the connection's event loop -----------------------------------------------------------------


@dataclass(frozen=True)
class NatsOptions:
    url: str
    stream: str
    prefix: str
    partitions: int
    ack_wait_s: float = 30.0
    max_in_flight: int = 1000
    name: str = "plantwatch"
    max_age_s: float = 7 * 24 * 3600  # of the stream this worker creates when it is missing


class NatsLink:
    """One NATS connection and the asyncio loop (a daemon thread) every NATS call of a worker runs on."""

    def __init__(self, options: NatsOptions) -> None:
        self.options = options
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="plantwatch-nats", daemon=True)
        self._nc: NatsClient | None = None
        self.connected = threading.Event()

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the loop and connect (reconnects for ever after that); raises OSError when the first
        connection does not succeed within ``timeout_s``."""
        self._thread.start()
        try:
            self.call(self._connect(), timeout_s)
        except (OSError, nats.errors.Error, TimeoutError, concurrent.futures.TimeoutError) as exc:
            raise OSError(f"cannot connect to NATS at {self.options.url}: {exc or type(exc).__name__}") from None

    async def _connect(self) -> None:
        async def disconnected() -> None:
            self.connected.clear()
            log.warning("NATS connection to %s lost; reconnecting", self.options.url)

        async def reconnected() -> None:
            self.connected.set()
            log.info("NATS reconnected to %s", self.options.url)

        async def error(exc: Exception) -> None:
            log.debug("NATS: %s", exc)

        self._nc = await nats.connect(
            self.options.url,
            name=self.options.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            allow_reconnect=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        self.connected.set()

    @property
    def js(self) -> JetStreamContext:
        assert self._nc is not None, "NatsLink.start() first"
        return self._nc.jetstream()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run ``coro`` on the loop and wait for its result (from any thread but the loop's). A call that
        times out is cancelled: a lease update the caller gave up on must not land later, when the
        worker already counts the partition lost. Before ``start()`` and after ``close()``: ``ConnectionError``."""
        if not self._thread.is_alive():  # not started, or closed: nothing would ever run it
            coro.close()  # closed here rather than warned about, at exit, as never awaited
            raise ConnectionError("the NATS link is not running (start() it; or it was closed)")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def ensure_stream(self) -> None:
        """Create the stream of the partitioned subjects if it does not exist: file storage, messages kept
        ``max_age_s`` (acknowledged or not, as a persistent MQTT session keeps them for its expiry)."""
        o = self.options

        async def ensure() -> None:
            try:
                await self.js.stream_info(o.stream)
            except NotFoundError:
                config = StreamConfig(name=o.stream, subjects=[f"{o.prefix}.>"], max_age=o.max_age_s)
                await self.js.add_stream(config)
                log.info("created the JetStream stream %s on %s.>", o.stream, o.prefix)

        self.call(ensure())

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until the server has everything sent so far (acknowledgements included)."""
        if self._nc is not None and self._nc.is_connected:
            self.call(self._nc.flush(timeout=max(1, round(timeout_s))), timeout_s + 1)

    def close(self) -> None:
        if self._nc is not None:
            try:  # drain: what was sent (acknowledgements) reaches the server first
                self.call(self._nc.drain() if self._nc.is_connected else self._nc.close(), 10.0)
            except Exception as exc:  # closing anyway
                log.debug("NATS close: %s", exc)
        try:  # calls that timed out leave their tasks behind: end them before the loop
            self.call(_cancel_other_tasks(), 5.0)
        except Exception as exc:  # closing anyway
            log.debug("NATS close: %s", exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_other_tasks() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- one partition's source ----------------------------------------------------------------------


def consumer_name(stream: str, partition: int) -> str:
    return f"{stream}-p{partition}"


class NatsPartitionSource:
    """Consumes one partition durably; the writer acknowledges each delivery after storing it."""

    def __init__(
        self, link: NatsLink, partition: int, decoder: Decoder, out: queue.Queue[Inbound], counters: Counters
    ) -> None:
        self.link = link
        self.partition = partition
        self.decoder = decoder
        self.out = out
        self.counters = counters
        self.connected = threading.Event()
        o = link.options
        self._stream = o.stream
        self._consumer = consumer_name(o.stream, partition)
        self._filter = partition_subject(o.prefix, partition)
        self._max_in_flight = o.max_in_flight
        self._lock = threading.Lock()
        self._held: dict[int, Msg] = {}  # mid -> the delivery to acknowledge
        self._by_seq: dict[int, int] = {}  # stream sequence -> mid, to recognise redeliveries of what we hold
        self._acks: list[Msg] = []  # stored, to acknowledge on the loop
        self._ack_scheduled = False
        self._next_mid = 1
        self._stopping = False
        self._task: concurrent.futures.Future[None] | None = None
        self._reasons_logged: set[str] = set()

    @property
    def unacknowledged(self) -> int:
        return len(self._held)

    def start(self) -> None:
        self._task = self.link.submit(self._consume())

    def stop(self) -> None:
        """Stop fetching; what was fetched and not acknowledged goes back to the server (``nak``) at once."""
        self._stopping = True
        if self._task is not None:
            try:
                self._task.result(timeout=FETCH_WAIT_S + 5)
            except Exception as exc:  # noqa: BLE001 - logged; stopping anyway
                log.warning("partition %d: the consumer loop ended with %s", self.partition, exc)
        try:
            self.link.call(self._give_back(), 10.0)
        except Exception as exc:  # noqa: BLE001 - they come back after ack_wait instead
            log.warning("partition %d: could not give back unacknowledged messages: %s", self.partition, exc)
        self.connected.clear()

    def ack(self, mid: int, qos: int = 1) -> None:
        """Acknowledge one delivery once its readings are durable (any thread; sent from the loop)."""
        with self._lock:
            msg = self._held.pop(mid, None)
            if msg is None:
                return
            self._by_seq.pop(msg.metadata.sequence.stream, None)
            self._acks.append(msg)
            if self._ack_scheduled:
                return
            self._ack_scheduled = True
        self.link.loop.call_soon_threadsafe(self._send_acks)

    def _send_acks(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
            self._ack_scheduled = False
        for msg in acks:
            # Msg.ack publishes to the reply subject; it only waits for the client's buffer.
            self.link.loop.create_task(msg.ack())

    # -- the loop's side ------------------------------------------------------------------------
    async def _consume(self) -> None:
        js = self.link.js
        await self._reset_consumer(js)
        sub = await js.pull_subscribe_bind(durable=self._consumer, stream=self._stream)
        self.connected.set()
        try:
            while not self._stopping:
                free = self._max_in_flight - len(self._held)
                if free <= 0:
                    await asyncio.sleep(0.01)
                    continue
                try:
                    msgs = await sub.fetch(min(free, FETCH_MAX), timeout=FETCH_WAIT_S)
                except nats.errors.TimeoutError:
                    continue
                except (nats.errors.Error, OSError) as exc:  # disconnected: the client reconnects
                    self.connected.clear()
                    log.debug("partition %d: fetch failed: %s", self.partition, exc)
                    await asyncio.sleep(0.5)
                    continue
                self.connected.set()
                for msg in msgs:
                    await self._take(msg)
        finally:
            await sub.unsubscribe()

    async def _reset_consumer(self, js: JetStreamContext) -> None:
        """The partition's durable consumer, (re)made to start after its acknowledgement floor."""
        start = 1
        try:
            info = await js.consumer_info(self._stream, self._consumer)
            floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
            start = (floor or 0) + 1
            await js.delete_consumer(self._stream, self._consumer)
        except NotFoundError:
            pass
        o = self.link.options
        await js.add_consumer(
            self._stream,
            ConsumerConfig(
                durable_name=self._consumer,
                filter_subject=self._filter,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=o.ack_wait_s,
                max_ack_pending=o.max_in_flight,
                max_deliver=-1,
            ),
        )
        log.info("partition %d: consuming %s from stream sequence %d", self.partition, self._filter, start)

    async def _take(self, msg: Msg) -> None:
        self.counters.inc("plantwatch_messages_received_total")
        seq = msg.metadata.sequence.stream
        with self._lock:
            held = self._by_seq.get(seq)
            if held is not None:  # redelivered after ack_wait while the writer still has it: ack the newest
                self._held[held] = msg
                self.counters.inc("plantwatch_redeliveries_skipped_total")
                return
        topic = subject_to_topic(msg.subject.split(".", 2)[2])
        try:
            decoded = self.decoder.decode(topic, msg.data)
        except DecodeError as exc:
            self._count_problem(exc, topic)
            await msg.ack()  # a payload that can never decode would come back for ever
            return
        for problem in decoded.problems:
            self._count_problem(problem, topic)
        with self._lock:
            mid = self._next_mid
            self._next_mid += 1
            self._held[mid] = msg
            self._by_seq[seq] = mid
        # Never full: it holds more than max_in_flight, and only held deliveries are put on it.
        self.out.put_nowait(Inbound(decoded.readings, mid, 1, received_ns=time.monotonic_ns()))

    async def _give_back(self) -> None:
        with self._lock:
            held, self._held, self._by_seq = list(self._held.values()), {}, {}
            acks, self._acks = self._acks, []
        for msg in acks:  # stored: the writer acknowledged them just before the stop
            await msg.ack()
        for msg in held:  # not stored: to the next owner at once, not after ack_wait
            await msg.nak()

    def _count_problem(self, exc: DecodeError, topic: str) -> None:
        count_reject(self.counters, self._reasons_logged, exc, topic, log)
