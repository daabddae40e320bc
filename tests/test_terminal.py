"""What the terminal shows: commands run as a user runs them (a subprocess), each failure one line.

Ctrl-C is SIGINT sent once the command is provably inside its work (reading a FIFO, waiting on a
socket the test holds), never after a sleep.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
