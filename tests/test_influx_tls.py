"""Writes to an https:// InfluxDB endpoint whose certificate the CA in influx.ca_file signed: real
VictoriaMetrics on TLS, certificates made with openssl (tests/certs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from certs import certificates
from servers import run_victoria

from ingest.messages import Reading
from ingest.sink import InfluxSink
from ingest.tls import TlsFiles
from plantwatch.settings import ConfigError, load_settings
from telemetry.counters import Counters

pytestmark = pytest.mark.integration


def test_readings_reach_an_https_endpoint_checked_against_the_configured_ca(tmp_path: Path) -> None:
    certs = certificates(tmp_path / "certs")
    tls = (certs / "server.crt", certs / "server.key", certs / "ca.crt")
    with run_victoria(tmp_path, tls=tls) as vm:
        assert vm.url.startswith("https://")
        counters = Counters()
        sink = InfluxSink(vm.url, "org", "b", "t", counters=counters, tls_files=TlsFiles(ca_file=str(certs / "ca.crt")))
        try:
            sink.write([Reading("tls-pump", 1_700_000_000 * 10**9 + i, {"flow": float(i)}) for i in range(5)])
        finally:
            sink.close()
        assert counters.get("plantwatch_readings_written_total") == 5
        assert vm.count_samples('{__name__="readings_flow",asset="tls-pump"}') == 5


def test_tls_files_need_an_https_url_and_must_exist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here")
    with pytest.raises(ConfigError, match=r"influx.ca_file: TLS files need an https:// url"):
        load_settings(None, influx__token="t", influx__ca_file=str(ca))
    with pytest.raises(ConfigError, match=r"no such file"):
        load_settings(None, influx__token="t", influx__url="https://db:8086", influx__ca_file=str(tmp_path / "no"))
    with pytest.raises(ConfigError, match=r"key_file: is the key of influx.cert_file"):
        load_settings(None, influx__token="t", influx__url="https://db:8086", influx__key_file=str(ca))
    settings = load_settings(None, influx__token="t", influx__url="https://db:8086", influx__ca_file=str(ca))
    assert settings.influx.ca_file == str(ca)
