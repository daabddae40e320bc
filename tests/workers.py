"""`plantwatch run` processes for the scale-out test and bench: start one on a configuration, ask its API.

A worker's readings and verdicts go where its configuration says; ``db`` is its SQLite file when it
stores in SQLite (the test reads it to tell which worker scored what).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import free_port

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Worker:
    name: str
    port: int
    db: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as exc:  # 503 while degraded: the body still says why
            return dict(json.load(exc))
        except OSError:
            return {}

    def partitions(self) -> set[int]:
        return set(self.health().get("partitions", []))

    def metric(self, name: str) -> float:
        """One unlabelled series of ``/metrics`` (0 when the worker does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def cpu_s(self) -> float:
        """CPU seconds the process has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, workers: list[Worker] | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    tails = "\n".join(f"--- {w.name}\n{log_tail(w.log)}" for w in workers or [])
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}\n{tails}")


def log_tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if "uvicorn.access" not in line]
    return "\n".join(lines[-40:])


def start_worker(tmp_path: Path, name: str, config: dict[str, Any]) -> Worker:
    """``plantwatch run`` on ``config`` (an API port and key file of its own are added), logging to
    ``tmp_path/<name>.log``."""
    port = free_port()
    config = {**config, "api": {"port": port, "keys_file": str(tmp_path / f"{name}-keys.json")}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    log = tmp_path / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plantwatch.cli", "run", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=env,
        )
    db = Path(config.get("storage", {}).get("sqlite_path", tmp_path / f"{name}-none.db"))
    return Worker(name, port, db, log, proc)


def stop_workers(workers: list[Worker], timeout_s: float = 60.0) -> None:
    """SIGTERM to those still running (each stops its partitions: the batch in hand stored, a
    checkpoint written, their leases freed), then wait; SIGKILL what has not ended by ``timeout_s``."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            w.proc.kill()
