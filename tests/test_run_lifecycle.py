"""`plantwatch run` started and stopped as a user would: a real subprocess, real Mosquitto and PostgreSQL.

Ctrl-C (SIGINT) or SIGTERM stops the pipeline, flushes alerts, saves the learned models and exits 0;
an alert store that cannot be opened is one `plantwatch:` line naming the key, and exit 2.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from servers import MosquittoServer, free_port
from waiting import blocked_reading, interrupt_when, wait_until

pytestmark = pytest.mark.integration

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "example-line.yaml"
BASELINE_ROWS = 60
ASSET = "press1"


def _plantwatch(*args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # a file, not a pipe: a chatty child must never block on a full pipe
        return subprocess.Popen(
            [sys.executable, "-m", "plantwatch.cli", *args],
            env={**os.environ, "PLANTWATCH_INFLUX__TOKEN": "unused", **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _run_to_exit(*args: str, env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    proc = _plantwatch(*args, env=env, log=tmp_path / "out.txt")
    returncode = proc.wait(timeout=120)
    return returncode, (tmp_path / "out.txt").read_text()


def _small_config(tmp_path: Path) -> Path:
    config = tmp_path / "small.yaml"
    config.write_text("mqtt:\n  url: mqtt://127.0.0.1:1\ndetector:\n  baseline_rows: 100\n")
    return config


def _stores_in(tmp_path: Path) -> dict[str, str]:
    """Readings and alerts in SQLite files under ``tmp_path``, not in the working folder."""
    return {
        "PLANTWATCH_STORAGE__KIND": "sqlite",
        "PLANTWATCH_STORAGE__SQLITE_PATH": str(tmp_path / "readings.db"),
        "PLANTWATCH_ALERTS__STORE_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
    }


@pytest.mark.parametrize(
    ("env", "line"),
    [
        # nothing listens on the port; the password must not be echoed (the example serves other
        # machines, which needs an API key: on loopback the store is checked next)
        (
            {
                "PLANTWATCH_ALERTS__STORE_URL": "postgresql://plantwatch:hunter2@127.0.0.1:{port}/plantwatch",
                "PLANTWATCH_API__HOST": "127.0.0.1",
            },
            "plantwatch: alerts.store_url: cannot open the alert store in PostgreSQL at plantwatch@127.0.0.1:{port}",
        ),
        (  # a folder, not a database file
            {"PLANTWATCH_ALERTS__STORE_URL": "sqlite:///{tmp}"},
            "plantwatch: alerts.store_url: cannot open the SQLite file {tmp}: unable to open database file",
        ),
        (
            {
                "PLANTWATCH_ALERTS__STORE_URL": "sqlite:///{tmp}/alerts.db",
                "PLANTWATCH_STORAGE__KIND": "sqlite",
                "PLANTWATCH_STORAGE__SQLITE_PATH": "{tmp}",
            },
            "plantwatch: storage.sqlite_path: cannot use the SQLite file {tmp}: is a folder; give a file name",
        ),
        (
            {
                "PLANTWATCH_ALERTS__STORE_URL": "sqlite:///{tmp}/alerts.db",
                "PLANTWATCH_STORAGE__KIND": "sqlite",
                "PLANTWATCH_STORAGE__SQLITE_PATH": "{tmp}/no-folder/readings.db",
            },
            "plantwatch: storage.sqlite_path: cannot use the SQLite file {tmp}/no-folder/readings.db: "
            "no such folder {tmp}/no-folder",
        ),
    ],
    ids=["postgresql-unreachable", "alerts-sqlite-folder", "readings-sqlite-folder", "readings-sqlite-no-folder"],
)
def test_unopenable_storage_is_one_line_and_exit_2(tmp_path: Path, env: dict[str, str], line: str) -> None:
    fill = {"port": free_port(), "tmp": tmp_path}
    env = {key: value.format(**fill) for key, value in env.items()}
    env["PLANTWATCH_API__PORT"] = str(free_port())  # not the default 8080: another service may hold it
    # The example's settings check learns a 3,600-row trial baseline (~10 s); the SQLite cases need no example.
    config = EXAMPLE_CONFIG if "postgresql" in env["PLANTWATCH_ALERTS__STORE_URL"] else _small_config(tmp_path)
    returncode, output = _run_to_exit("run", "--config", str(config), env=env, tmp_path=tmp_path)
    assert returncode == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output  # no traceback
    assert lines[0].startswith(line.format(**fill)), lines[0]
    assert "hunter2" not in output


@pytest.fixture
def service(tmp_path: Path, mosquitto: MosquittoServer) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`plantwatch run` on a real broker with a small baseline; yields (process, API base URL, model dir)."""
    api_port = free_port()
    models = tmp_path / "models"
    config = tmp_path / "plantwatch.yaml"
    config.write_text(
        f"""
mqtt:
  url: {mosquitto.url}
  client_id: lifecycle-{uuid.uuid4().hex[:8]}
  topic_template: lifecycle/{{asset}}
storage:
  kind: sqlite
  sqlite_path: {tmp_path / "readings.db"}
  flush_interval_s: 0.1
detector:
  baseline_rows: {BASELINE_ROWS}
  model_dir: {models}
alerts:
  store_url: sqlite:///{tmp_path / "alerts.db"}
api:
  port: {api_port}
"""
    )
    proc = _plantwatch("run", "--config", str(config), log=tmp_path / "out.txt")
    try:
        yield proc, f"http://127.0.0.1:{api_port}", models
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)


def _healthz(base: str) -> dict[str, object] | None:
    try:
        resp = httpx.get(f"{base}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _learned(base: str) -> bool:
    health = _healthz(base) or {}
    baselines = health.get("baselines") or {}
    return bool(isinstance(baselines, dict) and baselines.get(ASSET, {}).get("learned"))


def _publish_rows(port: int, rows: int) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lifecycle-pub-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = int(time.time()) - rows
    try:
        for i in range(rows):
            values = {"force": 10.0 + (i * 7919 % 13) / 10, "temp": 60.0 + (i * 104729 % 11) / 10}
            payload = json.dumps({"ts": start + i, "values": values})
            client.publish(f"lifecycle/{ASSET}", payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_stops_cleanly_saves_models_and_exits_0(
    service: tuple[subprocess.Popen[bytes], str, Path], mosquitto: MosquittoServer, tmp_path: Path, sig: int
) -> None:
    proc, base, models = service
    wait_until(lambda: _healthz(base) is not None or proc.poll() is not None, 90, "/healthz 200")
    assert proc.poll() is None, (tmp_path / "out.txt").read_text()
    _publish_rows(mosquitto.port, BASELINE_ROWS + 20)
    wait_until(lambda: _learned(base), 60, f"the baseline of {ASSET}")
    wait_until(lambda: any(models.glob(f"checkpoints/*/{ASSET}-*.state")), 30, "the checkpoint made when learned")
    (learned,) = (path.parent.name for path in models.glob(f"checkpoints/*/{ASSET}-*.state"))

    proc.send_signal(sig)
    returncode = proc.wait(timeout=60)
    output = (tmp_path / "out.txt").read_text()
    assert returncode == 0, output
    # uvicorn's lines in the service's format, the access log at INFO among them; none in uvicorn's own.
    assert f"INFO    plantwatch.service.wiring: API listening on {base}" in output
    assert re.search(r'INFO    uvicorn.access: 127.0.0.1:\d+ - "GET /healthz HTTP/1.1" 200', output), output
    assert not re.search(r"^(INFO|ERROR): ", output, re.MULTILINE), output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert f"stopped on {signal.Signals(sig).name}: pipeline stopped, alerts flushed" in output
    # A last checkpoint at the stop, the only one left, holding the model.
    (last,) = (path.name for path in (models / "checkpoints").iterdir())
    assert int(last) > int(learned), output
    assert len(list(models.glob(f"checkpoints/{last}/{ASSET}-*.state"))) == 1


def test_an_api_port_in_use_is_one_line_naming_the_key_before_anything_connects(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {"PLANTWATCH_API__PORT": str(port), "PLANTWATCH_MQTT__URL": mosquitto.url, **_stores_in(tmp_path)}
        returncode, output = _run_to_exit("run", "--config", str(_small_config(tmp_path)), env=env, tmp_path=tmp_path)
    assert returncode == 2, output
    # One line: the broker was not connected to (it would log "MQTT connected"), uvicorn never ran.
    assert output.strip().splitlines() == [
        f"plantwatch: api.port: 127.0.0.1:{port} is in use; stop the program that listens there or choose "
        "another api.port"
    ]


def test_an_api_host_that_does_not_resolve_is_one_line_naming_the_key(tmp_path: Path) -> None:
    env = {"PLANTWATCH_API__HOST": "no-such-host.invalid", **_stores_in(tmp_path)}
    returncode, output = _run_to_exit("run", "--config", str(_small_config(tmp_path)), env=env, tmp_path=tmp_path)
    assert returncode == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plantwatch: api.host: cannot resolve 'no-such-host.invalid': ")


def test_ctrl_c_while_the_settings_are_checked_is_one_line_and_exit_130(tmp_path: Path) -> None:
    # The settings read the password file: a FIFO holds start-up inside load_settings (before the trial
    # baselines, the longest part of starting) until its writer goes, with no timing involved.
    fifo = tmp_path / "mqtt-password"
    os.mkfifo(fifo)
    env = {"PLANTWATCH_MQTT__PASSWORD_FILE": str(fifo)}
    proc = _plantwatch("run", "--config", str(_small_config(tmp_path)), env=env, log=tmp_path / "out.txt")
    writers: list[int] = []
    try:
        returncode = interrupt_when(proc, lambda: blocked_reading(fifo, proc, writers), 60, "the password file read")
    finally:
        for fd in writers:
            os.close(fd)
    output = (tmp_path / "out.txt").read_text()
    assert returncode == 130, output
    assert output.strip().splitlines() == ["plantwatch: interrupted while starting"]
