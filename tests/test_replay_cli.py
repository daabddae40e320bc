"""`plantwatch replay`'s broker, topic and pace: one line naming the flag or key, against a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servers import MosquittoServer, free_port
from test_mqtt_connect_errors import locked_broker  # noqa: F401 - a fixture, used by name
from test_replay import _Collector

from plantwatch.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    path.write_text("time,flow\n" + "".join(f"{1_577_836_800 + i},{i}\n" for i in range(20)))
    return path


def _config(tmp_path: Path, mqtt: str) -> Path:
    """A config as a plant writes it: InfluxDB storage, whose token replay must not ask for."""
    path = tmp_path / "plant.yaml"
    path.write_text(f"mqtt: {{{mqtt}}}\nstorage: {{kind: influxdb}}\n", encoding="utf-8")
    return path


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["replay", *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _published(port: int, topic: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[float]:
    collector = _Collector(port, topic)
    try:
        assert main(["replay", *argv]) == 0, capsys.readouterr().err
        collector.wait_for(20)
    finally:
        collector.close()
    return [json.loads(payload)["values"]["flow"] for _, payload in collector.messages]


def test_a_broker_that_refuses_or_does_not_resolve_names_the_flag(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"mqtt://127.0.0.1:{free_port()}"
    line = _error([str(log), "--broker", closed, "--asset", "p"], capsys)
    assert line == f"plantwatch: --broker {closed}: cannot connect: Connection refused"
    line = _error([str(log), "--broker", "mqtt://no-such-host.invalid:1883", "--asset", "p"], capsys)
    assert line.startswith(
        "plantwatch: --broker mqtt://no-such-host.invalid:1883: cannot resolve no-such-host.invalid: "
    )
    line = _error([str(log), "--broker", "mqtt://127.0.0.1:port", "--asset", "p"], capsys)
    assert line == "plantwatch: --broker mqtt://127.0.0.1:port: must look like mqtt://HOST:PORT or mqtts://HOST:PORT"


def test_tls_to_a_plain_port_is_named_a_tls_failure(
    log: Path, mosquitto: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"mqtts://127.0.0.1:{mosquitto.port}"
    line = _error([str(log), "--broker", url, "--asset", "p"], capsys)
    assert line.startswith(f"plantwatch: --broker {url}: TLS handshake failed: ")
    assert line.endswith("(does the port speak TLS?)")


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--speed", "0"], "argument --speed: must be a number above 0, got '0'"),
        (["--rate", "-5"], "argument --rate: must be a number above 0, got '-5'"),
        (["--rate", "nan"], "argument --rate: must be a number above 0, got 'nan'"),
        (["--topic", "a/+/b"], "argument --topic: a topic to publish to cannot hold the MQTT wildcards + or #"),
        (["--tag", "line"], "argument --tag: expected NAME=VALUE, e.g. line=l1, got 'line'"),
    ],
)
def test_a_bad_flag_value_names_the_flag(
    log: Path, flags: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["replay", str(log), "--broker", "mqtt://127.0.0.1:1", "--asset", "p", *flags])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"plantwatch replay: error: {error}")


def test_the_configs_broker_and_template_serve_without_an_influxdb_token(
    tmp_path: Path,
    log: Path,
    mosquitto: MosquittoServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PLANTWATCH_INFLUX__TOKEN", raising=False)
    config = _config(tmp_path, f"url: '{mosquitto.url}', topic_template: 'plant/{{line}}/{{asset}}'")
    argv = [str(log), "--config", str(config), "--asset", "press-1", "--tag", "line=l1"]
    assert _published(mosquitto.port, "plant/l1/press-1", argv, capsys) == [float(i) for i in range(20)]
    assert "to plant/l1/press-1" in capsys.readouterr().out


def test_a_template_that_cannot_be_filled_says_what_to_give(
    tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "url: 'mqtt://127.0.0.1:1', topic_template: 'plant/{line}/{area}/{asset}'")
    line = _error([str(log), "--config", str(config), "--asset", "p"], capsys)
    assert line == (
        "plantwatch: the topic template plant/{line}/{area}/{asset} needs --tag line=VALUE --tag area=VALUE, "
        "or give --topic"
    )
    line = _error([str(log), "--config", str(config), "--asset", "p", "--tag", "line=l1", "--tag", "zone=z"], capsys)
    assert line == "plantwatch: --tag zone: the topic template plant/{line}/{area}/{asset} has no {zone} segment"
    line = _error([str(log), "--config", str(config), "--asset", "p", "--topic", "x/p", "--tag", "line=l1"], capsys)
    assert line == "plantwatch: --tag fills the topic template's segments; with --topic there is no template to fill"


def test_a_template_with_a_sensor_segment_says_to_give_a_topic(
    tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "url: 'mqtt://127.0.0.1:1', topic_template: 'plant/{line}/{asset}/{sensor}'")
    line = _error([str(log), "--config", str(config), "--asset", "press1"], capsys)
    assert line.startswith(
        "plantwatch: the topic template plant/{line}/{asset}/{sensor} has a {sensor} segment, but replay publishes "
        "one frame of all sensors per row: give --topic, e.g. --topic plant/LINE/press1/frame "
    )
    assert line.endswith("or use a config whose template has no {sensor}")


def test_the_service_takes_the_frames_published_as_that_advice_says(
    tmp_path: Path, log: Path, mosquitto: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The advice holds: a frame on a {sensor} template's topic decodes as the asset's frame."""
    from ingest.decode import Decoder

    topic = "plant/l1/press1/frame"
    collector = _Collector(mosquitto.port, topic)
    try:
        assert main(["replay", str(log), "--broker", mosquitto.url, "--asset", "press1", "--topic", topic]) == 0
        collector.wait_for(20)
    finally:
        collector.close()
    decoder = Decoder("plant/{line}/{asset}/{sensor}")
    readings = [decoder.decode(topic, payload).readings[0] for _, payload in collector.messages]
    assert [(r.asset, r.values) for r in readings] == [("press1", {"flow": float(i)}) for i in range(20)]


def test_without_broker_or_config_it_says_which_to_give(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error([str(log), "--asset", "p"], capsys)
    assert (
        line == "plantwatch: replay needs --broker mqtt://HOST:PORT, or --config FILE whose mqtt.url names the broker"
    )


def test_the_configs_credentials_log_in_and_a_refusal_is_one_line(
    tmp_path: Path,
    log: Path,
    locked_broker: MosquittoServer,  # noqa: F811 - the imported fixture, by name
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path, f"url: '{locked_broker.url}', username: plant")
    argv = [str(log), "--config", str(config), "--asset", "p"]
    monkeypatch.setenv("PLANTWATCH_MQTT__PASSWORD", "secret")
    assert main(["replay", *argv]) == 0  # every frame acknowledged by the broker, which admits only `plant`
    assert capsys.readouterr().out.startswith("published 20 frames of 1 sensor to plantwatch/p")
    monkeypatch.setenv("PLANTWATCH_MQTT__PASSWORD", "wrong")
    line = _error(argv, capsys)
    assert line.startswith(f"plantwatch: {config}: mqtt.url {locked_broker.url}: the broker refused the connection: ")
