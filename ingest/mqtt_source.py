"""The MQTT edge: a paho v2 subscriber that decodes and enqueues, nothing more.

Delivery semantics (after Telegraf's mqtt_consumer):
- QoS 1 with a persistent session under a fixed client id, so the broker keeps readings published
  while plantwatch is down or slow;
- ``manual_ack``: a message is acknowledged only by :meth:`MqttSource.ack`, which the writer calls
  after the readings are durably stored. Until then the broker will redeliver it;
- in-flight messages are bounded by us, not only by the broker: MQTT 5's Receive Maximum
  (``max_in_flight``) asks the broker to send no more unacknowledged messages than that, but
  Mosquitto 2.0 stops honouring it once acknowledgements flow (8,665 outstanding with a cap of
  1,000). So paho's thread also waits, before it hands on a delivery, until fewer than
  ``max_in_flight`` deliveries are unacknowledged here; the socket then fills and TCP slows the
  broker;
- a reconnect redelivers what we held unacknowledged and what we acknowledged too late (the PUBACK
  lost with the connection): those redeliveries are answered here, not written again
  (:mod:`ingest.redelivery`, ``plantwatch_redeliveries_skipped_total``);
- subscriptions are made in ``on_connect`` so they are renewed after every reconnect; paho reconnects
  with capped exponential backoff (``reconnect_min_s`` … ``reconnect_max_s``).

Connection trouble (nothing listening, TLS, a refused login, a lost session) is logged with the
broker URL and what to check, once per cause and then at most every ``reconnect_max_s``, and counted
in ``plantwatch_mqtt_connect_failures_total{cause}`` (see :mod:`ingest.mqtt_trouble`).

Rejected payloads are counted by reason, logged once per reason, optionally republished to a
dead-letter topic, and acknowledged (redelivering a payload that can never decode would loop forever).
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.decode import Decoder
from ingest.messages import DecodeError, Inbound
from ingest.mqtt_trouble import TroubleLog, loss_trouble, refusal_trouble, socket_trouble, unanswered_trouble
from ingest.redelivery import RecentDeliveries, Seen
from ingest.rejects import count_reject
from ingest.tls import NO_TLS_FILES, TlsFiles

if TYPE_CHECKING:  # a type only: the receiver child runs without prometheus_client (~3 MB)
    from telemetry.counters import Counters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int
    client_id: str
    subscription: str
    qos: int = 1
    protocol: str = "5"
    clean_start: bool = False
    session_expiry_s: int = 7 * 24 * 3600
    max_in_flight: int = 1000
    keepalive_s: int = 30
    tls: bool = False
    tls_files: TlsFiles = NO_TLS_FILES  # with tls: the CA (default: the system's), a client certificate
    username: str | None = None
    password: str | None = None
    dead_letter_topic: str | None = None
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    # MQTT 5 Maximum Packet Size sent with CONNECT (None: none): the broker then never sends a larger
    # packet, so a huge payload is not received in full before the decoder's size check refuses it.
    max_packet_bytes: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def paho_client(opts: MqttOptions, client_id: str, *, clean_start: bool, manual_ack: bool = False) -> mqtt.Client:
    """A paho client for the broker of ``opts``: its protocol, reconnect delays, credentials and TLS."""
    protocol = mqtt.MQTTv5 if opts.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if protocol == mqtt.MQTTv5 else clean_start,
        manual_ack=manual_ack,
    )
    client.reconnect_delay_set(min_delay=max(1, round(opts.reconnect_min_s)), max_delay=round(opts.reconnect_max_s))
    if opts.username:
        client.username_pw_set(opts.username, opts.password)
    if opts.tls:
        client.tls_set(
            ca_certs=opts.tls_files.ca_file,
            certfile=opts.tls_files.cert_file,
            keyfile=opts.tls_files.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return client


class MqttSource:
    """Subscribes, decodes on paho's thread, hands :class:`Inbound` items to ``out``."""

    def __init__(self, options: MqttOptions, decoder: Decoder, out: queue.Queue[Inbound], counters: Counters) -> None:
        self.options = options
        self.decoder = decoder
        self.out = out
        self.counters = counters
        self.connected = threading.Event()
        self._reasons_logged: set[str] = set()
        self._stopping = False
        self._refused = False  # the broker refused the last CONNECT (paho then reports a disconnect too)
        # Deliveries handed on and not yet acknowledged (QoS 1 and 2): at most max_in_flight.
        self._unacked = threading.BoundedSemaphore(options.max_in_flight)
        self._unacked_count = 0
        self._count_lock = threading.Lock()
        # Room for what a reconnect can redeliver of what we saw: the deliveries held plus the
        # acknowledgements lost in transit (a whole batch's, up to max_in_flight, leave together).
        self._recent = RecentDeliveries(capacity=4 * options.max_in_flight)
        # The longest paho's thread waited to hand a delivery on since the last connect: it reads and
        # writes nothing meanwhile, so a wait near keepalive_s can end the connection.
        self._longest_wait_s = 0.0
        self.trouble = TroubleLog(
            options.url,
            counters,
            repeat_s=options.reconnect_max_s,
            backoff=f"{options.reconnect_min_s:g}-{options.reconnect_max_s:g} s",
        )
        self._client = self._make_client()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until :meth:`stop`."""
        opts = self.options
        kwargs: dict[str, object] = {}
        if opts.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = opts.session_expiry_s
            props.ReceiveMaximum = opts.max_in_flight
            if opts.max_packet_bytes is not None:
                props.MaximumPacketSize = opts.max_packet_bytes
            kwargs = {"clean_start": opts.clean_start, "properties": props}
        self._client.connect_async(opts.host, opts.port, keepalive=opts.keepalive_s, **kwargs)  # type: ignore[arg-type]
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def ack(self, mid: int, qos: int = 1) -> None:
        """Acknowledge one delivery once its readings are durable (thread-safe in paho)."""
        # Marked first: a redelivery seen from now on is acknowledged at once, even if this PUBACK is
        # lost with a connection that drops before paho sends it.
        self._recent.acknowledged(mid)
        self._client.ack(mid, qos)
        with self._count_lock:
            self._unacked_count -= 1
        self._unacked.release()

    @property
    def unacknowledged(self) -> int:
        """Deliveries handed on and not yet acknowledged (``plantwatch_unacked_messages``)."""
        return self._unacked_count

    # -- paho callbacks (paho's network thread: decode and enqueue only) ---------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, reason: ReasonCode, props: object
    ) -> None:
        if reason.is_failure:
            self._refused = True
            self.trouble.failed(refusal_trouble(reason))
            return
        failed = self.trouble.connected()
        log.info(
            "MQTT connected to %s as %s (session present: %s%s); subscribing to %s",
            self.options.url,
            self.options.client_id,
            flags.session_present,
            f"; after {failed} failed attempt(s)" if failed else "",
            self.options.subscription,
        )
        client.subscribe(self.options.subscription, qos=self.options.qos)
        # A session new to the broker is ``connected`` once the broker granted the subscription
        # (_on_subscribe): before that, a reading published would not reach us. A resumed session
        # holds the subscription already and readings flow at once, while the SUBACK queues behind
        # the backlog the broker sends first (54 s of 503s in bench/reliability.py's soak).
        if flags.session_present:
            self.connected.set()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: list[ReasonCode], props: object
    ) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.error(
                "the broker at %s refused the subscription to %s (%s): no readings arrive; check its ACL",
                self.options.url,
                self.options.subscription,
                ", ".join(str(r) for r in refused),
            )
            return
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags, reason: ReasonCode, props: object
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        refused, self._refused = self._refused, False
        if self._stopping or refused:  # after a refused CONNECT paho reports a disconnect too: explained
            return
        if was_connected:
            self.trouble.lost(loss_trouble(reason, self.options.client_id))
            if self._longest_wait_s >= 1.0:
                log.info(
                    "before the connection to %s ended, paho's network thread had waited up to %.1f s for "
                    "the writer (mqtt.max_in_flight deliveries unacknowledged, or the inbound queue full)",
                    self.options.url,
                    self._longest_wait_s,
                )
        else:  # closed before any CONNACK: no other callback would say so
            self.trouble.failed(unanswered_trouble(reason, tls=self.options.tls))
        self._longest_wait_s = 0.0

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho passes no cause, but calls this from inside its `except OSError` around the connect:
        # the exception being handled is the socket or TLS error.
        self.trouble.failed(socket_trouble(sys.exception(), tls=self.options.tls))

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.counters.inc("plantwatch_messages_received_total")
        mid = message.mid if message.qos > 0 else None
        payload = bytes(message.payload)
        fingerprint = RecentDeliveries.fingerprint(message.topic, payload)
        # QoS 1 only: QoS 2 has an exchange of its own (PUBREC/PUBREL) for the same purpose.
        if message.qos == 1 and message.dup and self._answered_redelivery(message.mid, message.qos, fingerprint):
            return
        try:
            decoded = self.decoder.decode(message.topic, payload)
        except DecodeError as exc:
            self._reject(exc, message)
            if mid is not None:
                client.ack(mid, message.qos)
            return
        for problem in decoded.problems:
            self._count_problem(problem, message.topic)
        if mid is not None:  # before it is handed on: the writer may acknowledge it at once
            self._recent.handed_on(mid, fingerprint)
        self._enqueue(Inbound(decoded.readings, mid, message.qos, received_ns=time.monotonic_ns()))

    def _answered_redelivery(self, mid: int, qos: int, fingerprint: int) -> bool:
        """True when a DUP delivery repeats one we have: acknowledged again if we had, else left to
        the original's acknowledgement, which carries the same packet id."""
        seen = self._recent.redelivered(mid, fingerprint)
        if seen is None:
            return False
        if seen is Seen.ACKED:
            self._client.ack(mid, qos)
        self.counters.inc("plantwatch_redeliveries_skipped_total")
        return True

    def _enqueue(self, item: Inbound) -> None:
        started = time.monotonic()
        try:
            self._hand_on(item)
        finally:
            self._longest_wait_s = max(self._longest_wait_s, time.monotonic() - started)

    def _hand_on(self, item: Inbound) -> None:
        # Waiting in slices keeps stop() responsive.
        if item.mid is not None and not self._take_slot():
            return  # stopping: the delivery stays unacknowledged, and the broker redelivers it
        while not self._stopping:
            try:
                self.out.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _take_slot(self) -> bool:
        """Wait until fewer than max_in_flight deliveries are unacknowledged (False: stopping)."""
        while not self._unacked.acquire(timeout=0.5):
            if self._stopping:
                return False
        with self._count_lock:
            self._unacked_count += 1
        return True

    # -- rejects ---------------------------------------------------------------------------------
    def _reject(self, exc: DecodeError, message: mqtt.MQTTMessage) -> None:
        self._count_problem(exc, message.topic)
        if self.options.dead_letter_topic:
            envelope = {
                "reason": exc.reason,
                "detail": exc.detail,
                "topic": message.topic,
                "payload_b64": base64.b64encode(message.payload[:65536]).decode("ascii"),
            }
            self._client.publish(self.options.dead_letter_topic, json.dumps(envelope), qos=1)

    def _count_problem(self, exc: DecodeError, topic: str) -> None:
        count_reject(self.counters, self._reasons_logged, exc, topic, log)

    # -- construction ----------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        opts = self.options
        client = paho_client(opts, opts.client_id, clean_start=opts.clean_start, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client
