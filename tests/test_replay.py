"""`plantwatch replay` against a real Mosquitto: every row arrives as one frame, at the asked pace."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from servers import MosquittoServer

from ingest.decode import Decoder
from ingest.replay import PROGRESS_EVERY, Publisher, as_log, replay
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


def _labelled_log(path: Path, rows: int = 30) -> None:
    lines = ["time,flow,status,anomaly,Changepoint"]
    lines += [f"{1_577_836_800 + i},{i * 0.5:.1f},running,{int(i > 20)},0" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def _replay(port: int, args: list[str], topic: str) -> list[dict[str, float]]:
    collector = _Collector(port, topic)
    try:
        assert main(["replay", *args, "--broker", f"mqtt://127.0.0.1:{port}", "--asset", topic.split("/")[1]]) == 0
        collector.wait_for(30)
    finally:
        collector.close()
    assert len(collector.messages) == 30
    return [json.loads(payload)["values"] for _, payload in collector.messages]


def test_label_like_columns_are_not_published_unless_included(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "labelled.csv"
    _labelled_log(log)
    frames = _replay(mosquitto.port, [str(log)], "plantwatch/labelled-default")
    assert all(set(values) == {"flow"} for values in frames)  # the text column has no value to send
    err = capsys.readouterr().err.splitlines()
    assert f"note: {log}: left out anomaly, Changepoint: named like labels, so not read as sensors; " in err[0]
    assert "--include NAME" in err[0]
    assert err[1] == f"note: {log}: status hold no number in any row; never published"

    frames = _replay(mosquitto.port, [str(log), "--include", "anomaly"], "plantwatch/labelled-included")
    assert [values["anomaly"] for values in frames] == [float(i > 20) for i in range(30)]
    assert "left out Changepoint:" in capsys.readouterr().err


def test_the_backtest_leaves_undeclared_label_like_columns_out_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "labelled.csv"
    lines = ["time,a,b,anomaly"] + [f"{1_577_836_800 + i},{i % 7},{i % 5},{int(i > 300)}" for i in range(400)]
    log.write_text("\n".join(lines) + "\n")
    assert main(["backtest", str(log), "--train-rows", "200", "--out", str(tmp_path / "out.csv")]) == 0
    captured = capsys.readouterr()
    assert "x 2 sensors" in captured.out and "point-wise" not in captured.out
    assert f"note: {log}: left out anomaly: named like labels" in captured.err
    assert "--label-column NAME scores against one" in captured.err
    assert (
        main(["backtest", str(log), "--train-rows", "200", "--out", str(tmp_path / "o.csv"), "--include", "anomaly"])
        == 0
    )
    assert "x 3 sensors" in capsys.readouterr().out


def test_replay_refuses_a_log_without_rows_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "header.csv"
    log.write_text("time,flow\n")
    # Port 9 (discard) has no broker: the log is refused before any connection is tried.
    assert main(["replay", str(log), "--broker", "mqtt://127.0.0.1:9", "--asset", "a"]) == 2
    assert capsys.readouterr().err.strip() == f"plantwatch: {log}: no data rows after the header; nothing to replay"


def test_replay_label_columns_are_never_read(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    log = tmp_path / "text-label.csv"
    lines = ["time,flow,fault"] + [f"{1_577_836_800 + i},{i},{'ok' if i % 2 else 'bad'}" for i in range(30)]
    log.write_text("\n".join(lines) + "\n")
    frames = _replay(mosquitto.port, [str(log), "--label-column", "fault"], "plantwatch/text-label")
    assert frames == [{"flow": float(i)} for i in range(30)]


def test_replay_reports_its_progress_in_steps_that_add_up_to_every_frame(mosquitto: MosquittoServer) -> None:
    rows = 2 * PROGRESS_EVERY + 234
    log = as_log(np.arange(rows, dtype=np.int64) * 10**9, ("flow",), np.ones((rows, 1)))
    steps: list[tuple[int, int]] = []
    publisher = Publisher("127.0.0.1", mosquitto.port, client_id="progress-test")
    try:
        stats = replay(log, publisher, "plantwatch/progress", progress=lambda done, total: steps.append((done, total)))
    finally:
        publisher.close()
    assert stats.published == rows
    assert steps == [(PROGRESS_EVERY, rows), (PROGRESS_EVERY, rows), (234, rows)]
