"""MQTT over TLS with the files mqtt.ca_file, cert_file and key_file name, against a real Mosquitto
whose TLS listener requires a client certificate (certificates made here with the openssl command)."""

from __future__ import annotations

import logging
import queue
from pathlib import Path

import pytest
from certs import certificates
from servers import free_port, run_mosquitto
from waiting import wait_until

from ingest.decode import Decoder
from ingest.messages import Inbound
from ingest.mqtt_source import MqttOptions, MqttSource
from ingest.tls import TlsFiles
from ingest.topics import TopicTemplate
from telemetry.counters import Counters

pytestmark = pytest.mark.integration


def _source(
    port: int, counters: Counters, ca_file: str, cert_file: str | None = None, key_file: str | None = None
) -> MqttSource:
    opts = MqttOptions(
        host="127.0.0.1",
        port=port,
        client_id="tls-test",
        subscription="tls/+",
        tls=True,
        tls_files=TlsFiles(ca_file, cert_file, key_file),
        reconnect_max_s=2,
    )
    inbound: queue.Queue[Inbound] = queue.Queue(maxsize=100)
    source = MqttSource(opts, Decoder(TopicTemplate("tls/{asset}")), inbound, counters)
    source.start()
    return source


def test_tls_with_the_configured_ca_and_client_certificate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certs = certificates(tmp_path / "certs")
    port = free_port()
    listener = (
        f"listener {port} 127.0.0.1\ncafile {certs / 'ca.crt'}\ncertfile {certs / 'server.crt'}\n"
        f"keyfile {certs / 'server.key'}\nrequire_certificate true\n"
    )
    caplog.set_level(logging.INFO, logger="ingest.mqtt_source")
    with run_mosquitto(tmp_path, extra_config=listener):
        counters = Counters()
        source = _source(port, counters, str(certs / "ca.crt"), str(certs / "client.crt"), str(certs / "client.key"))
        try:
            wait_until(source.connected.is_set, 15, "a TLS connection with the client certificate")
        finally:
            source.stop()
        # Without the client certificate the broker refuses the handshake: logged, never connected.
        refused = _source(port, Counters(), str(certs / "ca.crt"))
        try:
            wait_until(
                lambda: any("mqtt.cert_file" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR),
                15,
                "the refused handshake logged",
            )
            assert not refused.connected.is_set()
        finally:
            refused.stop()
