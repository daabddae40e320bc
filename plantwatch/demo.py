"""`plantwatch demo`: the whole path on one machine with nothing else installed.

An in-process MQTT broker (amqtt), the service with its embedded SQLite storage, a generated pump
log with an injected bearing fault replayed through the broker, and the alert read back from the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from ingest.logfile import SensorLog
from ingest.replay import Publisher, as_log, replay
from ingest.topics import TopicTemplate
from plantwatch.service.listen import bind_api
from plantwatch.service.wiring import build_service
from plantwatch.settings import load_settings

log = logging.getLogger("plantwatch.demo")

PUMP_SENSORS = (
    "vibration_x_g",
    "vibration_y_g",
    "motor_current_a",
    "discharge_pressure_bar",
    "motor_temp_c",
    "fluid_temp_c",
    "voltage_v",
    "flow_l_min",
)


def pump_log(rows: int = 1200, fault_start: int = 800, fault_rows: int = 200, seed: int = 7) -> SensorLog:
    """A 1 Hz centrifugal-pump log; from ``fault_start`` a bearing defect raises vibration and heat."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    # A 2-minute duty cycle: the 600-row baseline sees it five times, so it is normal, not a fault.
    flow = 32.0 + 0.6 * np.sin(2 * np.pi * t / 120) + rng.normal(0, 0.25, rows)
    current = 1.9 + 0.04 * (flow - 32.0) + rng.normal(0, 0.02, rows)
    pressure = 0.95 - 0.01 * (flow - 32.0) + rng.normal(0, 0.008, rows)
    values = np.column_stack(
        [
            0.21 + rng.normal(0, 0.004, rows),
            0.26 + rng.normal(0, 0.005, rows),
            current,
            pressure,
            68.0 + rng.normal(0, 0.15, rows),
            24.5 + rng.normal(0, 0.1, rows),
            229.0 + rng.normal(0, 0.6, rows),
            flow,
        ]
    )
    fault = slice(fault_start, min(rows, fault_start + fault_rows))
    ramp = np.linspace(0.0, 1.0, fault.stop - fault.start)
    values[fault, 0] += 0.06 * ramp + 0.01  # radial vibration grows as the bearing wears
    values[fault, 1] += 0.04 * ramp
    values[fault, 4] += 3.5 * ramp  # friction heats the motor body
    start_ns = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
    return as_log(start_ns + t.astype(np.int64) * 10**9, PUMP_SENSORS, values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class InProcessBroker:
    """amqtt in a background event loop, bound to loopback only (its default is every interface)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._broker: Any = None
        self._thread = threading.Thread(target=self._run, name="demo-broker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(timeout=15):
            raise RuntimeError("the in-process MQTT broker did not start")

    def _run(self) -> None:
        from amqtt.broker import Broker  # imported here: only the demo needs it

        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "auth": {"allow-anonymous": True},
            "sys_interval": 0,
        }
        self._broker = Broker(config, loop=self._loop)
        self._loop.run_until_complete(self._broker.start())
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def run_demo(*, rate: float = 200.0, api_port: int = 0, keep_running: bool = False, workdir: str | None = None) -> int:
    # Bound first: a port in use is one line naming --port before anything starts (port 0: a free one).
    sockets = bind_api("127.0.0.1", api_port, port_key="--port")
    own = workdir is None  # its own temp folder goes with it; --workdir keeps the files
    work = Path(tempfile.mkdtemp(prefix="plantwatch-demo-") if workdir is None else workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        with _sigterm_as_ctrl_c():  # `kill` or a container stop: the same clean end as Ctrl-C
            return _serve_demo(sockets, work, rate, keep_running, own)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_demo(sockets: list[socket.socket], work: Path, rate: float, keep_running: bool, own: bool) -> int:
    port = sockets[0].getsockname()[1]
    for noisy in ("amqtt", "transitions", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    broker = InProcessBroker(free_port())
    broker.start()
    settings = load_settings(
        None,
        mqtt__url=f"mqtt://127.0.0.1:{broker.port}",
        mqtt__protocol="3.1.1",  # amqtt speaks MQTT 3.1.1 only
        mqtt__client_id="plantwatch-demo",
        mqtt__topic_template="plantwatch/{asset}",
        storage__kind="sqlite",
        storage__sqlite_path=str(work / "readings.db"),
        alerts__store_url=f"sqlite:///{work / 'alerts.db'}",
        alerts__resolve_after_s=30,
        api__port=port,
        api__keys_file=str(work / "api-keys.json"),  # its own: the keys of a service in this folder are not the demo's
    )
    service = build_service(settings)
    config = uvicorn.Config(service.app, log_config=None, log_level="warning")  # the root logger's format
    server = uvicorn.Server(config)
    server_thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name="demo-api", daemon=True)
    server_thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, alive=server_thread.is_alive)
        return _replay_and_watch(service, broker.port, base, work, rate, keep_running, own)
    finally:
        server.should_exit = True
        server_thread.join(timeout=15)
        try:
            broker.stop()
        except Exception:  # a broker stopped mid-connection (Ctrl-C) must not hide why the demo ended
            log.warning("the demo's MQTT broker did not stop cleanly", exc_info=True)


def _replay_and_watch(service: Any, broker_port: int, base: str, work: Path, rate: float, keep: bool, own: bool) -> int:
    pump = pump_log()
    topic = TopicTemplate(service.settings.mqtt.topic_template).render(asset="pump-101")
    kept = " (removed at the end; --workdir DIR keeps the files)" if own else ""
    print(f"plantwatch demo: API on {base}, data in {work}{kept}")
    rows = len(pump.timestamps_ns)
    publisher = Publisher("127.0.0.1", broker_port, client_id="plantwatch-demo-replay")
    print(f"replaying {rows} rows of pump-101 at {rate:g} rows/s (bearing fault from row 800)", flush=True)
    stop = threading.Event()  # set on Ctrl-C: the replay ends before the broker under it does
    started = time.monotonic()
    replay_thread = threading.Thread(
        target=replay, args=(pump, publisher, topic), kwargs={"rate": rate, "stop": stop}, daemon=True
    )
    replay_thread.start()
    try:
        alerts = _poll_alerts(base, deadline_s=120)
        first_alert_s = time.monotonic() - started
        replay_thread.join(timeout=120)
    finally:
        stop.set()
        replay_thread.join(timeout=30)
        publisher.close()
    if not alerts:
        print("no alert appeared within 120 s: something is wrong (see the log above)")
        return 1
    fault_at_s = 800 / rate
    print(
        f"\nALERT after {first_alert_s:.1f} s of replay ({first_alert_s - fault_at_s:.1f} s after the fault "
        f"began at replay time {fault_at_s:.1f} s): GET {base}/alerts ->"
    )
    print(json.dumps(alerts, indent=2))
    _wait_written(service, rows)
    with sqlite3.connect(work / "readings.db") as db:
        stored = db.execute("SELECT COUNT(DISTINCT ts_ns) FROM readings").fetchone()[0]
    print(f"readings stored in {work / 'readings.db'}: {stored} rows of {rows} published")
    if keep:
        print(f"API still serving on {base}, the dashboard at {base}/ (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:  # the way to stop it, as for `plantwatch run`: not an interruption
            print("plantwatch demo: stopped", flush=True)
    return 0


def _get_json(url: str, timeout_s: float) -> Any:
    """GET ``url`` and decode its JSON body; a non-2xx answer raises urllib's HTTPError (an OSError).

    urllib, not an HTTP client library: the demo makes a few loopback GETs and must run on the
    runtime dependencies alone.
    """
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


def wait_healthy(base: str, timeout_s: float = 30, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until ``base``/healthz answers; ``alive`` says whether the server is still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _get_json(f"{base}/healthz", timeout_s=2)
            return
        except OSError:  # refused while uvicorn starts, or a 503 (urllib's HTTPError is an OSError)
            pass
        if not alive():
            raise RuntimeError(f"the service at {base} stopped while starting (the error is above)")
        time.sleep(0.1)
    raise RuntimeError(f"the service at {base} did not become healthy within {timeout_s} s")


def _poll_alerts(base: str, deadline_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        alerts = _get_json(f"{base}/alerts", timeout_s=5)
        if alerts:
            return list(alerts)
        time.sleep(0.1)
    return []


def _wait_written(service: Any, expected: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.counters.get("plantwatch_readings_written_total") >= expected:
            return
        time.sleep(0.1)
