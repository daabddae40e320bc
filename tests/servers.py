"""Real Mosquitto / VictoriaMetrics servers for integration tests (see shared infrastructure notes).

``run_mosquitto(tmp_path)`` and ``run_victoria(tmp_path)`` are context managers that start a fresh
server on a free loopback port and stop it on exit; pass ``port=`` (and the same ``tmp_path``) to
restart a server on the same port with the same persisted data. The session fixtures in
``conftest.py`` are built on them.

A missing binary skips the test, except under ``CI=true`` where it fails: CI must not silently skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
VICTORIA_BIN = "/usr/bin/victoria-metrics"
NATS_BIN = "/usr/sbin/nats-server"
INSTALL_HINT = "apt-get install -y mosquitto victoria-metrics nats-server"
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0


# The PostgreSQL the tests use (trust auth on these machines); each test makes its own schema in it.
PG_URL = os.environ.get("PLANTWATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class MosquittoServer:
    host: str
    port: int
    url: str  # "mqtt://127.0.0.1:PORT"


@dataclass(frozen=True)
class NatsServer:
    host: str
    port: int
    url: str  # "nats://127.0.0.1:PORT"
    mqtt_port: int  # its MQTT (3.1.1) listener


@dataclass(frozen=True)
class VictoriaServer:
    host: str
    port: int
    url: str  # "http://127.0.0.1:PORT" — also the InfluxDB v2 write endpoint base
    ca_file: str | None = None  # with TLS (https://): the CA its certificate is checked against

    def flush(self) -> None:
        """Make recently written samples searchable."""
        _http_get(f"{self.url}/internal/force_flush", ca_file=self.ca_file)

    def export(self, match: str, *, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
        """Series matching ``match`` as dicts {"metric", "values", "timestamps" (ms)}; flushes first.

        ``start=0`` because the default window is limited; ``end`` defaults to now + 2 days (the most
        VictoriaMetrics accepts into the future) since the server's default end is now.
        """
        self.flush()
        end_s = end if end is not None else int(time.time()) + 2 * 86400
        query = urllib.parse.urlencode({"match[]": match, "start": start, "end": end_s})
        text = _http_get(f"{self.url}/api/v1/export?{query}", ca_file=self.ca_file)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def count_samples(self, match: str) -> int:
        return sum(len(series["values"]) for series in self.export(match))

    def distinct_timestamps(self, match: str) -> int:
        """How many different instants are stored: a redelivered duplicate (at-least-once) adds none."""
        return len({t for series in self.export(match) for t in series["timestamps"]})


# ------------------------------------------------------------------------------------- helpers


def require_binary(path: str) -> None:
    """Skip (or fail under CI=true) when a server binary is missing."""
    if os.path.exists(path) and os.access(path, os.X_OK):
        return
    skip_or_fail(f"{path} not found; install it with: {INSTALL_HINT}")


def skip_or_fail(message: str) -> None:
    """A missing service skips the test locally but fails it under CI=true (CI must never go green without it)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _http_get(url: str, timeout: float = 10.0, ca_file: str | None = None) -> str:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
        return str(resp.read().decode("utf-8"))


def _tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _health_ready(url: str, ca_file: str | None = None) -> bool:
    try:
        return _http_get(f"{url}/health", timeout=0.5, ca_file=ca_file).strip() == "OK"
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen[bytes], ready: Any, name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {_tail(log)}")
        if ready():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{name} not ready after {START_TIMEOUT_S}s: {_tail(log)}")


def _tail(log: Path, size: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def _process(argv: list[str], log: Path, name: str, ready: Any) -> Iterator[None]:
    stream: IO[bytes]
    with open(log, "ab") as stream:
        proc = subprocess.Popen(argv, stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_ready(proc, ready, name, log)
            yield
        finally:
            _stop(proc)


# --------------------------------------------------------------------------------- the servers


def _give_to_mosquitto(data: Path) -> None:
    """chown the persistence dir and make its ancestors traversable (o+x, not readable) for it.

    pytest's tmp dirs are 0700 root: without search permission on every ancestor the unprivileged
    broker cannot save its database on shutdown ("Error saving in-memory database").
    """
    _give_to(data, "mosquitto")


@contextmanager
def run_mosquitto(tmp_path: Path, *, port: int | None = None, extra_config: str = "") -> Iterator[MosquittoServer]:
    """Start Mosquitto with persistence in ``tmp_path/mosquitto``; stop it (saving state) on exit.

    ``extra_config`` lines are appended to the configuration; a repeated option overrides, e.g.
    ``allow_anonymous false`` with a ``password_file``.
    """
    port = port or free_port()
    data = mosquitto_data_dir(tmp_path)
    conf = data.parent / "mosquitto.conf"
    conf.write_text(
        f"listener {port} {HOST}\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {data}/\n"
        "log_dest stderr\n"
        "max_queued_messages 0\n" + extra_config
    )
    with run_mosquitto_config(conf, port) as server:
        yield server


def mosquitto_data_dir(tmp_path: Path) -> Path:
    """``tmp_path/mosquitto/data``, made, where the broker can save its state after dropping root."""
    data = tmp_path / "mosquitto" / "data"
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # mosquitto drops privileges to user "mosquitto"
        _give_to_mosquitto(data)
    return data


def give_file_to_mosquitto(source: Path, target: Path) -> Path:
    """A copy of ``source`` at ``target``, mode 600, that the broker can read after dropping root (its
    password and ACL files are read then) — what docker-compose.yml does for the image's broker."""
    shutil.copyfile(source, target)
    target.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(target, user="mosquitto", group="mosquitto")
    return target


@contextmanager
def run_mosquitto_config(conf: Path, port: int, *, argv: list[str] | None = None) -> Iterator[MosquittoServer]:
    """Start Mosquitto with the configuration file ``conf``, whose listener is ``port`` on 127.0.0.1
    (``argv``: another command that starts it so); its log goes beside ``conf``."""
    require_binary(MOSQUITTO_BIN)
    argv = argv or [MOSQUITTO_BIN, "-c", str(conf)]
    with _process(argv, conf.parent / "mosquitto.log", "mosquitto", lambda: _tcp_ready(port)):
        yield MosquittoServer(HOST, port, f"mqtt://{HOST}:{port}")


@contextmanager
def run_victoria(
    tmp_path: Path, *, port: int | None = None, tls: tuple[Path, Path, Path] | None = None
) -> Iterator[VictoriaServer]:
    """Start VictoriaMetrics with data in ``tmp_path/victoria`` and 100y retention; with ``tls``
    (certificate, key, the CA that signed it) on https://."""
    require_binary(VICTORIA_BIN)
    port = port or free_port()
    base = tmp_path / "victoria"
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    url = f"{'https' if tls else 'http'}://{HOST}:{port}"
    argv = [
        VICTORIA_BIN,
        f"-httpListenAddr={HOST}:{port}",
        f"-storageDataPath={data}",
        "-retentionPeriod=100y",
    ]
    if tls is not None:
        argv += ["-tls", f"-tlsCertFile={tls[0]}", f"-tlsKeyFile={tls[1]}"]
    ca_file = str(tls[2]) if tls else None
    with _process(argv, base / "victoria.log", "victoria-metrics", lambda: _health_ready(url, ca_file)):
        yield VictoriaServer(HOST, port, url, ca_file)


@contextmanager
def run_nats(tmp_path: Path, *, mappings: dict[str, str] | None = None) -> Iterator[NatsServer]:
    """Start nats-server with JetStream (stored in ``tmp_path/nats``), its MQTT listener (which needs
    JetStream and a server_name) and the subject ``mappings``, on free loopback ports."""
    require_binary(NATS_BIN)
    port, mqtt_port = free_port(), free_port()
    base = tmp_path / "nats"
    base.mkdir(parents=True, exist_ok=True)
    mapped = "".join(f'  "{source}": "{target}"\n' for source, target in (mappings or {}).items())
    conf = base / "nats.conf"
    conf.write_text(
        f"server_name: plantwatch-test-{port}\n"
        f"listen: {HOST}:{port}\n"
        f'jetstream {{ store_dir: "{base / "js"}" }}\n'
        f"mqtt {{ listen: {HOST}:{mqtt_port} }}\n" + (f"mappings = {{\n{mapped}}}\n" if mapped else "")
    )
    ready = lambda: _tcp_ready(port) and _tcp_ready(mqtt_port)  # noqa: E731
    with _process([NATS_BIN, "-c", str(conf)], base / "nats.log", "nats-server", ready):
        yield NatsServer(HOST, port, f"nats://{HOST}:{port}", mqtt_port)


# A PostgreSQL of a test's own, for what the shared one cannot do: stop and come back (Debian's server).
POSTGRES_BIN_DIR = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class PostgresServer:
    port: int
    url: str  # postgresql://postgres@127.0.0.1:PORT/postgres (trust auth)


def postgres_data(tmp_path: Path) -> Path:
    """A new database cluster in ``tmp_path/postgres`` (initdb, trust auth), owned by user postgres
    when the tests run as root (the server refuses to run as root)."""
    require_binary(str(POSTGRES_BIN_DIR / "postgres"))
    data = tmp_path / "postgres" / "data"
    data.parent.mkdir(parents=True)
    if os.geteuid() == 0:
        _give_to(data.parent, "postgres")
    argv = [str(POSTGRES_BIN_DIR / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    # cwd: the server's user may not enter the directory the tests run in.
    done = subprocess.run(argv, capture_output=True, timeout=60, cwd=data.parent, **_as_server_user())
    if done.returncode:
        raise RuntimeError(f"initdb exited with {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    return data


@contextmanager
def run_postgres(data: Path, port: int) -> Iterator[PostgresServer]:
    """The cluster in ``data`` on 127.0.0.1:``port`` until the block ends, then a fast shutdown (SIGINT:
    SIGTERM's smart shutdown would wait for the clients' pooled connections)."""
    options = ["-p", str(port), "-k", str(data.parent), "-c", f"listen_addresses={HOST}", "-c", "fsync=off"]
    log = data.parent / "postgres.log"
    with open(log, "ab") as stream:
        proc = subprocess.Popen(
            [str(POSTGRES_BIN_DIR / "postgres"), "-D", str(data), *options],
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=data.parent,
            **_as_server_user(),
        )
        try:
            url = f"postgresql://postgres@{HOST}:{port}/postgres"
            _wait_ready(proc, lambda: _postgres_ready(url), "postgres", log)  # it takes TCP before queries
            yield PostgresServer(port, url)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _postgres_ready(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:  # refused, or "the database system is starting up"
        return False
    return True


def _as_server_user() -> dict[str, Any]:
    """Popen's arguments that run the server as user postgres when the tests run as root: its group too,
    and not root's groups (a root group on a 0701 folder would deny it what "others" may do)."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def _give_to(directory: Path, user: str) -> None:
    """chown ``directory`` to ``user`` (and its group) and make its ancestors traversable (o+x) for it."""
    shutil.chown(directory, user=user, group=user)
    for parent in directory.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
