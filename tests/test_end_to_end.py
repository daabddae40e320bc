"""End to end on real servers: replay → Mosquitto → `plantwatch run` → VictoriaMetrics + alert API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from servers import MosquittoServer, VictoriaServer

from plantwatch.demo import PUMP_SENSORS, free_port, pump_log

pytestmark = pytest.mark.integration

SENSOR_COUNT = 8
ROWS = 1200


def _write_csv(path: Path) -> None:
    log = pump_log(rows=ROWS)
    lines = ["timestamp," + ",".join(log.sensors)]
    for ts, row in zip(log.timestamps_ns.tolist(), log.values.tolist(), strict=True):
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 10**9)) + "Z"
        lines.append(iso + "," + ",".join(f"{v:.6f}" for v in row))
    path.write_text("\n".join(lines) + "\n")


def _run_to_failure_fleet(path: Path, units: int = 20, seed: int = 3) -> None:
    """Pumps whose bearings wear out: vibration and motor temperature rise until failure (1 row = 1 s)."""
    rng = np.random.default_rng(seed)
    base = np.array([0.21, 0.26, 1.9, 0.95, 68.0, 24.5, 229.0, 32.0])
    noise = np.array([0.004, 0.005, 0.02, 0.008, 0.15, 0.1, 0.6, 0.25])
    lines = ["unit,cycle," + ",".join(PUMP_SENSORS)]
    for u in range(1, units + 1):
        life = int(rng.integers(120, 200))
        t = np.arange(1, life + 1)
        wear = np.exp((t - life) / 30.0)
        X = base + rng.normal(0, 1, (life, 8)) * noise
        X[:, 0] += 0.06 * wear
        X[:, 1] += 0.04 * wear
        X[:, 4] += 3.5 * wear
        lines += [f"pump-{u},{c}," + ",".join(f"{v:.5f}" for v in row) for c, row in zip(t, X, strict=True)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def rul_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model learned with `plantwatch rul fit` from run-to-failure logs, for the live service to use."""
    folder = tmp_path_factory.mktemp("rul")
    _run_to_failure_fleet(folder / "fleet.csv")
    fit = subprocess.run(
        [sys.executable, "-m", "plantwatch.cli", "rul", "fit", str(folder / "fleet.csv")]
        + ["--asset-column", "unit", "--time-column", "cycle", "--out", str(folder / "model")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fit.returncode == 0, fit.stderr
    return folder / "model"


def _config(tmp: Path, mqtt_port: int, victoria_url: str, api_port: int, rul_model: Path) -> Path:
    config = tmp / "plantwatch.yaml"
    config.write_text(
        f"""
mqtt:
  url: mqtt://127.0.0.1:{mqtt_port}
  client_id: plantwatch-e2e
  topic_template: plant/{{line}}/{{asset}}
  dead_letter_topic: deadletter/plantwatch
storage:
  kind: influxdb
  batch_size: 2000
  flush_interval_s: 0.2
influx:
  url: {victoria_url}
  org: test
  bucket: e2e
  measurement: readings
detector:
  baseline_rows: 600
alerts:
  store_url: sqlite:///{tmp / "alerts.db"}
  resolve_after_s: 30
api:
  port: {api_port}
maintenance:
  rul_model: {rul_model}
  rul_time_unit_s: 1.0
  rul_every_rows: 100
"""
    )
    return config


@pytest.fixture
def service(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer, rul_model: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    api_port = free_port()
    config = _config(tmp_path, mosquitto.port, victoria.url, api_port, rul_model)
    base = f"http://127.0.0.1:{api_port}"
    with plantwatch_run(config, base) as proc:
        yield base, proc


@contextmanager
def plantwatch_run(config: Path, base: str, output: int | IO[str] = subprocess.PIPE) -> Iterator[subprocess.Popen[str]]:
    """``plantwatch run --config config`` until the block ends, once its API at ``base`` answers
    ``/healthz``; its log to ``output`` (a pipe that nobody reads fills up in a long test: pass a file)."""
    env = {**os.environ, "PLANTWATCH_INFLUX__TOKEN": "e2e-token"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plantwatch.cli", "run", "--config", str(config)],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: _healthy(base), 90, proc)  # generous: a loaded 2-core runner imports slowly
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(condition: Callable[[], object], timeout_s: float, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"plantwatch run exited with {proc.returncode}:\n{output[-4000:]}")
        time.sleep(0.2)
    output = ""
    if proc is not None:  # say why: the service's own log
        proc.terminate()
        output = proc.communicate(timeout=20)[0] or ""
    pytest.fail(f"condition not met within {timeout_s} s\n{output[-4000:]}")


def test_fault_raises_alert_and_every_reading_is_stored(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer, service: tuple[str, subprocess.Popen[str]]
) -> None:
    base, _ = service
    log_path = tmp_path / "pump.csv"
    _write_csv(log_path)

    # Bad input on the same topic tree must be counted and must not disturb the good readings.
    dead_letters: list[dict[str, str]] = []
    bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-bad")
    bad.on_message = lambda client, userdata, message: dead_letters.append(json.loads(message.payload))
    bad.connect("127.0.0.1", mosquitto.port)
    bad.loop_start()
    bad.subscribe("deadletter/plantwatch", qos=1)
    time.sleep(0.3)
    for payload in (b"{not json", b'{"ts": 1, "values": {"x": "high"}}', b"\xff\xfe"):
        bad.publish("plant/line1/pump-7", payload, qos=1).wait_for_publish(5)
    bad.publish("unrelated/topic", b"1", qos=1).wait_for_publish(5)

    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantwatch.cli",
            "replay",
            str(log_path),
            "--broker",
            f"mqtt://127.0.0.1:{mosquitto.port}",
            "--asset",
            "pump-7",
            "--topic",
            "plant/line1/pump-7",
            "--fast",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert f"published {ROWS} frames" in replay.stdout

    def alert_open() -> bool:
        return bool(httpx.get(f"{base}/alerts", params={"asset": "pump-7", "kind": "anomaly"}, timeout=5).json())

    _wait_for(alert_open, 60)
    alerts = httpx.get(f"{base}/alerts", params={"asset": "pump-7", "kind": "anomaly"}, timeout=5).json()
    alert = alerts[0]
    assert alert["asset"] == "pump-7"
    assert alert["kind"] == "anomaly"
    sensors = [c["sensor"] for c in alert["top_sensors"]]
    # The injected bearing fault raises vibration and motor temperature: one of them must lead.
    assert sensors[0] in {"vibration_x_g", "vibration_y_g", "motor_temp_c"}
    assert alert["top_sensors"][0]["direction"] == "high"
    # The fault starts at row 800 of the log (2026-01-01T00:13:20Z); the alert must not predate it.
    assert alert["started_at"] >= "2026-01-01T00:13:20"

    # Live maintenance predictions: the health index of every scored asset, and the remaining useful
    # life from the `plantwatch rul fit` model with its interval (a trend projection is not required
    # on 20 minutes of data).
    def rul_served() -> bool:
        entries = {e["asset"]: e for e in httpx.get(f"{base}/maintenance", timeout=5).json()}
        return entries.get("pump-7", {}).get("rul_s") is not None

    _wait_for(rul_served, 30)
    entry = {e["asset"]: e for e in httpx.get(f"{base}/maintenance", timeout=5).json()}["pump-7"]
    assert entry["model"] == "rul:model"
    assert entry["health_index"] is not None
    assert 0 <= entry["rul_low_s"] <= entry["rul_s"] <= entry["rul_high_s"]
    # The model's pumps lived 2–3 minutes, so its predicted remaining life is inside the 24 h horizon:
    # a maintenance alert opens beside the anomaly alert.
    _wait_for(lambda: bool(httpx.get(f"{base}/alerts", params={"kind": "maintenance"}, timeout=5).json()), 10)

    # Every published reading is in the TSDB: one sample per sensor per row, no more, no fewer.
    def all_stored() -> bool:
        return victoria.count_samples('{__name__=~"readings_.*",asset="pump-7"}') >= ROWS * SENSOR_COUNT

    _wait_for(all_stored, 60)
    time.sleep(1.0)  # a late duplicate would show up now
    assert victoria.count_samples('{__name__=~"readings_.*",asset="pump-7"}') == ROWS * SENSOR_COUNT
    assert victoria.count_samples('{__name__="readings_motor_temp_c",asset="pump-7",line="line1"}') == ROWS
    # Detector output lands beside the readings.
    assert victoria.count_samples('{__name__="anomaly_score",asset="pump-7"}') >= ROWS - 600 - 5

    json_body = {"Content-Type": "application/json"}  # what every state-changing call must send (api.auth)
    assert httpx.post(f"{base}/assets/no-such-pump/relearn", headers=json_body, timeout=5).status_code == 404
    asset = httpx.get(f"{base}/assets/pump-7", timeout=5).json()
    assert asset["learned"] is True and asset["baseline_rows_seen"] == asset["baseline_rows"] == 600
    assert asset["state"] in ("normal", "alarm") and 0 <= asset["probability"] < 1 and asset["last_row_at"]
    assert len(asset["sensors"]) == SENSOR_COUNT and asset["detector"] == "pca_spc" and asset["window_s"] > 0
    assert [a["asset"] for a in httpx.get(f"{base}/assets", timeout=5).json()] == ["pump-7"]
    health = httpx.get(f"{base}/healthz", timeout=5).json()
    assert health["baselines"]["pump-7"]["learned"] is True
    assert isinstance(health["baselines"]["pump-7"]["drifting_sensors"], list)
    assert health["baselines"]["pump-7"]["unknown_sensors"] == []  # the replay sends the model's sensors only
    assert health["baselines"]["pump-7"]["stale_sensors"] == []
    # 600 baseline rows leave ~3 scores beyond enter 0.995: /healthz says so and what to change
    assert 2 < health["baselines"]["pump-7"]["scores_beyond_enter"] < 10
    assert "baseline_rows >=" in health["baselines"]["pump-7"]["advice"]
    # the alarm level derived for 1 false alert per week lies far beyond the per-row floor enter 0.995
    assert 0.9999 < health["baselines"]["pump-7"]["alarm_enter"] < 1.0
    shifts = health["baselines"]["pump-7"]["smallest_shifts"]  # what the model can see, per sensor
    assert len(shifts) == SENSOR_COUNT
    drifting = set(health["baselines"]["pump-7"]["drifting_sensors"])
    assert all(shifts[name]["up"] > 0 and shifts[name]["down"] > 0 for name in set(shifts) - drifting)
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert 'plantwatch_messages_rejected_total{reason="malformed_json"} 1' in metrics
    assert 'plantwatch_messages_rejected_total{reason="bad_encoding"} 1' in metrics
    assert 'plantwatch_messages_rejected_total{reason="non_numeric"} 1' in metrics
    assert f"plantwatch_readings_written_total {ROWS}" in metrics
    assert "plantwatch_alerts_opened_total 1" in metrics
    # Rejected payloads were republished, with their reason, to the dead-letter topic.
    _wait_for(lambda: len(dead_letters) >= 3, 10)
    assert sorted(d["reason"] for d in dead_letters) == ["bad_encoding", "malformed_json", "non_numeric"]
    assert all(d["topic"] == "plant/line1/pump-7" for d in dead_letters)
    bad.loop_stop()
    bad.disconnect()
