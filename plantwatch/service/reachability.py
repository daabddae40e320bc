"""Can the service reach what its settings name? The broker, the time-series database, the alert store.

Each check tries what the service will do at start-up, short of changing anything: it connects, reads
what exists (SQLite files read-only) and, for what the service would create (a SQLite file, the
alerts table, the models folder), says whether it could. It returns one line saying what answered, or
raises :class:`CheckFailed` with one line saying what was tried and what went wrong
(``plantwatch check`` prints them).
"""

from __future__ import annotations

import socket
import sqlite3
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg

from alerts.model import STATE_OPEN
from alerts.store import sqlite_file
from ingest.connack import NoSession, connect_and_await_connack, stop_network_loop
from ingest.mqtt_source import MqttOptions
from plantwatch.paths import why_not_creatable, why_not_writable_file, why_not_writable_folder
from plantwatch.settings import Settings
from plantwatch.settings_errors import mask_password

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
    try:  # TCP first, so that a failure after it can be named a TLS failure
        socket.create_connection((options.host, options.port), timeout=timeout_s).close()
    except OSError as exc:
        raise CheckFailed(f"{where}: cannot connect: {exc.strerror or exc}") from None
    try:
        connect_and_await_connack(
            client, options.host, options.port, keepalive=options.keepalive_s, timeout_s=timeout_s
        )
    except NoSession as exc:  # no CONNACK, or a refusal
        raise CheckFailed(f"{where}: {exc}") from None
    except OSError as exc:  # ssl.SSLError is an OSError
        cause = getattr(exc, "reason", None) or exc.strerror or exc
        if options.tls:
            raise CheckFailed(f"{where}: TLS handshake failed: {cause} (does the port speak TLS?)") from None
        raise CheckFailed(f"{where}: cannot connect: {cause}") from None
    finally:
        stop_network_loop(client)
    auth = f" as {options.username}" if options.username else ""
    return f"{where}: MQTT {options.protocol} CONNECT accepted{auth}"


def check_storage(settings: Settings, timeout_s: float = TIMEOUT_S) -> str:
    if settings.storage.kind == "sqlite":  # the service creates the file, not its folder (ingest.sink)
        path = settings.storage.sqlite_path
        return _check_sqlite(f"storage.sqlite_path {path}", Path(path), "readings", why_not_writable_file)
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


def check_alert_store(url: str) -> str:
    """Read the alert store without changing it: its open alerts, or whether the service can create it."""
    shown = mask_password(url)  # the check's lines are meant to be pasted into a ticket
    name = f"alerts.store_url {shown}"
    path = sqlite_file(url)
    if path is not None:  # the service creates the file's folders too (alerts.store)
        return _check_sqlite(name, Path(path), "alerts", why_not_creatable)
    return _check_postgres(name, url)


def _check_sqlite(name: str, path: Path, table: str, why_not_created: Callable[[Path], str | None]) -> str:
    """An existing file is opened read-only and read; for a missing one, whether the service can create it."""
    if path.is_file():
        return f"{name}: {_read_sqlite(name, path, table)}"
    problem = "is a folder, not a file" if path.is_dir() else why_not_created(path)
    if problem is not None:
        raise CheckFailed(f"{name}: {problem}")
    return f"{name}: no such file yet: will be created at start"


def _read_sqlite(name: str, path: Path, table: str) -> str:
    # Read-only, and no file left behind: a read-only connection to a WAL database creates its -wal and
    # -shm files and, unlike the last writer, does not remove them. Without a -wal file no writer is
    # connected (the service's opens one at once), so the file can be read as immutable, creating nothing.
    live = path.with_name(f"{path.name}-wal").exists()
    uri = f"{path.resolve().as_uri()}?{'mode=ro' if live else 'immutable=1'}"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=TIMEOUT_S)) as db:
            listed = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
            if not listed.fetchone()[0]:
                return f"opened read-only; no {table} table yet: will be created at start"
            if table != "alerts":
                return f"opened read-only; {table} table present"
            (open_alerts,) = db.execute("SELECT count(*) FROM alerts WHERE state = ?", (STATE_OPEN,)).fetchone()
    except sqlite3.Error as exc:  # not a database, locked, unreadable
        raise CheckFailed(f"{name}: cannot read it: {exc}") from None
    return f"opened read-only; {open_alerts} open alert(s)"


def _check_postgres(name: str, url: str) -> str:
    """Connect and look: the alerts table and its open alerts, or whether the service may create the table."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=int(TIMEOUT_S)) as conn:
            exists, schema, may_create = conn.execute(
                "SELECT to_regclass('alerts') IS NOT NULL, current_schema(), "
                "coalesce(has_schema_privilege(current_schema(), 'CREATE'), false)"
            ).fetchone() or (False, None, False)
            if exists:
                query = "SELECT count(*) FROM alerts WHERE state = %s"
                (open_alerts,) = conn.execute(query, (STATE_OPEN,)).fetchone() or (0,)
    except psycopg.Error as exc:  # unreachable, refused login, no such database, no right to read
        raise CheckFailed(f"{name}: {' '.join(str(exc).split())}") from None  # libpq's hint is on a second line
    if exists:
        return f"{name}: connected; {open_alerts} open alert(s)"
    if not may_create:
        where = f"schema {schema}" if schema else "any schema of its search_path"
        raise CheckFailed(f"{name}: connected, but there is no alerts table and no right to create one in {where}")
    return f"{name}: connected; no alerts table yet: will be created at start (schema {schema})"


def check_model_dir(model_dir: str | None) -> str:
    """Whether the folder for the learned models exists and is writable, or can be created; touches nothing."""
    if model_dir is None:
        return "detector.model_dir not set: learned baselines are not kept across restarts"
    path = Path(model_dir)
    problem = why_not_writable_folder(path)
    if problem is not None:
        raise CheckFailed(f"detector.model_dir {model_dir}: {problem}")
    return f"detector.model_dir {model_dir}: " + ("exists, writable" if path.is_dir() else "will be created")
