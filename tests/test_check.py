"""`plantwatch check`: settings, then broker, database and alert store, against real servers and closed ports."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from psycopg import sql
from servers import PG_URL, MosquittoServer, VictoriaServer, free_port

from api.keys import KeyFile
from ingest.mqtt_source import MqttOptions
from plantwatch.cli import main
from plantwatch.service.reachability import CheckFailed, check_alert_store, check_broker

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, *, broker: str, influx: str, alerts: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(
        f"mqtt:\n  url: {broker}\n  client_id: plantwatch-line1\n"
        f"storage:\n  kind: influxdb\ninflux:\n  url: {influx}\n"
        f"alerts:\n  store_url: {alerts}\n",
        encoding="utf-8",
    )
    return path


def _embedded_config(tmp_path: Path, mqtt_keys: str, alerts_db: Path) -> Path:
    """SQLite readings (tmp_path/readings.db) and alerts (``alerts_db``), the broker as ``mqtt_keys`` says."""
    path = tmp_path / "small.yaml"
    path.write_text(
        f"mqtt: {{{mqtt_keys}}}\n"
        f"storage: {{kind: sqlite, sqlite_path: '{tmp_path / 'readings.db'}'}}\n"
        f"alerts: {{store_url: 'sqlite:///{alerts_db}'}}\n",
        encoding="utf-8",
    )
    return path


def _check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    """The exit code and each check's line (``ok ...`` or ``FAIL ...``) by check name."""
    code = main(["check", "--config", str(config)])
    lines = {}
    for line in capsys.readouterr().out.splitlines():
        verdict, name, message = line.split(maxsplit=2)
        lines[name] = f"{verdict} {message}"
    return code, lines


@pytest.fixture
def pg_alerts_url(pg_schema: str) -> str:  # noqa: F811 - the imported fixture, by name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    return f"{PG_URL}?options=-csearch_path%3D{pg_schema}"


def test_all_pass_against_real_servers(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    victoria: VictoriaServer,
    pg_alerts_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "t")
    config = _config(tmp_path, broker=mosquitto.url, influx=victoria.url, alerts=pg_alerts_url)
    code, lines = _check(config, capsys)
    assert code == 0
    assert lines["settings"].startswith(f"ok {config}: valid")
    assert lines["broker"] == f"ok {mosquitto.url}: MQTT 5 CONNECT accepted"
    assert lines["storage"].startswith(f"ok GET {victoria.url}/health: HTTP 200")
    schema = pg_alerts_url.rpartition("%3D")[2]
    assert lines["alerts"] == (
        f"ok alerts.store_url {pg_alerts_url}: connected; no alerts table yet: will be created at start "
        f"(schema {schema})"
    )
    with psycopg.connect(pg_alerts_url) as conn:  # looked at, not created: the check changes nothing
        assert conn.execute("SELECT to_regclass('alerts')").fetchone() == (None,)


def test_closed_ports_fail_each_with_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "t")
    mqtt_port, http_port, pg_port = free_port(), free_port(), free_port()
    config = _config(
        tmp_path,
        broker=f"mqtt://127.0.0.1:{mqtt_port}",
        influx=f"http://127.0.0.1:{http_port}",
        alerts=f"postgresql://plantwatch:secret@127.0.0.1:{pg_port}/plant",
    )
    code, lines = _check(config, capsys)
    assert code == 2
    assert lines["settings"].startswith("ok ")
    assert lines["broker"] == f"FAIL mqtt://127.0.0.1:{mqtt_port}: cannot connect: Connection refused"
    assert lines["storage"] == f"FAIL GET http://127.0.0.1:{http_port}/health: cannot connect: Connection refused"
    assert lines["alerts"].startswith(f"FAIL alerts.store_url postgresql://plantwatch:***@127.0.0.1:{pg_port}/plant")
    assert "Connection refused" in lines["alerts"] and "secret" not in lines["alerts"]


def test_embedded_storage_and_sqlite_alerts(
    tmp_path: Path, mosquitto: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    config = _embedded_config(tmp_path, f"url: '{mosquitto.url}', protocol: '3.1.1'", tmp_path / "a-file" / "alerts.db")
    code, lines = _check(config, capsys)
    assert code == 2
    assert lines["broker"] == f"ok {mosquitto.url}: MQTT 3.1.1 CONNECT accepted"
    assert (
        lines["storage"]
        == f"ok storage.sqlite_path {tmp_path / 'readings.db'}: no such file yet: will be created at start"
    )
    assert lines["alerts"] == (
        f"FAIL alerts.store_url sqlite:///{tmp_path / 'a-file' / 'alerts.db'}: "
        f"{tmp_path / 'a-file'} is a file, not a folder"
    )


def test_an_api_for_other_machines_without_a_key_fails_the_check_as_run_would_refuse_it(
    tmp_path: Path, mosquitto: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _embedded_config(tmp_path, f"url: '{mosquitto.url}'", tmp_path / "alerts.db")
    keys = tmp_path / "keys.json"
    config.write_text(config.read_text() + f"api: {{host: 0.0.0.0, keys_file: '{keys}'}}\n")
    code, lines = _check(config, capsys)
    assert code == 2 and lines["api"].startswith("FAIL api.host: 0.0.0.0 serves other machines")
    assert "plantwatch keys create" in lines["api"]
    KeyFile(keys).create("ops", "admin")
    code, lines = _check(config, capsys)
    assert code == 0 and lines["api"] == f"ok API keys: 1 active in {keys}; every call but /healthz needs one"


def test_bad_settings_stop_before_any_server_is_tried(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("storage: {kind: sqlite}\ndetector: {enterr: 0.9}\n", encoding="utf-8")
    assert main(["check", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("FAIL  settings")
    assert "detector.enterr: unknown key" in out and "broker" not in out


def test_the_check_does_not_take_over_the_running_service_session(
    tmp_path: Path, mosquitto: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service's persistent session stays connected: the check connects under its own client id."""
    dropped = threading.Event()
    connected = threading.Event()
    service = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plantwatch-line1", protocol=mqtt.MQTTv5)
    service.on_connect = lambda *args: connected.set()
    service.on_disconnect = lambda *args: dropped.set()
    service.connect(mosquitto.host, mosquitto.port)
    service.loop_start()
    try:
        assert connected.wait(10)
        config = _embedded_config(tmp_path, f"url: '{mosquitto.url}', client_id: plantwatch-line1", tmp_path / "a.db")
        code, lines = _check(config, capsys)
        assert code == 0 and lines["broker"].startswith("ok ")
        # A takeover DISCONNECT would reach the service before the acknowledgement of this publish.
        service.publish("plantwatch/check-test", b"x", qos=1).wait_for_publish(10)
        assert not dropped.is_set()
    finally:
        service.disconnect()
        service.loop_stop()


def test_tls_to_a_plain_mqtt_port_is_named_a_tls_failure(mosquitto: MosquittoServer) -> None:
    options = MqttOptions(host=mosquitto.host, port=mosquitto.port, client_id="plantwatch", subscription="#", tls=True)
    with pytest.raises(CheckFailed, match=r"TLS handshake failed: .+ \(does the port speak TLS\?\)") as failed:
        check_broker(options)
    assert str(failed.value).startswith(f"mqtts://{mosquitto.host}:{mosquitto.port}: ")


def test_a_server_that_is_not_a_broker_is_named(victoria: VictoriaServer) -> None:
    options = MqttOptions(host=victoria.host, port=victoria.port, client_id="plantwatch", subscription="#")
    with pytest.raises(CheckFailed, match=r"no MQTT CONNACK within 1 s \(is it an MQTT broker\?\)") as failed:
        check_broker(options, timeout_s=1)
    assert str(failed.value).startswith(f"mqtt://{victoria.host}:{victoria.port}: connected, but")


def test_an_ipv6_broker_is_named_as_its_url_is_written() -> None:
    options = MqttOptions(host="::1", port=free_port(), client_id="plantwatch", subscription="#")
    with pytest.raises(CheckFailed) as failed:
        check_broker(options, timeout_s=1)
    assert str(failed.value).startswith(f"mqtt://[::1]:{options.port}: cannot connect: ")


def test_a_password_in_the_store_url_query_is_not_printed(pg_alerts_url: str) -> None:
    # libpq takes the password as a query parameter too; the check's lines are meant to be pasted.
    line = check_alert_store(f"{pg_alerts_url}&password=pw-in-the-query")
    assert line.startswith(f"alerts.store_url {pg_alerts_url}&password=***: connected; ")


def test_ctrl_c_before_the_network_thread_started_stays_a_keyboard_interrupt(
    mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """paho records its thread, then starts it: a Ctrl-C in between made ``loop_stop`` raise RuntimeError.

    CI saw it as a traceback and exit 1 from ``plantwatch check`` instead of one line and 130.
    """

    def interrupted(thread: threading.Thread) -> None:
        raise KeyboardInterrupt

    options = MqttOptions(host=mosquitto.host, port=mosquitto.port, client_id="plantwatch", subscription="#")
    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        check_broker(options, timeout_s=5)
