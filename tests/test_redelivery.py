"""What a reconnect brings: redeliveries answered, not handed on again (on a real Mosquitto), and
when the source counts as connected.

A broker restart redelivers, under the same packet ids and with DUP set, every delivery of the
session it holds unacknowledged: the ones plantwatch still writes and the ones whose PUBACK was lost
with the connection. Written again, each would be a duplicate sample in VictoriaMetrics.
"""

from __future__ import annotations

import json
import queue
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from servers import free_port, run_mosquitto
from waiting import wait_until

from ingest.decode import Decoder
from ingest.messages import Inbound
from ingest.mqtt_source import MqttOptions, MqttSource
from ingest.redelivery import RecentDeliveries, Seen
from ingest.topics import TopicTemplate
from telemetry.counters import Counters

SKIPPED = "plantwatch_redeliveries_skipped_total"


def _source(port: int, counters: Counters, inbound: queue.Queue[Inbound]) -> MqttSource:
    options = MqttOptions(host="127.0.0.1", port=port, client_id="redelivered", subscription="line/+", max_in_flight=50)
    source = MqttSource(options, Decoder(TopicTemplate("line/{asset}")), inbound, counters)
    source.start()
    wait_until(source.connected.is_set, 10, "the source to subscribe")
    return source


def _publish(port: int, frames: list[bytes]) -> None:
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="redelivery-pub")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        for frame in frames:
            publisher.publish("line/pump", frame, qos=1).wait_for_publish(5)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _frame(ts: int) -> bytes:
    return json.dumps({"ts": ts, "values": {"a": 1.0}}).encode()


def _take(inbound: queue.Queue[Inbound], count: int) -> list[Inbound]:
    return [inbound.get(timeout=10) for _ in range(count)]


@pytest.mark.integration
def test_a_broker_restart_redelivers_nothing_that_is_handed_on_twice(tmp_path: Path) -> None:
    port = free_port()
    counters = Counters()
    inbound: queue.Queue[Inbound] = queue.Queue()
    with run_mosquitto(tmp_path, port=port):
        source = _source(port, counters, inbound)
        _publish(port, [_frame(1_700_000_000 + i) for i in range(20)])
        held = _take(inbound, 20)
    try:
        # The broker is stopped (its state saved): these ten PUBACKs are lost with the connection.
        wait_until(lambda: not source.connected.is_set(), 10, "the disconnect to be noticed")
        for item in held[:10]:
            source.ack(item.mid or 0, item.qos)
        with run_mosquitto(tmp_path, port=port):
            wait_until(source.connected.is_set, 30, "the source to reconnect")
            wait_until(lambda: counters.get(SKIPPED) >= 20, 30, "the 20 redeliveries")
            assert inbound.empty()  # none handed on a second time
            for item in held[10:]:  # their PUBACKs answer the redeliveries: the same packet ids
                source.ack(item.mid or 0, item.qos)
            source.stop()
            # The session holds nothing more: a new process gets only what is published next.
            again = _source(port, Counters(), inbound)
            try:
                _publish(port, [_frame(1_800_000_000)])
                (first,) = _take(inbound, 1)
                assert first.readings[0].ts_ns == 1_800_000_000 * 10**9
            finally:
                again.stop()
    finally:
        source.stop()


def test_only_the_same_packet_id_with_the_same_content_is_a_redelivery() -> None:
    recent = RecentDeliveries(capacity=2)
    one = RecentDeliveries.fingerprint("line/pump", b"1")
    recent.handed_on(7, one)
    assert recent.redelivered(7, one) is Seen.PENDING
    assert recent.redelivered(7, RecentDeliveries.fingerprint("line/pump", b"2")) is None  # id reused
    assert recent.redelivered(8, one) is None  # the same payload published again
    recent.acknowledged(7)
    assert recent.redelivered(7, one) is Seen.ACKED
    recent.handed_on(8, one)
    recent.handed_on(9, one)
    assert recent.redelivered(7, one) is None  # forgotten, the oldest beyond capacity


@pytest.mark.parametrize("session_present", [True, False])
def test_a_resumed_session_is_connected_at_connack_a_new_one_once_subscribed(session_present: bool) -> None:
    """A resumed session holds the subscription, and its SUBACK can queue behind a long backlog."""
    options = MqttOptions(host="127.0.0.1", port=free_port(), client_id="resumed", subscription="line/+")
    source = MqttSource(options, Decoder(TopicTemplate("line/{asset}")), queue.Queue(), Counters())
    flags = mqtt.ConnectFlags(session_present=session_present)
    source._on_connect(source._client, None, flags, ReasonCode(PacketTypes.CONNACK, "Success"), None)
    assert source.connected.is_set() is session_present
    source._on_subscribe(source._client, None, 1, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")], None)
    assert source.connected.is_set()
