"""`plantwatch check`: validate a configuration and reach its servers, without starting the service.

In order: the settings (every key, plus the detector's trial baseline that ``load_settings`` fits),
then the MQTT broker (a full MQTT CONNECT with the configured protocol, TLS and credentials), the
time-series database (``GET /health``: InfluxDB 2 and VictoriaMetrics both answer it) or the SQLite
readings file, and the alert store (opened as the service opens it). One line per check; exit 0
when all pass, 2 otherwise.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psycopg

from alerts.store import StoreOpenError, open_store
from ingest.decode import TopicTemplate
from ingest.mqtt_source import MqttOptions
from ingest.sink import SqliteSink
from plantwatch.cli.common import add_log_level
from plantwatch.settings import ConfigError, Settings, load_settings
from telemetry.counters import Counters

# How long one server may take to answer; a plant's broker or database answers in milliseconds.
TIMEOUT_S = 5.0


def add_parser(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check", help="validate a configuration and reach its broker, database and alert store, then exit"
    )
    check.add_argument("--config", help="YAML config file (default: the embedded default configuration)")
    add_log_level(check)
    check.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from plantwatch.service.wiring import mqtt_options

    where = args.config or "the embedded default configuration"
    try:
        settings = load_settings(args.config)
        options = mqtt_options(settings, TopicTemplate(settings.mqtt.topic_template))
    except ConfigError as exc:
        _report(False, "settings", str(exc))
        return 2
    _report(True, "settings", f"{where}: valid; detector {settings.detector.kind} learned a trial baseline")
    checks: list[tuple[str, Callable[[], str]]] = [
        ("broker", lambda: check_broker(options)),
        ("storage", lambda: check_storage(settings)),
        ("alerts", lambda: check_alert_store(settings.alerts.store_url)),
    ]
    passed = True
    for name, run in checks:
        try:
            _report(True, name, run())
        except CheckFailed as exc:
            _report(False, name, str(exc))
            passed = False
    return 0 if passed else 2


class CheckFailed(Exception):
    """One check did not pass; the message says what was tried and what went wrong."""


def _report(ok: bool, name: str, message: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'}  {name:<8}  {message}", flush=True)


def check_broker(options: MqttOptions, timeout_s: float = TIMEOUT_S) -> str:
    """An MQTT CONNECT with the service's protocol, TLS and credentials, answered by a CONNACK.

    The client id is the service's plus ``-check`` and the session is a clean one: connecting under
    the service's own id would take its persistent session over and disconnect a running service.
    """
    scheme = "mqtts" if options.tls else "mqtt"
    where = f"{scheme}://{options.host}:{options.port}"
    v5 = options.protocol == "5"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"{options.client_id or 'plantwatch'}-check",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    if options.username:
        client.username_pw_set(options.username, options.password)
    if options.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    answered = threading.Event()
    reason: list[Any] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        reason.append(reason_code)
        answered.set()

    client.on_connect = on_connect
    try:  # TCP first, so that a failure after it can be named a TLS failure
        socket.create_connection((options.host, options.port), timeout=timeout_s).close()
    except OSError as exc:
        raise CheckFailed(f"{where}: cannot connect: {exc.strerror or exc}") from None
    try:
        client.connect(options.host, options.port, keepalive=options.keepalive_s)
    except OSError as exc:  # ssl.SSLError is an OSError
        cause = getattr(exc, "reason", None) or exc.strerror or exc
        if options.tls:
            raise CheckFailed(f"{where}: TLS handshake failed: {cause} (does the port speak TLS?)") from None
        raise CheckFailed(f"{where}: cannot connect: {cause}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            raise CheckFailed(f"{where}: connected, but no MQTT CONNACK within {timeout_s:g} s (is it an MQTT broker?)")
        if reason[0].is_failure:
            raise CheckFailed(f"{where}: the broker refused the connection: {reason[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
    auth = f" as {options.username}" if options.username else ""
    return f"{where}: MQTT {options.protocol} CONNECT accepted{auth}"


def check_storage(settings: Settings, timeout_s: float = TIMEOUT_S) -> str:
    if settings.storage.kind == "sqlite":
        return _check_sqlite_readings(settings.storage.sqlite_path)
    url = settings.influx.url.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=min(timeout_s, settings.influx.timeout_s)) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # InfluxDB answers 503 while it is not ready
        raise CheckFailed(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
    except OSError as exc:
        cause = getattr(exc, "reason", exc)
        raise CheckFailed(f"GET {url}: cannot connect: {getattr(cause, 'strerror', None) or cause}") from None
    # The token is not tried: VictoriaMetrics, which stands in for InfluxDB in the tests, has no read API to try it on.
    return f"GET {url}: HTTP {status} (reachable; the token is checked by the first write)"


def _check_sqlite_readings(path: str) -> str:
    try:
        SqliteSink(path, counters=Counters()).close()
    except sqlite3.Error as exc:
        raise CheckFailed(f"storage.sqlite_path {path}: cannot open: {exc}") from None
    return f"storage.sqlite_path {path}: opened"


def check_alert_store(url: str) -> str:
    """Open the store as the service does (creating its table if missing) and read the open alerts."""
    shown = _without_password(url)
    try:
        store = open_store(url)
    except StoreOpenError as exc:  # one line naming the file or the server, never a password
        raise CheckFailed(f"alerts.store_url {shown}: {exc}") from None
    try:
        store.open_alerts()
    except (sqlite3.Error, psycopg.Error) as exc:
        first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]  # libpq adds hint lines
        raise CheckFailed(f"alerts.store_url {shown}: cannot read its alerts: {first_line}") from None
    finally:
        store.close()
    return f"alerts.store_url {shown}: opened"


def _without_password(url: str) -> str:
    """The URL with any password replaced by ***, so the check's output can be pasted into a ticket."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
