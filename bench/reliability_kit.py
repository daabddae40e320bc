"""The processes and probes of bench/reliability.py: real Mosquitto, VictoriaMetrics and `plantwatch run`.

Each server is a subprocess of this bench on a free loopback port that a scenario can stop, restart
on the same port and data, SIGKILL, or SIGSTOP/SIGCONT (tests/servers.py's context managers only
start and stop). :class:`Probe` polls ``/healthz`` and ``/metrics`` of the running plantwatch in a
thread and samples its memory; :class:`Plantwatch` starts and stops the service and reads its API.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import (  # noqa: E402
    HOST,
    MOSQUITTO_BIN,
    VICTORIA_BIN,
    VictoriaServer,
    _health_ready,
    _tcp_ready,
    free_port,
    mosquitto_data_dir,
)

TOKEN = "bench-token"


def wait_for(condition: Any, timeout_s: float, what: str, step_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step_s)
    raise TimeoutError(f"{what}: not within {timeout_s} s")


class Server:
    """One server subprocess, restartable on the same port and data; its log appended to ``log``."""

    name = "server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = folder / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        stream: IO[bytes]
        with open(self.log, "ab") as stream:
            self.proc = subprocess.Popen(self.argv(), stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self.ready, 30, f"{self.name} ready", 0.02)

    def stop(self) -> None:
        """Graceful: SIGTERM (Mosquitto saves its state) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def pause(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)


class Broker(Server):
    """Mosquitto with persistence and no queue limit (`max_queued_messages 0`), as deploy/ ships it."""

    name = "mosquitto"

    def __init__(self, folder: Path, extra_config: str = "") -> None:
        super().__init__(folder)
        data = mosquitto_data_dir(folder)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence true\n"
            f"persistence_location {data}/\nlog_dest stderr\nmax_queued_messages 0\n" + extra_config
        )
        self.url = f"mqtt://{HOST}:{self.port}"

    def argv(self) -> list[str]:
        return [MOSQUITTO_BIN, "-c", str(self.conf)]

    def ready(self) -> bool:
        return _tcp_ready(self.port)


class Tsdb(Server):
    """VictoriaMetrics as the InfluxDB v2 write target, 100 years' retention."""

    name = "victoria"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.url = f"http://{HOST}:{self.port}"
        self.client = VictoriaServer(HOST, self.port, self.url)

    def argv(self) -> list[str]:
        data = self.folder / "data"
        return [
            VICTORIA_BIN,
            f"-httpListenAddr={HOST}:{self.port}",
            f"-storageDataPath={data}",
            "-retentionPeriod=100y",
        ]

    def ready(self) -> bool:
        return _health_ready(self.url)

    def export(self, match: str) -> list[dict[str, Any]]:
        return self.client.export(match)


def config_yaml(folder: Path, broker: Broker, tsdb: Tsdb, api_port: int, checkpoint_s: float) -> Path:
    """The service's configuration: the default, with the bench's servers, a model_dir and a SQLite store."""
    path = folder / "plantwatch.yaml"
    path.write_text(
        f"""mqtt:
  url: {broker.url}
  client_id: plantwatch-bench
  topic_template: plant/{{asset}}
storage:
  kind: influxdb
influx:
  url: {tsdb.url}
  org: bench
  bucket: bench
detector:
  baseline_rows: 300
  model_dir: {folder / "models"}
  checkpoint_interval_s: {checkpoint_s}
alerts:
  store_url: sqlite:///{folder / "alerts.db"}
api:
  port: {api_port}
"""
    )
    return path


class Plantwatch:
    """`plantwatch run --config ...` as a subprocess; its log in ``folder/plantwatch.log``."""

    def __init__(self, folder: Path, broker: Broker, tsdb: Tsdb, checkpoint_s: float = 30.0) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.base = f"http://{HOST}:{self.api_port}"
        self.config = config_yaml(folder, broker, tsdb, self.api_port, checkpoint_s)
        self.log = folder / "plantwatch.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.crashes = 0  # exits nobody asked for
        self.peak_rss_mb = 0.0  # the most of VmHWM over every process started here
        self.http = httpx.Client(timeout=10)

    def start(self) -> None:
        env = {**os.environ, "PLANTWATCH_INFLUX__TOKEN": TOKEN}
        stream: IO[bytes]
        with open(self.log, "ab") as stream:
            argv = [sys.executable, "-m", "plantwatch.cli", "run", "--config", str(self.config)]
            self.proc = subprocess.Popen(
                argv, env=env, stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_for(self._answers, 120, "plantwatch's API", 0.2)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"plantwatch exited with {self.proc.returncode}; see {self.log}")
        try:
            return self.http.get(f"{self.base}/healthz", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def note_peak(self) -> None:
        """Read the process's VmHWM (its peak RSS) while it lives."""
        pid = self.pid
        if pid is None:
            return
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        match = re.search(r"VmHWM:\s+(\d+) kB", text)
        if match:
            self.peak_rss_mb = max(self.peak_rss_mb, int(match.group(1)) / 1024)

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut of the process."""
        assert self.proc is not None
        self.note_peak()
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM and wait; an exit before this call counts as a crash."""
        if self.proc is None:
            return
        self.note_peak()
        if self.proc.poll() is not None:
            self.crashes += 1
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.crashes += 1  # a stop that hangs is a failure too

    def metrics(self) -> dict[str, float]:
        """/metrics as {name{labels}: value}."""
        text = self.http.get(f"{self.base}/metrics").text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def alerts(self) -> set[tuple[str, str, str]]:
        """(asset, kind, started_at) of every alert the store holds."""
        answer = self.http.get(f"{self.base}/alerts", params={"limit": 10_000}).json()
        return {(a["asset"], a["kind"], a["started_at"]) for a in answer}

    def settle(self, expected_written: int, timeout_s: float) -> None:
        """Until nothing is in flight, queued or waiting to be scored, and the counts stand still for 3 s
        (or ``expected_written`` readings are written and all that holds)."""
        keys = ("plantwatch_readings_written_total", "plantwatch_rows_scored_total")
        gauges = (
            "plantwatch_unacked_messages",
            "plantwatch_inbound_queue",
            "plantwatch_scoring_backlog",
            "plantwatch_unscored_batches",  # left in the readings log while the detector was behind
        )
        last: tuple[float, ...] | None = None
        still_since = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = self.metrics()
            now = tuple(m.get(k, 0.0) for k in keys)
            idle = all(m.get(g, 0.0) == 0 for g in gauges)
            if now != last or not idle:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= (3.0 if now[0] < expected_written else 2.0):
                return
            time.sleep(0.5)
        raise TimeoutError(f"plantwatch did not settle within {timeout_s} s (written {last})")


def _rss_mb(pid: int) -> float | None:
    """The process's resident memory now (psutil if installed, else /proc/<pid>/status VmRSS)."""
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        pass
    except Exception:  # psutil.Error: the process is gone
        return None
    try:
        match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@dataclass
class Probe:
    """Polls /healthz (``rate`` per second) and /metrics in a thread while a scenario runs; samples RSS."""

    service: Plantwatch
    rate: float = 10.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    refused: int = 0  # no answer (the service was down: killed, restarting)
    max_unacked: float = 0.0
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, RSS)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        client = httpx.Client(timeout=5)
        tick = 0
        while not self._stop.wait(1 / self.rate):
            self._health(client)
            tick += 1
            if tick % 2 == 0:  # /metrics 5x/s: the unacked gauge
                self._unacked(client)
            if tick % int(self.rate) == 0:
                self._rss()
        client.close()

    def _health(self, client: httpx.Client) -> None:
        started = time.perf_counter()
        try:
            status = client.get(f"{self.service.base}/healthz").status_code
        except httpx.TimeoutException:
            self.latencies_ms.append(5000.0)
            return
        except httpx.HTTPError:
            self.refused += 1
            return
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def _unacked(self, client: httpx.Client) -> None:
        try:
            text = client.get(f"{self.service.base}/metrics").text
        except httpx.HTTPError:
            return
        match = re.search(r"^plantwatch_unacked_messages (\S+)$", text, re.M)
        if match:
            self.max_unacked = max(self.max_unacked, float(match.group(1)))

    def _rss(self) -> None:
        pid = self.service.pid
        if pid is None:
            return
        rss = _rss_mb(pid)
        if rss is None:
            return
        self.rss_mb.append((time.monotonic() - self._started, rss))
        self.service.note_peak()

    @property
    def p99_ms(self) -> float:
        return p99(self.latencies_ms)
