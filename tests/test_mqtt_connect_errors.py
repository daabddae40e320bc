"""Broker connection trouble is logged with the broker URL and what to check, against a real Mosquitto.

Without these messages an unreachable broker, a TLS mismatch or a refused login only showed as
/healthz 503.
"""

from __future__ import annotations

import logging
import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from servers import MosquittoServer, VictoriaServer, require_binary, run_mosquitto
from waiting import wait_until

from ingest.decode import Decoder
from ingest.messages import Inbound
from ingest.mqtt_source import MqttOptions, MqttSource
from ingest.mqtt_trouble import CONNECT_FAILURES
from ingest.topics import TopicTemplate
from plantwatch.service.wiring import PACKET_OVERHEAD_BYTES, mqtt_options
from plantwatch.settings import load_settings
from telemetry.counters import Counters

pytestmark = pytest.mark.integration

PASSWD_BIN = "/usr/bin/mosquitto_passwd"


@pytest.fixture
def caplog_mqtt(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="ingest.mqtt_source")
    return caplog


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ingest.mqtt_source" and r.levelno == level]


def _start(port: int, counters: Counters, **options: object) -> MqttSource:
    # reconnect 1 s, 2 s, 4 s ... up to 30 s: a repeat of the same cause is logged at most every 30 s
    opts = MqttOptions(
        host="127.0.0.1",
        port=port,
        client_id=str(options.pop("client_id", "trouble-test")),
        subscription="trouble/+",
        reconnect_min_s=1,
        reconnect_max_s=30,
        **options,  # type: ignore[arg-type]
    )
    inbound: queue.Queue[Inbound] = queue.Queue(maxsize=100)
    source = MqttSource(opts, Decoder(TopicTemplate("trouble/{asset}")), inbound, counters)
    source.start()
    return source


def _only_error(caplog: pytest.LogCaptureFixture, port: int, cause: str, times: int, **options: object) -> str:
    """Connect until ``times`` attempts failed for ``cause``; the one error message logged for them."""
    counters = Counters()
    source = _start(port, counters, **options)
    try:
        wait_until(lambda: counters.get(CONNECT_FAILURES, cause=cause) >= times, 30, f"{times} failures ({cause})")
    finally:
        source.stop()
    assert not source.connected.is_set()
    errors = _records(caplog, logging.ERROR)
    assert len(errors) == 1, errors  # several attempts, one message: the repeat waits reconnect_max_s
    return errors[0]


def test_nothing_listening_is_logged_once_with_url_and_advice(caplog_mqtt: pytest.LogCaptureFixture) -> None:
    error = _only_error(caplog_mqtt, 1, "refused", 3)
    assert "mqtt://127.0.0.1:1" in error and "connection refused" in error
    assert "check that the broker is running and that mqtt.url names its host and port" in error
    assert "/healthz answers 503" in error


def test_tls_to_a_plain_listener_says_which_scheme_to_use(
    mosquitto: MosquittoServer, caplog_mqtt: pytest.LogCaptureFixture
) -> None:
    error = _only_error(caplog_mqtt, mosquitto.port, "tls_handshake", 2, tls=True)
    assert f"mqtts://127.0.0.1:{mosquitto.port}" in error and "TLS handshake failed" in error
    assert "mqtts:// needs a TLS listener" in error and "use mqtt://" in error


def test_a_server_that_closes_before_answering_connect_is_named(
    victoria: VictoriaServer, caplog_mqtt: pytest.LogCaptureFixture
) -> None:
    # mqtt.url at a port that is no MQTT broker's (here an HTTP server): TCP connects, the CONNECT gets
    # no CONNACK, the server closes. A TLS-only listener spoken to with mqtt:// ends the same way.
    error = _only_error(caplog_mqtt, victoria.port, "no_connack", 1)
    assert f"mqtt://127.0.0.1:{victoria.port}" in error and "closed the connection before answering" in error
    assert "names the broker's MQTT port" in error and "needs mqtts://" in error


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """Mosquitto with a password file and no anonymous access; user `plant`, password `secret`."""
    require_binary(PASSWD_BIN)
    passwd = tmp_path / "passwd"
    subprocess.run([PASSWD_BIN, "-b", "-c", str(passwd), "plant", "secret"], check=True, capture_output=True)
    passwd.chmod(0o644)  # the broker reads it after dropping root
    with run_mosquitto(tmp_path, extra_config=f"allow_anonymous false\npassword_file {passwd}\n") as server:
        yield server


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_refused_login_names_the_credentials_to_check(
    locked_broker: MosquittoServer, caplog_mqtt: pytest.LogCaptureFixture, protocol: str
) -> None:
    port = locked_broker.port
    error = _only_error(caplog_mqtt, port, "not_authorized", 2, username="plant", password="wrong", protocol=protocol)
    assert f"mqtt://127.0.0.1:{port}" in error and "refused the connection" in error
    assert "mqtt.username" in error and "PLANTWATCH_MQTT__PASSWORD" in error
    assert "disconnect" not in " ".join(_records(caplog_mqtt, logging.WARNING)).lower()  # no second story

    # The same broker takes the right password: the message was about the login, nothing else.
    good = _start(locked_broker.port, Counters(), username="plant", password="secret", protocol=protocol)
    try:
        assert good.connected.wait(10)
    finally:
        good.stop()


def test_a_second_client_with_our_client_id_is_named_as_the_cause(
    mosquitto: MosquittoServer, caplog_mqtt: pytest.LogCaptureFixture
) -> None:
    counters = Counters()
    source = _start(mosquitto.port, counters, client_id="trouble-twin")
    try:
        assert source.connected.wait(10)
        twin = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="trouble-twin", protocol=mqtt.MQTTv5)
        twin.connect("127.0.0.1", mosquitto.port)
        twin.loop_start()
        try:
            wait_until(lambda: bool(_records(caplog_mqtt, logging.ERROR)), 10, "the lost-connection message")
        finally:
            twin.disconnect()
            twin.loop_stop()
        # Once the twin is gone we connect again, and say after how much trouble.
        wait_until(source.connected.is_set, 10, "the reconnection")
    finally:
        source.stop()
    # Mosquitto 2.0 closes a taken-over session's socket without a reason code: the advice names the suspect.
    lost = _records(caplog_mqtt, logging.ERROR)[0]
    assert f"lost the connection to mqtt://127.0.0.1:{mosquitto.port}" in lost
    assert "another client uses mqtt.client_id 'trouble-twin'" in lost


def test_the_broker_never_sends_a_packet_beyond_the_maximum_packet_size(mosquitto: MosquittoServer) -> None:
    """Maximum Packet Size goes with CONNECT: a 300 KB payload never reaches plantwatch, so it is not
    received in full before the size check (before, 250 MiB payloads took the service to 1.2 GB)."""
    counters = Counters()
    opts = MqttOptions(
        host="127.0.0.1", port=mosquitto.port, client_id="max-packet", subscription="big/+", max_packet_bytes=100_000
    )
    inbound: queue.Queue[Inbound] = queue.Queue(maxsize=100)
    source = MqttSource(opts, Decoder(TopicTemplate("big/{asset}"), max_payload_bytes=1000), inbound, counters)
    source.start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="max-packet-pub")
    try:
        wait_until(source.connected.is_set, 10, "the source connected")
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        publisher.publish("big/pump", b"1" * 300_000, qos=1).wait_for_publish(5)
        publisher.publish("big/pump", b"9" * 2_000, qos=1).wait_for_publish(5)  # within the packet size
        publisher.publish("big/pump", b'{"values": {"a": 1.0}}', qos=1).wait_for_publish(5)
        wait_until(lambda: inbound.qsize() >= 1, 10, "the small frame")
        (item,) = [inbound.get_nowait()]
        assert item.readings[0].values == {"a": 1.0}
        # The 2 KB payload arrived and was refused by the decoder; the 300 KB one never arrived at all.
        assert counters.get("plantwatch_messages_rejected_total", reason="oversized") == 1
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        source.stop()


def test_the_service_asks_for_the_payload_limit_plus_room_for_the_longest_topic() -> None:
    settings = load_settings(None, storage__kind="sqlite", mqtt__max_payload_bytes=4096)
    options = mqtt_options(settings, TopicTemplate(settings.mqtt.topic_template))
    assert options.max_packet_bytes == 4096 + PACKET_OVERHEAD_BYTES and PACKET_OVERHEAD_BYTES > 65_535
