"""What the terminal shows: commands run as a user runs them (a subprocess), each failure one line.

Ctrl-C is SIGINT sent once the command is provably inside its work (reading a FIFO, waiting on a
socket the test holds), never after a sleep.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from servers import MosquittoServer
from waiting import blocked_reading, interrupt_when, wait_until

from plantwatch.cli.progress import tracked

pytestmark = pytest.mark.integration


def plantwatch(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``plantwatch ARGS`` with stdout and stderr to ``tmp_path/out.txt`` (a file: a chatty child never blocks)."""
    with open(tmp_path / "out.txt", "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "plantwatch.cli", *args],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,  # a command that wrongly creates files in its working folder does it here
        )


def run_to_exit(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    proc = plantwatch(*args, tmp_path=tmp_path, env=env)
    returncode = proc.wait(timeout=120)
    return returncode, (tmp_path / "out.txt").read_text().strip().splitlines()


def test_demo_on_a_port_in_use_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        argv = ["demo", "--port", str(port), "--workdir", str(tmp_path / "demo")]
        returncode, lines = run_to_exit(*argv, tmp_path=tmp_path)
    assert returncode == 2
    assert lines == [
        f"plantwatch: --port: 127.0.0.1:{port} is in use; stop the program that listens there or choose another --port"
    ]
    assert not (tmp_path / "demo").exists()  # refused before anything started


def _interrupt_while_reading(fifo: Path, proc: subprocess.Popen[bytes], tmp_path: Path) -> tuple[int, list[str]]:
    """SIGINT to ``proc`` while it waits to read ``fifo``; its exit code and output lines."""
    writers: list[int] = []
    try:
        returncode = interrupt_when(
            proc, lambda: blocked_reading(fifo, proc, writers), 60, "the command to read its log"
        )
    finally:
        for fd in writers:
            os.close(fd)
    return returncode, (tmp_path / "out.txt").read_text().strip().splitlines()


@pytest.mark.parametrize(
    "argv",
    [
        ["backtest", "{fifo}", "--train-rows", "100", "--out", "scores.csv"],
        ["rul", "fit", "{fifo}", "--asset-column", "unit", "--time-column", "cycle", "--out", "model"],
        ["replay", "{fifo}", "--broker", "mqtt://127.0.0.1:1", "--asset", "pump-1"],
    ],
    ids=["backtest", "rul-fit", "replay"],
)
def test_ctrl_c_while_reading_the_log_is_one_line_and_exit_130(tmp_path: Path, argv: list[str]) -> None:
    fifo = tmp_path / "log.csv"
    os.mkfifo(fifo)
    proc = plantwatch(*(arg.format(fifo=fifo) for arg in argv), tmp_path=tmp_path)
    returncode, lines = _interrupt_while_reading(fifo, proc, tmp_path)
    assert returncode == 130, lines
    assert lines == ["plantwatch: interrupted"]


def test_ctrl_c_during_the_checks_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """The broker is a socket that accepts and never answers: the check waits for its CONNACK."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        config = tmp_path / "plant.yaml"
        config.write_text(f"mqtt: {{url: 'mqtt://127.0.0.1:{silent.getsockname()[1]}'}}\nstorage: {{kind: sqlite}}\n")
        proc = plantwatch("check", "--config", str(config), tmp_path=tmp_path)
        connected: list[socket.socket] = []  # the check is connecting: past the settings, inside the broker's
        returncode = interrupt_when(proc, lambda: _accepted(silent, connected), 60, "the check to connect")
        for connection in connected:
            connection.close()
    lines = (tmp_path / "out.txt").read_text().strip().splitlines()
    assert returncode == 130, lines
    assert lines[0].startswith("ok    settings") and lines[1:] == ["plantwatch: interrupted"]


def test_ctrl_c_during_the_demos_replay_is_one_line_and_exit_130(tmp_path: Path) -> None:
    proc = plantwatch("demo", "--rate", "20", "--workdir", str(tmp_path / "demo"), tmp_path=tmp_path)
    output = tmp_path / "out.txt"
    returncode = interrupt_when(proc, lambda: "replaying 1200 rows" in output.read_text(), 120, "the replay")
    lines = output.read_text().strip().splitlines()
    assert returncode == 130, "\n".join(lines)  # all of it: a traceback says where the interrupt landed
    assert lines[-1] == "plantwatch: interrupted" and "Traceback" not in output.read_text()
    assert "removed at the end" not in output.read_text()  # --workdir keeps the files: not said otherwise


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_kept_demo_stops_with_exit_0_and_its_temp_folder_goes(tmp_path: Path, stop: signal.Signals) -> None:
    temp = tmp_path / "temp"  # where tempfile puts the demo's own folder
    temp.mkdir()
    proc = plantwatch("demo", "--rate", "400", "--keep-running", tmp_path=tmp_path, env={"TMPDIR": str(temp)})
    output = tmp_path / "out.txt"
    try:
        wait_until(lambda: "API still serving" in output.read_text() or proc.poll() is not None, 120, "the kept API")
        proc.send_signal(stop)
        returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = output.read_text()
    # Ctrl-C (or a stop) is how a kept demo ends, as for `plantwatch run`: not an interruption
    assert returncode == 0, text
    assert text.strip().splitlines()[-1] == "plantwatch demo: stopped" and "Traceback" not in text
    assert "(removed at the end; --workdir DIR keeps the files)" in text
    assert list(temp.iterdir()) == []  # its readings and alerts were in a folder of its own


def test_replay_interrupted_says_how_many_frames_it_published(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    log = tmp_path / "log.csv"
    log.write_text("time,a\n" + "".join(f"{1_600_000_000 + i},{i}\n" for i in range(400)))
    received = threading.Event()
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"terminal-{uuid.uuid4().hex[:8]}")
    subscriber.on_message = lambda *args: received.set()
    subscriber.connect(mosquitto.host, mosquitto.port)
    subscriber.subscribe("terminal/pump-1", qos=1)
    subscriber.loop_start()
    try:
        argv = ["replay", str(log), "--broker", mosquitto.url, "--asset", "pump-1", "--topic", "terminal/pump-1"]
        proc = plantwatch(*argv, "--rate", "10", tmp_path=tmp_path)
        returncode = interrupt_when(proc, received.is_set, 60, "the first frame")
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
    lines = (tmp_path / "out.txt").read_text().strip().splitlines()
    assert returncode == 130, lines
    assert len(lines) == 2 and lines[1] == "plantwatch: interrupted", lines
    assert re.fullmatch(r"published ([1-9]\d*) of 400 frames to terminal/pump-1( \(.*\))?", lines[0]), lines


def _accepted(server: socket.socket, connections: list[socket.socket]) -> bool:
    """Whether a client has connected to ``server`` (appended to ``connections``); does not wait."""
    server.setblocking(False)
    try:
        connections.append(server.accept()[0])
    except BlockingIOError:
        return False
    return True


def test_a_reader_that_leaves_early_gets_no_broken_pipe_message(tmp_path: Path) -> None:
    """`plantwatch check | head -1`: the check's later lines meet a closed pipe, and say nothing about it."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        config = tmp_path / "plant.yaml"
        config.write_text(f"mqtt: {{url: 'mqtt://127.0.0.1:{silent.getsockname()[1]}'}}\nstorage: {{kind: sqlite}}\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "plantwatch.cli", "check", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            first = proc.stdout.readline()
            silent.settimeout(60)
            connection, _ = silent.accept()
            proc.stdout.close()  # the reader leaves (head -1 has its line) ...
            connection.close()  # ... then the broker check fails, and its line meets the closed pipe
            returncode = proc.wait(timeout=60)
            errors = proc.stderr.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=20)
            proc.stderr.close()
    assert first.startswith(b"ok    settings")
    assert errors == "" and returncode == 1


def _big_log(path: Path, rows: int) -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0.0, 1.0, size=(rows, 4))
    lines = ["time,a,b,c,d"] + [f"{i},{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{r[3]:.4f}" for i, r in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def _on_a_terminal(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``plantwatch ARGV`` with stdout and stderr on a pseudo-terminal; its exit code and output."""
    controller, terminal = pty.openpty()
    # A terminal 120 columns wide: a new pseudo-terminal is 0 x 0, where tqdm draws nothing.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "plantwatch.cli", *argv], stdout=terminal, stderr=terminal, cwd=cwd, close_fds=True
    )
    os.close(terminal)
    output = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return proc.wait(timeout=120), output.decode(errors="replace")


def test_a_long_backtest_shows_its_progress_on_a_terminal_and_nothing_when_piped(tmp_path: Path) -> None:
    _big_log(tmp_path / "big.csv", 150_000)  # three chunks of plantwatch.offline.backtest.CHUNK_ROWS
    argv = ["backtest", "big.csv", "--out", "scores.csv", "--train-rows", "600"]
    code, shown = _on_a_terminal(argv, tmp_path)
    assert code == 0, shown
    # The bar, with its total and rate (which frames it draws depends on timing: not the last one).
    assert "scoring:" in shown and "/150k [" in shown and "rows/s" in shown
    piped = subprocess.run(
        [sys.executable, "-m", "plantwatch.cli", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert piped.returncode == 0, piped.stderr
    assert "scoring" not in piped.stderr and "rows/s" not in piped.stderr
    assert piped.stdout.splitlines()[-1] in shown  # the same summary on both


def test_tracked_hands_on_every_item_in_order_with_or_without_a_terminal() -> None:
    items = ["valve1/1.csv", "valve1/2.csv", "nab/a.csv"]
    assert list(tracked(items, "files", "files")) == items
    assert list(tracked([], "files", "files")) == []
