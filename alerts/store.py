"""Alert persistence: one schema, stored in SQLite (single node) or PostgreSQL (shared).

Both stores serialise access with a lock around a single connection: the pipeline thread writes
a handful of rows per second at most (the lifecycle coalesces), and the API thread reads, so a
pool would add a dependency without buying anything measurable.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from alerts.model import STATE_OPEN, Alert
from detector.types import Contribution

_COLUMNS = (
    "asset",
    "kind",
    "state",
    "started_at_ns",
    "last_anomalous_at_ns",
    "resolved_at_ns",
    "last_activity_ns",  # denormalised so the `since` filter can use an index
    "severity",
    "peak_score",
    "peak_probability",
    "top_sensors",
    "unseen_operating_point",
)
_SELECT_COLUMNS = ("id", *_COLUMNS)

# Column types shared by both engines; only the id column differs.
_SCHEMA_BODY = """
    asset TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at_ns BIGINT NOT NULL,
    last_anomalous_at_ns BIGINT NOT NULL,
    resolved_at_ns BIGINT,
    last_activity_ns BIGINT NOT NULL,
    severity TEXT NOT NULL,
    peak_score DOUBLE PRECISION NOT NULL,
    peak_probability DOUBLE PRECISION NOT NULL,
    top_sensors TEXT NOT NULL"""

# Columns added to the schema after its first version, as ``(name, type)``: a table created before one
# gains it when the store opens, and the rows it holds read the default (an alert written before
# alerts were judged for an unseen operating point was not judged one).
_ADDED_COLUMNS = (("unseen_operating_point", "BOOLEAN NOT NULL DEFAULT FALSE"),)
_SCHEMA_BODY += "".join(f",\n    {column} {kind}" for column, kind in _ADDED_COLUMNS) + "\n"

SUPPORTED_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


class StoreOpenError(Exception):
    """The store cannot be opened; the message is one line naming the file or the server (never a password)."""


class AlertStore(Protocol):
    def insert(self, alert: Alert) -> Alert:
        """Persist a new alert; returns it with its assigned id."""
        ...

    def update(self, alert: Alert) -> None:
        """Overwrite the stored alert with the same id."""
        ...

    def list(
        self,
        asset: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        since_ns: int | None = None,
        limit: int = 1000,
    ) -> builtins.list[Alert]:
        """Alerts matching every given filter, newest (by start) first."""
        ...

    def get(self, alert_id: int) -> Alert | None:
        """The alert with this id, or None."""
        ...

    def open_alerts(self) -> builtins.list[Alert]: ...

    def close(self) -> None: ...


def sqlite_file(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL (relative, or absolute with a fourth slash); None for other schemes."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None


def open_store(url: str) -> AlertStore:
    """Build a store from a URL: sqlite:///rel.db, sqlite:////abs.db, postgresql://..., postgres://..."""
    path = sqlite_file(url)
    if path is not None:
        if not path:
            raise ValueError(f"sqlite URL has no path: {url!r}")
        return SqliteAlertStore(path)
    if url.startswith(SUPPORTED_SCHEMES):
        return PostgresAlertStore(url)
    raise ValueError(f"unsupported alert store URL {url!r}; supported schemes: {', '.join(SUPPORTED_SCHEMES)}")


# -- row <-> Alert ---------------------------------------------------------------------------------


def _encode_sensors(sensors: tuple[Contribution, ...]) -> str:
    # Every field of Contribution; rows written before a field existed decode with its default.
    return json.dumps([dataclasses.asdict(c) for c in sensors])


def _decode_sensors(text: str) -> tuple[Contribution, ...]:
    return tuple(Contribution(**item) for item in json.loads(text))


def _to_row(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.asset,
        alert.kind,
        alert.state,
        alert.started_at_ns,
        alert.last_anomalous_at_ns,
        alert.resolved_at_ns,
        alert.last_activity_ns,
        alert.severity,
        alert.peak_score,
        alert.peak_probability,
        _encode_sensors(alert.top_sensors),
        alert.unseen_operating_point,
    )


def _from_row(row: tuple[Any, ...] | sqlite3.Row) -> Alert:
    (id_, asset, kind, state, started, last_anom, resolved, _activity, severity, score, prob, sensors, unseen) = row
    return Alert(
        id=int(id_),
        asset=asset,
        kind=kind,
        state=state,
        started_at_ns=int(started),
        last_anomalous_at_ns=int(last_anom),
        resolved_at_ns=None if resolved is None else int(resolved),
        severity=severity,
        peak_score=float(score),
        peak_probability=float(prob),
        top_sensors=_decode_sensors(sensors),
        unseen_operating_point=bool(unseen),  # SQLite keeps a boolean as 0 or 1
    )


def _where(
    placeholder: str, asset: str | None, state: str | None, kind: str | None, since_ns: int | None
) -> tuple[str, builtins.list[Any]]:
    """WHERE clause + params for the list filters; `placeholder` is the driver's (? or %s)."""
    clauses: builtins.list[str] = []
    params: builtins.list[Any] = []
    for column, value in (("asset", asset), ("state", state), ("kind", kind)):
        if value is not None:
            clauses.append(f"{column} = {placeholder}")
            params.append(value)
    if since_ns is not None:
        clauses.append(f"last_activity_ns >= {placeholder}")
        params.append(since_ns)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def _require_id(alert: Alert) -> int:
    if alert.id is None:
        raise ValueError("cannot update an alert that has no id; insert it first")
    return alert.id


_ORDER = " ORDER BY started_at_ns DESC, id DESC"
_SELECT = ", ".join(_SELECT_COLUMNS)
_ASSIGN_TEMPLATE = ", ".join(f"{c} = {{ph}}" for c in _COLUMNS)


# -- SQLite --------------------------------------------------------------------------------------


class SqliteAlertStore:
    """SQLite in WAL mode so readers never block the pipeline's writes for long."""

    def __init__(self, path: str | Path) -> None:
        path = str(path)
        self._lock = threading.Lock()
        self._conn = _open_sqlite(path)
        try:
            with self._lock:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA busy_timeout=5000")  # another process may hold the file
                self._conn.execute(
                    f"CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY AUTOINCREMENT,{_SCHEMA_BODY})"
                )
                present = {row[1] for row in self._conn.execute("PRAGMA table_info(alerts)")}
                for column, kind in _ADDED_COLUMNS:
                    if column not in present:
                        self._conn.execute(f"ALTER TABLE alerts ADD COLUMN {column} {kind}")
                for ddl in _index_ddl():
                    self._conn.execute(ddl)
        except sqlite3.Error as exc:  # not a database, read-only, locked beyond busy_timeout
            self._conn.close()
            raise StoreOpenError(f"cannot use the SQLite file {path}: {exc}") from exc

    def insert(self, alert: Alert) -> Alert:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            cur = self._conn.execute(
                f"INSERT INTO alerts ({', '.join(_COLUMNS)}) VALUES ({placeholders})", _to_row(alert)
            )
            new_id = cur.lastrowid
        assert new_id is not None  # always set after a successful single-row INSERT
        return _with_id(alert, new_id)

    def update(self, alert: Alert) -> None:
        alert_id = _require_id(alert)
        with self._lock:
            cur = self._conn.execute(
                f"UPDATE alerts SET {_ASSIGN_TEMPLATE.format(ph='?')} WHERE id = ?",
                (*_to_row(alert), alert_id),
            )
        if cur.rowcount == 0:
            raise LookupError(f"no alert with id {alert_id}")

    def list(
        self,
        asset: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        since_ns: int | None = None,
        limit: int = 1000,
    ) -> builtins.list[Alert]:
        _check_limit(limit)
        where, params = _where("?", asset, state, kind, since_ns)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_SELECT} FROM alerts{where}{_ORDER} LIMIT ?", (*params, limit)
            ).fetchall()
        return [_from_row(r) for r in rows]

    def get(self, alert_id: int) -> Alert | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_SELECT} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else _from_row(row)

    def open_alerts(self) -> builtins.list[Alert]:
        return self.list(state=STATE_OPEN, limit=1_000_000)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# -- PostgreSQL ----------------------------------------------------------------------------------


class PostgresAlertStore:
    """PostgreSQL via psycopg 3, one autocommit connection guarded by a lock.

    `schema` puts the table in its own schema (created if missing): lets several deployments, or
    parallel test runs, share one database without colliding.
    """

    def __init__(self, url: str, *, schema: str | None = None, connect_timeout_s: int = 10) -> None:
        self._url = url
        self._schema = schema
        self._connect_timeout_s = connect_timeout_s
        self._table = sql.Identifier(schema, "alerts") if schema else sql.Identifier("alerts")
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        try:
            with self._lock:
                self._create_table()
        except psycopg.Error as exc:  # unreachable, unknown host, refused login, no such database, no rights
            self.close()
            raise StoreOpenError(
                f"cannot open the alert store in PostgreSQL at {_server(url)}: {_one_line(exc)}"
            ) from exc

    def _create_table(self) -> None:
        conn = self._connection()
        if self._schema:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema)))
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id BIGSERIAL PRIMARY KEY," + _SCHEMA_BODY + ")").format(self._table)
        )
        for column, kind in _ADDED_COLUMNS:
            conn.execute(sql.SQL(f"ALTER TABLE {{}} ADD COLUMN IF NOT EXISTS {column} {kind}").format(self._table))
        for ddl in _index_ddl():
            # Index DDL is shared with SQLite; only the table reference needs qualifying.
            conn.execute(sql.SQL(ddl.replace(" ON alerts", " ON {}")).format(self._table))

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The live connection, reconnecting if the server restarted since the last call."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._connect_timeout_s)
        return self._conn

    def _execute(self, query: sql.Composed, params: tuple[Any, ...] = ()) -> psycopg.Cursor[tuple[Any, ...]]:
        """Run one statement; caller holds the lock. A failed connection is dropped for the next call.

        No automatic retry: an INSERT whose commit reply was lost could otherwise be duplicated.
        """
        conn = self._connection()
        try:
            return conn.execute(query, params)
        except psycopg.OperationalError:
            conn.close()
            raise

    def insert(self, alert: Alert) -> Alert:
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            self._table,
            sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS),
            sql.SQL(", ").join(sql.Placeholder() for _ in _COLUMNS),
        )
        with self._lock:
            row = self._execute(query, _to_row(alert)).fetchone()
        assert row is not None  # RETURNING always yields the inserted row
        return _with_id(alert, int(row[0]))

    def update(self, alert: Alert) -> None:
        alert_id = _require_id(alert)
        query = sql.SQL("UPDATE {} SET " + _ASSIGN_TEMPLATE.format(ph="%s") + " WHERE id = %s").format(self._table)
        with self._lock:
            rowcount = self._execute(query, (*_to_row(alert), alert_id)).rowcount
        if rowcount == 0:
            raise LookupError(f"no alert with id {alert_id}")

    def list(
        self,
        asset: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        since_ns: int | None = None,
        limit: int = 1000,
    ) -> builtins.list[Alert]:
        _check_limit(limit)
        where, params = _where("%s", asset, state, kind, since_ns)
        query = sql.SQL("SELECT " + _SELECT + " FROM {}" + where + _ORDER + " LIMIT %s").format(self._table)
        with self._lock:
            rows = self._execute(query, (*params, limit)).fetchall()
        return [_from_row(r) for r in rows]

    def get(self, alert_id: int) -> Alert | None:
        query = sql.SQL("SELECT " + _SELECT + " FROM {} WHERE id = %s").format(self._table)
        with self._lock:
            row = self._execute(query, (alert_id,)).fetchone()
        return None if row is None else _from_row(row)

    def open_alerts(self) -> builtins.list[Alert]:
        return self.list(state=STATE_OPEN, limit=1_000_000)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _index_ddl() -> tuple[str, ...]:
    # Open alerts are reloaded at start-up; the API filters by asset and by recent activity.
    return (
        "CREATE INDEX IF NOT EXISTS alerts_state_idx ON alerts (state)",
        "CREATE INDEX IF NOT EXISTS alerts_asset_started_idx ON alerts (asset, started_at_ns)",
        "CREATE INDEX IF NOT EXISTS alerts_activity_idx ON alerts (last_activity_ns)",
    )


def _with_id(alert: Alert, alert_id: int) -> Alert:
    return dataclasses.replace(alert, id=alert_id)


def _open_sqlite(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only mount
            reason = "a file of that name is in the way" if isinstance(exc, FileExistsError) else exc.strerror
            raise StoreOpenError(f"cannot create the folder {folder} for the SQLite file {path}: {reason}") from exc
    try:
        # check_same_thread=False: the lock, not thread affinity, is what keeps this safe.
        # isolation_level=None: autocommit; every statement here is a single-row change.
        return sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:  # e.g. the path is a folder
        raise StoreOpenError(f"cannot open the SQLite file {path}: {exc}") from exc


def _server(url: str) -> str:
    """host:port/database of a PostgreSQL URL: what to check, without the password the URL may hold."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "(the URL does not parse)"
    user = f"{params['user']}@" if params.get("user") else ""
    return f"{user}{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


def _one_line(exc: BaseException) -> str:
    # libpq's messages carry a tab-indented hint on a second line.
    return " ".join(str(exc).split())
