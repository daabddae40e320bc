"""MQTT over TLS with the files mqtt.ca_file, cert_file and key_file name, against a real Mosquitto
whose TLS listener requires a client certificate (certificates made here with the openssl command)."""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
from pathlib import Path

import pytest
from servers import free_port, run_mosquitto, skip_or_fail
from waiting import wait_until

from ingest.decode import Decoder
from ingest.messages import Inbound
from ingest.mqtt_source import MqttOptions, MqttSource
from ingest.topics import TopicTemplate
from telemetry.counters import Counters

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(folder: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is missing (Debian package openssl)")
    folder.mkdir()
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca", cwd=folder
    )
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=plantwatch")):
        _openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder)
        extra = ["-extfile", "server.ext"] if name == "server" else []
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", *extra, cwd=folder,
        )  # fmt: skip
    for path in folder.iterdir():
        path.chmod(0o644)  # mosquitto reads them as its own user
    return folder


def _source(
    port: int, counters: Counters, ca_file: str, cert_file: str | None = None, key_file: str | None = None
) -> MqttSource:
    opts = MqttOptions(
        host="127.0.0.1",
        port=port,
        client_id="tls-test",
        subscription="tls/+",
        tls=True,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        reconnect_max_s=2,
    )
    inbound: queue.Queue[Inbound] = queue.Queue(maxsize=100)
    source = MqttSource(opts, Decoder(TopicTemplate("tls/{asset}")), inbound, counters)
    source.start()
    return source


def test_tls_with_the_configured_ca_and_client_certificate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certs = _certificates(tmp_path / "certs")
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
