"""The docker-compose route cannot run here (no Docker daemon): check what can be checked offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from plantwatch.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_wires_the_three_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["influxdb"]["image"] == "influxdb:2.7"
    assert "plantwatch run --config configs/docker.yaml" in services["plantwatch"]["command"]
    assert "PLANTWATCH_INFLUX__TOKEN" in services["plantwatch"]["environment"]
    for volume in services["mosquitto"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_shipped_mosquitto_config_never_drops_queued_readings() -> None:
    lines = {
        line.split()[0]: line.split()[1:]
        for line in (ROOT / "deploy/mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert lines["max_queued_messages"] == ["0"]
    assert lines["persistence"] == ["true"]


@pytest.mark.parametrize("path", ["plantwatch/default.yaml", "configs/docker.yaml", "configs/example-line.yaml"])
def test_shipped_configs_are_valid(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "t")
    settings = load_settings(ROOT / path)
    assert settings.mqtt.qos == 1 and settings.mqtt.client_id
