"""Can the service reach what its settings name? The broker, the time-series database, the alert store.

Each check tries what the service will do at start-up and returns one line saying what answered, or
raises :class:`CheckFailed` with one line saying what was tried and what went wrong
(``plantwatch check`` prints them).
"""

from __future__ import annotations

import socket
import sqlite3
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from alerts.store import StoreOpenError, open_store
from ingest.mqtt_source import MqttOptions
from ingest.sink import SqliteSink
from plantwatch.paths import why_not_writable_folder
from plantwatch.settings import Settings
from plantwatch.settings_errors import mask_password
from telemetry.counters import Counters

# How long one server may take to answer; a plant's broker or database answers in milliseconds.
TIMEOUT_S = 5.0


class CheckFailed(Exception):
    """One check did not pass; the message says what was tried and what went wrong."""


def check_broker(options: MqttOptions, timeout_s: float = TIMEOUT_S) -> str:
    """An MQTT CONNECT with the service's protocol, TLS and credentials, answered by a CONNACK.

    The client id is the service's plus ``-check`` and the session is a clean one: connecting under
    the service's own id would take its persistent session over and disconnect a running service.
    """
    where = options.url
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
    shown = mask_password(url)  # the check's lines are meant to be pasted into a ticket
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


def check_model_dir(model_dir: str | None) -> str:
    """Whether the folder for the learned models exists and is writable, or can be created; touches nothing."""
    if model_dir is None:
        return "detector.model_dir not set: learned baselines are not kept across restarts"
    path = Path(model_dir)
    problem = why_not_writable_folder(path)
    if problem is not None:
        raise CheckFailed(f"detector.model_dir {model_dir}: {problem}")
    return f"detector.model_dir {model_dir}: " + ("exists, writable" if path.is_dir() else "will be created")
