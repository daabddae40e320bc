"""`plantwatch replay` against a real Mosquitto: every row arrives as one frame, at the asked pace."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from servers import MosquittoServer

from ingest.decode import Decoder
from plantwatch.cli import main

pytestmark = pytest.mark.integration


def _log(path: Path, rows: int) -> None:
    lines = ["time,flow,Volume Flow RateRMS"]
    for i in range(rows):
        flow = "" if i == 3 else f"{i * 0.5:.1f}"  # one empty cell: left out of its frame, not sent as NaN
        lines.append(f"2020-01-01T00:00:{i:02d}Z,{flow},{100 + i}")
    path.write_text("\n".join(lines) + "\n")


class _Collector:
    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[float, bytes]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{time.time_ns()}")
        self.client.on_message = lambda c, u, m: self.messages.append((time.monotonic(), bytes(m.payload)))
        self.client.on_subscribe = lambda *args: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self.ready.wait(5)

    def wait_for(self, count: int, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.parametrize(
    ("pace", "expected_s"),
    [(["--rate", "40"], 39 / 40), (["--speed", "20"], 39 / 20), (["--fast"], 0.0)],
)
def test_replay_publishes_every_row_at_the_pace(
    tmp_path: Path, mosquitto: MosquittoServer, pace: list[str], expected_s: float
) -> None:
    log = tmp_path / "log.csv"
    _log(log, 40)
    topic = f"plantwatch/pump-{pace[0].strip('-')}"
    collector = _Collector(mosquitto.port, topic)
    try:
        code = main(["replay", str(log), "--broker", mosquitto.url, "--asset", topic.split("/")[1], *pace])
        assert code == 0
        collector.wait_for(40)
    finally:
        collector.close()
    assert len(collector.messages) == 40
    span = collector.messages[-1][0] - collector.messages[0][0]
    assert span >= expected_s * 0.9
    if expected_s:
        assert span <= expected_s + 1.5
    decoder = Decoder("plantwatch/{asset}")
    decoded = [decoder.decode(topic, payload).readings[0] for _, payload in collector.messages]
    assert [r.ts_ns for r in decoded] == [(1_577_836_800 + i) * 10**9 for i in range(40)]
    assert decoded[5].values == {"flow": 2.5, "Volume Flow RateRMS": 105.0}
    assert decoded[3].values == {"Volume Flow RateRMS": 103.0}
    assert json.loads(collector.messages[0][1])["values"]["flow"] == 0.0
