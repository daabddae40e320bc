"""The Docker route cannot run here (no Docker daemon): check offline what can be checked.

The compose file's structure and healthchecks, the Dockerfile's paths, user, volume and healthcheck,
the shipped configs; the healthcheck commands themselves are run against a real Mosquitto and a real
plantwatch API (their ports swapped for the test's), and against a closed port. deploy/setup.sh is
run into a temporary folder, and the shipped broker configuration (its listener and paths swapped)
is run with the password file it made and the shipped ACL: who may log in, read and publish.
"""

from __future__ import annotations

import fnmatch
import json
import os
import queue
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import uvicorn
import yaml
from servers import (
    MOSQUITTO_BIN,
    MosquittoServer,
    free_port,
    give_file_to_mosquitto,
    mosquitto_data_dir,
    require_binary,
    run_mosquitto_config,
    skip_or_fail,
)

from ingest.mqtt_source import paho_client
from ingest.topics import TopicTemplate
from plantwatch.demo import wait_healthy
from plantwatch.service.reachability import check_broker
from plantwatch.service.wiring import build_service, mqtt_options
from plantwatch.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
SETUP = ROOT / "deploy/setup.sh"
MQTT_USERS = ("plantwatch", "sensors", "scada", "healthcheck")
SECRETS = frozenset(
    {"INFLUX_TOKEN", "INFLUX_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    | {f"MQTT_{user.upper()}_PASSWORD" for user in MQTT_USERS}
)
OUTSIDE_COMPOSE = frozenset({"MQTT_SENSORS_PASSWORD", "MQTT_SCADA_PASSWORD"})
# What deploy/setup.sh writes, relative to the folder of docker-compose.yml; git and docker ignore them.
GENERATED = (".env", "deploy/mosquitto.passwd")


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
    assert {"PLANTWATCH_INFLUX__TOKEN", "PLANTWATCH_MQTT__PASSWORD"} <= set(plantwatch["environment"])
    assert plantwatch["volumes"] == ["plantwatch-data:/data"]
    for name in ("mosquitto", "influxdb", "plantwatch"):
        check = SERVICES[name]["healthcheck"]
        assert check["test"][0] == "CMD" and {"interval", "timeout", "retries"} <= set(check)
    assert plantwatch["healthcheck"]["test"] == ["CMD", *_healthcheck_cmd()]  # one command, two places
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists() or source[2:] in GENERATED, source
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


# ------------------------------------------------------------------ secrets: deploy/setup.sh and compose

_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{([^}]*)\}|\$([A-Za-z_]\w*)")


def _interpolated(value: str, env: dict[str, str]) -> str:
    """``value`` as docker compose passes it on: ``$$`` is ``$``, ``${NAME:?message}`` the variable's value."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env[(match.group(1) or match.group(2)).split(":")[0]]

    return _COMPOSE_VARIABLE.sub(one, value)


def _setup(directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """deploy/setup.sh run by /bin/sh (POSIX: dash on Debian), with none of the secrets in its environment."""
    directory.mkdir(exist_ok=True)
    clean = {name: value for name, value in os.environ.items() if name not in SECRETS}
    return subprocess.run(
        ["/bin/sh", str(SETUP), *args, str(directory)],
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dotenv(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    pairs = [line.split("=", 1) for line in lines]
    assert all(len(pair) == 2 for pair in pairs), lines
    return dict(pairs)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass(frozen=True)
class Deployment:
    """What deploy/setup.sh made in ``folder``."""

    folder: Path

    @property
    def env(self) -> dict[str, str]:
        return _dotenv(self.folder / ".env")

    @property
    def passwd(self) -> Path:
        return self.folder / "deploy/mosquitto.passwd"


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    require_binary("/usr/bin/mosquitto_passwd")
    done = _setup(tmp_path / "site")
    assert done.returncode == 0, done.stderr
    return Deployment(tmp_path / "site")


def test_setup_writes_distinct_secrets_to_a_private_env_file_and_hashes_to_the_password_file(
    deployment: Deployment,
) -> None:
    env = deployment.env
    assert set(env) == SECRETS
    assert len(set(env.values())) == len(env), "two secrets are equal"
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in env.values())  # 256 bits, nothing to quote
    assert _mode(deployment.folder / ".env") == 0o600
    assert _mode(deployment.passwd) == 0o600
    entries = dict(line.split(":", 1) for line in deployment.passwd.read_text().splitlines())
    assert set(entries) == set(MQTT_USERS)
    assert all(entry.startswith("$7$") for entry in entries.values())  # PBKDF2-SHA512 hashes
    text = deployment.passwd.read_text()
    assert not any(value in text for value in env.values())
    assert {path.name for path in deployment.folder.iterdir()} == {".env", "deploy"}  # no temporary folder left


def test_setup_refuses_to_overwrite_the_secrets_unless_forced(deployment: Deployment) -> None:
    env_before, passwd_before = (deployment.folder / ".env").read_bytes(), deployment.passwd.read_bytes()
    again = _setup(deployment.folder)
    assert again.returncode == 1
    assert ".env exists; nothing changed" in again.stderr and "--force" in again.stderr
    assert (deployment.folder / ".env").read_bytes() == env_before
    assert deployment.passwd.read_bytes() == passwd_before
    old = deployment.env
    forced = _setup(deployment.folder, "--force")
    assert forced.returncode == 0, forced.stderr
    new = deployment.env
    assert set(new) == SECRETS and not set(new.values()) & set(old.values())
    assert deployment.passwd.read_bytes() != passwd_before
    assert _mode(deployment.folder / ".env") == 0o600


def test_setup_keeps_the_influxdb_secrets_a_deployment_was_started_with(tmp_path: Path) -> None:
    require_binary("/usr/bin/mosquitto_passwd")
    given = {"INFLUX_TOKEN": "f" * 64, "INFLUX_ADMIN_PASSWORD": "e" * 64}
    done = _setup(tmp_path, env=given)
    assert done.returncode == 0, done.stderr
    env = _dotenv(tmp_path / ".env")
    assert {name: env[name] for name in given} == given
    assert "keeping INFLUX_TOKEN from the environment" in done.stderr


def _tools_without_mosquitto_passwd(tmp_path: Path) -> Path:
    """A PATH folder with the commands setup.sh uses, except mosquitto_passwd."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "openssl", "mkdir", "mktemp", "rm", "tr", "grep", "chmod", "mv", "id"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def test_setup_hashes_with_the_mosquitto_image_when_mosquitto_passwd_is_missing(tmp_path: Path) -> None:
    """docker itself cannot run here: a stand-in records the command and runs the local mosquitto_passwd
    on the mounted folder, as the image would."""
    require_binary("/usr/bin/mosquitto_passwd")
    bin_dir = _tools_without_mosquitto_passwd(tmp_path)
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > {tmp_path}/docker.argv\n"
        'while [ $# -gt 0 ]; do case "$1" in -v) mount=${2%%:*}; shift 2 ;; *) last=$1; shift ;; esac; done\n'
        'exec /usr/bin/mosquitto_passwd -U "$mount/${last#/setup/}"\n'
    )
    docker.chmod(0o755)
    done = _setup(tmp_path / "site", env={"PATH": str(bin_dir)})
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "docker.argv").read_text().splitlines()
    assert argv[:2] == ["run", "--rm"]
    assert argv[argv.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"  # the files stay the operator's
    image = argv.index("eclipse-mosquitto:2")
    assert argv[image + 1 :] == ["mosquitto_passwd", "-U", "/setup/passwd"]
    assert argv[argv.index("-v") + 1].endswith(":/setup")
    users = [line.split(":")[0] for line in (tmp_path / "site/deploy/mosquitto.passwd").read_text().splitlines()]
    assert users == list(MQTT_USERS)


def test_setup_without_mosquitto_passwd_or_docker_writes_nothing(tmp_path: Path) -> None:
    done = _setup(tmp_path / "site", env={"PATH": str(_tools_without_mosquitto_passwd(tmp_path))})
    assert done.returncode == 1 and "needs mosquitto_passwd" in done.stderr
    assert not (tmp_path / "site/.env").exists() and not (tmp_path / "site/deploy/mosquitto.passwd").exists()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_compose_has_no_default_secrets_and_takes_each_from_setup() -> None:
    used = [
        match.group(1) or match.group(2)
        for value in _strings(COMPOSE)
        for match in _COMPOSE_VARIABLE.finditer(value)
        if match.group(0) != "$$"
    ]
    for reference in used:  # ${NAME:?message}: compose stops, saying so, when .env lacks it
        name, _, message = reference.partition(":?")
        assert message and "deploy/setup.sh" in message, reference
    # all but the passwords of the broker's clients outside compose (sensors, SCADA)
    assert {reference.partition(":?")[0] for reference in used} == SECRETS - OUTSIDE_COMPOSE
    assert "change-me" not in COMPOSE_TEXT


def test_the_secrets_are_ignored_by_git_and_by_the_docker_build() -> None:
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    for path in GENERATED:
        assert f"/{path}" in gitignore and path in dockerignore, path
    for path in ("configs/docker.yaml", "deploy/mosquitto.conf", "deploy/mosquitto.acl", "docker-compose.yml"):
        text = (ROOT / path).read_text()
        assert not re.search(r"[0-9a-f]{32}", text), path


def _mosquitto_conf() -> dict[str, list[str]]:
    return {
        line.split()[0]: line.split()[1:]
        for line in (ROOT / "deploy/mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def _mosquitto_start_script() -> str:
    command = SERVICES["mosquitto"]["command"]
    assert command[:2] == ["/bin/sh", "-c"] and len(command) == 3
    return str(command[2])


def test_compose_gives_the_broker_its_password_file_and_acl_where_its_config_names_them() -> None:
    conf = _mosquitto_conf()
    assert conf["allow_anonymous"] == ["false"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in SERVICES["mosquitto"]["volumes"]}
    script = _mosquitto_start_script()
    copies = dict(re.findall(r"cp (\S+) (\S+)", script))
    assert {mounts[source] for source in copies} == {"./deploy/mosquitto.passwd", "./deploy/mosquitto.acl"}
    assert sorted(copies.values()) == sorted([*conf["password_file"], *conf["acl_file"]])
    assert script.endswith("exec /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf")  # the image's CMD
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./deploy/mosquitto.conf"


# ----------------------------------------------------------------------- the secured broker, for real


@dataclass(frozen=True)
class SecuredBroker:
    server: MosquittoServer
    env: dict[str, str]  # .env of the deployment

    def client(self, user: str | None, password: str | None = None) -> tuple[mqtt.Client, mqtt.ReasonCode]:
        """A connected MQTT 5 client (or a refused one) and the CONNACK's reason code."""
        answers: queue.Queue[Any] = queue.Queue()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            client.username_pw_set(user, self.env[f"MQTT_{user.upper()}_PASSWORD"] if password is None else password)
        client.on_connect = lambda _c, _u, _f, reason, _p: answers.put(reason)
        client.connect(self.server.host, self.server.port)
        client.loop_start()
        return client, answers.get(timeout=10)


def _broker_config(shipped: str, port: int, data: Path, config_dir: Path) -> str:
    """The shipped configuration with the test's listener and folders: the listener and the persistence
    folder lines are rewritten, the container's config folder becomes ``config_dir``; the rest is verbatim."""
    lines = []
    for line in shipped.splitlines():
        key = line.split()[0] if line.strip() else ""
        if key == "listener":
            line = f"listener {port} 127.0.0.1"
        elif key == "persistence_location":
            line = f"persistence_location {data}/"
        elif key in ("password_file", "acl_file"):
            line = line.replace("/mosquitto/config/", f"{config_dir}/")
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture
def secured_broker(tmp_path: Path, deployment: Deployment) -> Iterator[SecuredBroker]:
    """deploy/mosquitto.conf with the deployment's password file and deploy/mosquitto.acl, copied as
    docker-compose.yml copies them (mode 600, the broker's own)."""
    port = free_port()
    data = mosquitto_data_dir(tmp_path)
    config_dir = data.parent
    give_file_to_mosquitto(deployment.passwd, config_dir / "passwd")
    give_file_to_mosquitto(ROOT / "deploy/mosquitto.acl", config_dir / "acl")
    conf = config_dir / "mosquitto.conf"
    conf.write_text(_broker_config((ROOT / "deploy/mosquitto.conf").read_text(), port, data, config_dir))
    with run_mosquitto_config(conf, port) as server:
        yield SecuredBroker(server, deployment.env)


class _Inbox:
    """The messages of a client subscribed to ``topics`` (one inbox a client), and its SUBACK's reason codes."""

    def __init__(self, client: mqtt.Client, *topics: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        granted: queue.Queue[list[mqtt.ReasonCode]] = queue.Queue()
        client.on_message = lambda _c, _u, message: self.messages.put((message.topic, bytes(message.payload)))
        client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.put(codes)
        client.subscribe([(topic, 1) for topic in topics])
        self.granted = granted.get(timeout=10)

    def next(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=10)


def _publish(client: mqtt.Client, topic: str, payload: bytes) -> mqtt.ReasonCode:
    """Publish at QoS 1 and return the PUBACK's reason code (MQTT 5 says "not authorized" there)."""
    acks: queue.Queue[mqtt.ReasonCode] = queue.Queue()
    client.on_publish = lambda _c, _u, _mid, reason, _p: acks.put(reason)
    client.publish(topic, payload, qos=1)
    return acks.get(timeout=10)


@pytest.mark.integration
def test_the_broker_refuses_anonymous_clients_and_wrong_passwords(secured_broker: SecuredBroker) -> None:
    for user, password in (
        (None, None),
        ("plantwatch", "wrong"),
        ("sensors", secured_broker.env["MQTT_SCADA_PASSWORD"]),
    ):
        client, reason = secured_broker.client(user, password)
        client.loop_stop()
        client.disconnect()
        assert reason.is_failure and reason.getName() in ("Not authorized", "Bad user name or password"), user


@pytest.mark.integration
def test_plantwatch_logs_in_from_the_environment_and_reads_what_sensors_publish(
    secured_broker: SecuredBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configs/docker.yaml with the variables docker-compose.yml sets from .env, on the test's broker."""
    plantwatch_env = SERVICES["plantwatch"]["environment"]
    for name, value in plantwatch_env.items():
        monkeypatch.setenv(name, _interpolated(value, secured_broker.env))
    settings = load_settings(ROOT / "configs/docker.yaml", mqtt__url=secured_broker.server.url)
    options = mqtt_options(settings, TopicTemplate(settings.mqtt.topic_template))
    assert options.username == "plantwatch" and options.password == secured_broker.env["MQTT_PLANTWATCH_PASSWORD"]
    assert check_broker(options).endswith("CONNECT accepted as plantwatch")  # what `plantwatch check` says

    plantwatch = paho_client(options, "plantwatch-deploy-test", clean_start=True)
    plantwatch.connect(options.host, options.port)
    plantwatch.loop_start()
    sensors, _ = secured_broker.client("sensors")
    scada, _ = secured_broker.client("scada")
    try:
        readings = _Inbox(plantwatch, options.subscription)
        assert not any(code.is_failure for code in readings.granted)
        topic = TopicTemplate(settings.mqtt.topic_template).render(asset="pump-1", line="line1")
        assert _publish(sensors, topic, b"flow=1.5").value == 0
        assert readings.next() == (topic, b"flow=1.5")

        # plantwatch writes its alert states and dead letters; SCADA reads them
        outputs = _Inbox(scada, "plantwatch-alerts/#", "plantwatch/dead-letter")
        assert not any(code.is_failure for code in outputs.granted)
        assert settings.alerts.mqtt_topic and settings.mqtt.dead_letter_topic
        for out in (settings.alerts.mqtt_topic.replace("{asset}", "pump-1"), settings.mqtt.dead_letter_topic):
            assert _publish(plantwatch, out, b"{}").value == 0
        assert [outputs.next()[0], outputs.next()[0]] == ["plantwatch-alerts/pump-1", "plantwatch/dead-letter"]
    finally:
        for client in (plantwatch, sensors, scada):
            client.disconnect()
            client.loop_stop()


def _refused_publication(broker: SecuredBroker, user: str, topic: str) -> bool:
    """Whether the broker answers ``user``'s QoS 1 publication on ``topic`` "not authorized". A client of
    its own each time: after such an answer the connection was seen to close (Mosquitto 2.0.11, paho 2.2)."""
    client, _ = broker.client(user)
    try:
        return _publish(client, topic, b"forged").getName() == "Not authorized"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.integration
def test_a_sensor_publisher_can_write_only_under_the_sensor_tree(secured_broker: SecuredBroker) -> None:
    scada, _ = secured_broker.client("scada")
    sensors, _ = secured_broker.client("sensors")
    plantwatch, _ = secured_broker.client("plantwatch")
    try:
        outputs = _Inbox(scada, "plantwatch-alerts/#", "plantwatch/dead-letter")
        for topic in ("plantwatch-alerts/pump-1", "plantwatch/dead-letter", "other/tree", "$SYS/broker/version"):
            assert _refused_publication(secured_broker, "sensors", topic), topic
        # a publication the ACL lets through arrives, and none of the forged ones arrived before it
        assert _publish(plantwatch, "plantwatch-alerts/pump-1", b"real").value == 0
        assert outputs.next() == ("plantwatch-alerts/pump-1", b"real")
        assert outputs.messages.empty()
        # nor may sensors read (Mosquitto 2.0.11 grants the subscription, and delivers nothing to it) ...
        readers, control = _Inbox(sensors, "plant/#"), _Inbox(plantwatch, "plant/#")
        assert _publish(sensors, "plant/line1/pump-1", b"flow=2").value == 0
        assert control.next() == ("plant/line1/pump-1", b"flow=2")
        assert _publish(sensors, "plant/line1/pump-2", b"flow=3").value == 0  # a round trip after the delivery
        assert control.next()[0] == "plant/line1/pump-2" and readers.messages.empty()
        # ... nor plantwatch or SCADA write readings
        assert _refused_publication(secured_broker, "plantwatch", "plant/line1/pump-1")
        assert _refused_publication(secured_broker, "scada", "plant/line1/pump-1")
    finally:
        for client in (scada, sensors, plantwatch):
            client.disconnect()
            client.loop_stop()


def _mosquitto_healthcheck(env: dict[str, str], port: int) -> list[str]:
    """The compose healthcheck as docker runs it (variables from .env), on ``port``."""
    argv = [_interpolated(arg, env) for arg in SERVICES["mosquitto"]["healthcheck"]["test"][1:]]
    assert argv[argv.index("-t") + 1] == "$SYS/broker/version"
    return [str(port) if arg == "1883" else arg for arg in argv]


@pytest.mark.integration
def test_the_mosquitto_healthcheck_logs_in_and_fails_without_credentials_or_a_broker(
    secured_broker: SecuredBroker,
) -> None:
    argv = _mosquitto_healthcheck(secured_broker.env, secured_broker.server.port)
    assert argv[argv.index("-u") + 1] == "healthcheck"
    assert _run(argv) == 0
    password = argv.index("-P")
    anonymous = argv[: password - 2] + argv[password + 1 :]
    assert "-u" not in anonymous and _run(anonymous) != 0
    assert _run(_mosquitto_healthcheck(secured_broker.env, free_port())) != 0


@pytest.mark.integration
def test_the_compose_start_script_gives_the_broker_its_files_and_starts_it(
    tmp_path: Path, deployment: Deployment
) -> None:
    """The mosquitto service's command with the container's folders swapped for the test's."""
    if os.geteuid() != 0:  # under CI=true a failure: CI must not go green without it
        skip_or_fail("the broker's start script chowns files for the user mosquitto: run the tests as root")
    require_binary(MOSQUITTO_BIN)
    port = free_port()
    data = mosquitto_data_dir(tmp_path)
    config_dir, mounted = data.parent / "config", data.parent / "run"
    config_dir.mkdir()
    mounted.mkdir()
    shutil.copy(deployment.passwd, mounted / "mosquitto.passwd")  # mode 600, not the broker's
    shutil.copy(ROOT / "deploy/mosquitto.acl", mounted / "mosquitto.acl")
    conf = config_dir / "mosquitto.conf"
    conf.write_text(_broker_config((ROOT / "deploy/mosquitto.conf").read_text(), port, data, config_dir))
    script = _mosquitto_start_script().replace("/run/plantwatch/", f"{mounted}/")
    script = script.replace("/mosquitto/config/", f"{config_dir}/").replace("/usr/sbin/mosquitto", MOSQUITTO_BIN)
    with run_mosquitto_config(conf, port, argv=["/bin/sh", "-c", script]):
        for name in ("passwd", "acl"):
            copied = (config_dir / name).stat()
            assert stat.S_IMODE(copied.st_mode) == 0o600 and copied.st_uid == data.stat().st_uid, name
        assert _run(_mosquitto_healthcheck(deployment.env, port)) == 0
