"""The Docker route cannot run here (no Docker daemon): check offline what can be checked.

The compose file's structure and healthchecks, the Dockerfile's paths, user, volume and healthcheck,
the shipped configs; the healthcheck commands themselves are run against a real Mosquitto and a real
plantwatch API (their ports swapped for the test's), and against a closed port.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
import yaml
from servers import MosquittoServer, free_port

from plantwatch.demo import wait_healthy
from plantwatch.service.wiring import build_service
from plantwatch.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    out = []
    for line in joined.replace("\\\n", " ").splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


DOCKERFILE = _dockerfile()


def _one(instruction: str) -> str:
    found = [rest for word, rest in DOCKERFILE if word == instruction]
    assert len(found) == 1, f"{instruction}: {found}"
    return found[0]


def _healthcheck_cmd() -> list[str]:
    rest = _one("HEALTHCHECK")
    return list(json.loads(rest[rest.index("CMD") + 3 :]))


def test_compose_builds_plantwatch_from_the_dockerfile_and_waits_for_healthy_servers() -> None:
    assert SERVICES["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert SERVICES["influxdb"]["image"] == "influxdb:2.7"
    plantwatch = SERVICES["plantwatch"]
    assert plantwatch["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert "command" not in plantwatch and "working_dir" not in plantwatch  # the image's own CMD, no source mount
    assert plantwatch["depends_on"] == {
        "mosquitto": {"condition": "service_healthy"},
        "influxdb": {"condition": "service_healthy"},
    }
    assert "PLANTWATCH_INFLUX__TOKEN" in plantwatch["environment"]
    assert plantwatch["volumes"] == ["plantwatch-data:/data"]
    for name in ("mosquitto", "influxdb", "plantwatch"):
        check = SERVICES[name]["healthcheck"]
        assert check["test"][0] == "CMD" and {"interval", "timeout", "retries"} <= set(check)
    assert plantwatch["healthcheck"]["test"] == ["CMD", *_healthcheck_cmd()]  # one command, two places
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
            else:
                assert source in COMPOSE["volumes"], source


def test_dockerfile_installs_the_wheel_as_a_non_root_user_with_a_data_volume() -> None:
    assert [rest for word, rest in DOCKERFILE if word == "FROM"] == ["python:3.11-slim AS build", "python:3.11-slim"]
    assert _one("USER") not in ("root", "0")
    assert json.loads(_one("VOLUME")) == ["/data"]
    runs = " ".join(rest for word, rest in DOCKERFILE if word == "RUN")
    assert "pip wheel" in runs and "/tmp/wheels/*.whl" in runs and "-e ." not in runs
    assert json.loads(_one("ENTRYPOINT")) == ["plantwatch"]
    assert json.loads(_one("CMD")) == ["run", "--config", "/etc/plantwatch/plantwatch.yaml"]
    assert "configs/docker.yaml /etc/plantwatch/plantwatch.yaml" in [r for w, r in DOCKERFILE if w == "COPY"]


def test_dockerfile_copies_paths_that_exist_and_every_installed_package() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = set()
    for word, rest in DOCKERFILE:
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _destination = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"{source} is in .dockerignore"
            copied.add(source)
    find = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    rooms = {pattern.rstrip("*") for pattern in find["find"]["include"]}
    assert rooms <= copied, f"not copied into the build stage: {rooms - copied}"


def test_the_image_config_keeps_models_on_the_volume_and_a_plant_sized_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "t")
    settings = load_settings(ROOT / "configs/docker.yaml")
    assert settings.detector.model_dir == "/data/models"
    assert settings.detector.baseline_rows == 3600  # 1 hour of 1 Hz rows, as configs/example-line.yaml
    assert settings.alerts.store_url.startswith("sqlite:////data/")
    assert settings.api.host == "0.0.0.0"
    assert f"127.0.0.1:{settings.api.port}/healthz" in " ".join(_healthcheck_cmd())
    assert settings.mqtt.url == "mqtt://mosquitto:1883" and settings.influx.url == "http://influxdb:8086"


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


def _run(argv: list[str]) -> int:
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


@pytest.mark.integration
def test_the_mosquitto_healthcheck_passes_on_a_broker_and_fails_on_a_closed_port(mosquitto: MosquittoServer) -> None:
    argv = [arg.replace("$$", "$") for arg in SERVICES["mosquitto"]["healthcheck"]["test"][1:]]  # compose unescapes $$
    assert argv[argv.index("-t") + 1] == "$SYS/broker/version"

    def on_port(port: int) -> list[str]:
        return [str(port) if arg == "1883" else arg for arg in argv]

    assert _run(on_port(mosquitto.port)) == 0
    assert _run(on_port(free_port())) != 0


@pytest.fixture
def api_port(tmp_path: Path, mosquitto: MosquittoServer) -> Iterator[int]:
    """A real plantwatch service (embedded storage) serving its API on a free port."""
    port = free_port()
    settings = load_settings(
        None,
        mqtt__url=mosquitto.url,
        mqtt__client_id="plantwatch-deploy-test",
        storage__kind="sqlite",
        storage__sqlite_path=str(tmp_path / "readings.db"),
        alerts__store_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        api__port=port,
    )
    app = build_service(settings).app
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.mark.integration
def test_the_plantwatch_healthcheck_needs_no_curl_and_reads_healthz(api_port: int) -> None:
    argv = _healthcheck_cmd()
    assert argv[0] == "python"
    local = [sys.executable, *[arg.replace(":8080/", f":{api_port}/") for arg in argv[1:]]]
    assert _run(local) == 0
    closed = [sys.executable, *[arg.replace(":8080/", f":{free_port()}/") for arg in argv[1:]]]
    assert _run(closed) != 0
