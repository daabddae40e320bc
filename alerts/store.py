"""Alert persistence: one schema (``alerts.schema``), stored in SQLite (single node) or PostgreSQL (shared).

SQLAlchemy Core builds every statement from one description of the tables, for both databases, and
the Alembic migrations in ``alerts/migrations`` create and upgrade them when a store opens
(:mod:`alerts.migrate`), so upgrading plantwatch keeps the alerts it stored. The pipeline thread
writes a handful of rows per second at most (the lifecycle coalesces) and the API threads read:
SQLAlchemy's small connection pool serves both, and a connection the server dropped is replaced
before use (``pool_pre_ping``).
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    bindparam,
    create_engine,
    event,
    exists,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from alerts import migrate
from alerts.model import ACKNOWLEDGED, ACTIONS, SHELVED, STATE_OPEN, UNSHELVED, Alert, AlertAction
from alerts.schema import alert_history, alert_tags, output_cursors
from alerts.schema import alerts as table
from detector.types import Contribution

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

    def update_many(self, alerts: Sequence[Alert]) -> None:
        """:meth:`update` of each, in one transaction: all are written or none."""
        ...

    def list(
        self,
        asset: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        since_ns: int | None = None,
        limit: int = 1000,
        acknowledged: bool | None = None,
        updated_since_ns: int | None = None,
        after: tuple[int, int] | None = None,
        severity: str | None = None,
        until_ns: int | None = None,
        tag: tuple[str, str] | None = None,
    ) -> builtins.list[Alert]:
        """Alerts matching every given filter, newest (by start) first, or with ``updated_since_ns`` those
        changed since, oldest change first; ``after``: where the previous page ended (see ``_ordered``);
        ``until_ns``: started at or before it; ``tag``: ``(name, value)`` among the alert's tags."""
        ...

    def changed_after(self, after: tuple[int, int]) -> bool:
        """Whether any alert changed after this place in the order of changes, ``(updated_at_ns, id)``
        as ``list(after=...)`` takes it (``(t, 0)``: at or after ``t``). One indexed probe: a poller
        that is up to date learns there is nothing new without a query for the page."""
        ...

    reads_are_local: bool
    """True when a read only touches a local file (SQLite): quick enough to make on the event loop."""

    def get(self, alert_id: int) -> Alert | None:
        """The alert with this id, or None."""
        ...

    def act(self, action: AlertAction, shelved_reason: str | None = None) -> Alert | None:
        """Record an operator's action and apply it to the alert (None: no such alert)."""
        ...

    def history(self, alert_id: int) -> builtins.list[AlertAction]:
        """The alert's operator actions, oldest first."""
        ...

    def marked(self, action: str) -> set[int]:
        """The ids of every alert with this action in its history (e.g. marked a false alarm)."""
        ...

    def open_alerts(self) -> builtins.list[Alert]: ...

    def latest_activity(self) -> dict[tuple[str, str], int]:
        """(asset, kind) -> the latest ``last_activity_ns`` of its alerts (event time)."""
        ...

    def delivered(self, output: str) -> tuple[int, int] | None:
        """Where the output of this name has delivered up to: ``(updated_at_ns, id)`` of the last alert
        it handed on, as ``list(after=...)`` takes it; None before its first delivery."""
        ...

    def mark_delivered(self, output: str, upto: tuple[int, int]) -> None:
        """Remember that the output has delivered every change up to ``upto``."""
        ...

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


def _to_row(alert: Alert) -> dict[str, Any]:
    return {
        "asset": alert.asset,
        "kind": alert.kind,
        "state": alert.state,
        "started_at_ns": alert.started_at_ns,
        "last_anomalous_at_ns": alert.last_anomalous_at_ns,
        "resolved_at_ns": alert.resolved_at_ns,
        "last_activity_ns": alert.last_activity_ns,
        "severity": alert.severity,
        "peak_score": alert.peak_score,
        "peak_probability": alert.peak_probability,
        "top_sensors": _encode_sensors(alert.top_sensors),
        "unseen_operating_point": alert.unseen_operating_point,
    }


def _from_row(row: Row[Any]) -> Alert:
    m = row._mapping
    return Alert(
        id=int(m["id"]),
        asset=m["asset"],
        kind=m["kind"],
        state=m["state"],
        started_at_ns=int(m["started_at_ns"]),
        last_anomalous_at_ns=int(m["last_anomalous_at_ns"]),
        resolved_at_ns=_int_or_none(m["resolved_at_ns"]),
        severity=m["severity"],
        peak_score=float(m["peak_score"]),
        peak_probability=float(m["peak_probability"]),
        top_sensors=_decode_sensors(m["top_sensors"]),
        unseen_operating_point=bool(m["unseen_operating_point"]),
        acknowledged_at_ns=_int_or_none(m["acknowledged_at_ns"]),
        acknowledged_by=m["acknowledged_by"],
        shelved_until_ns=_int_or_none(m["shelved_until_ns"]),
        shelved_reason=m["shelved_reason"],
        updated_at_ns=_int_or_none(m["updated_at_ns"]),
    )


def _with_tags(conn: Connection, found: builtins.list[Alert]) -> builtins.list[Alert]:
    """``found`` with each alert's tags, read in one query."""
    if not found:
        return found
    query = select(alert_tags).where(alert_tags.c.alert_id.in_([a.id for a in found]))
    tags: dict[int, builtins.list[tuple[str, str]]] = {}
    for row in conn.execute(query):
        tags.setdefault(int(row.alert_id), []).append((row.name, row.value))
    return [dataclasses.replace(a, tags=tuple(sorted(tags[a.id]))) if a.id in tags else a for a in found]


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _ordered(query: Select[Any], updated_since_ns: int | None, after: tuple[int, int] | None) -> Select[Any]:
    """Newest start first; with ``updated_since_ns``, what changed at or after it, oldest change first
    (a poller pages forward). ``after``: where the previous page ended, ``(started_at_ns, id)`` or with
    ``updated_since_ns`` ``(updated_at_ns, id)`` of its last alert (keyset pagination: a stable order,
    whatever is written meanwhile)."""
    if updated_since_ns is None:
        if after is not None:
            query = query.where(tuple_(table.c.started_at_ns, table.c.id) < after)
        return query.order_by(table.c.started_at_ns.desc(), table.c.id.desc())
    query = query.where(table.c.updated_at_ns >= updated_since_ns)
    if after is not None:
        query = query.where(tuple_(table.c.updated_at_ns, table.c.id) > after)
    return query.order_by(table.c.updated_at_ns, table.c.id)


# Built once: the poll of every up-to-date poller runs it (bound as (stamp, id) > after, as _ordered).
_CHANGED_AFTER = (
    select(table.c.id)
    .where(table.c.updated_at_ns >= bindparam("stamp"))
    .where(tuple_(table.c.updated_at_ns, table.c.id) > tuple_(bindparam("stamp"), bindparam("id")))
    .limit(1)
)


def _operator_columns(action: AlertAction, shelved_reason: str | None) -> dict[str, Any]:
    """What an action changes on the alert's row (a comment changes nothing there)."""
    if action.action == ACKNOWLEDGED:
        return {"acknowledged_at_ns": action.at_ns, "acknowledged_by": action.actor}
    if action.action == SHELVED:
        return {"shelved_until_ns": action.shelved_until_ns, "shelved_reason": shelved_reason}
    if action.action == UNSHELVED:
        return {"shelved_until_ns": None, "shelved_reason": None}
    return {}


def _require_id(alert: Alert) -> int:
    if alert.id is None:
        raise ValueError("cannot update an alert that has no id; insert it first")
    return alert.id


# -- one store over either database ----------------------------------------------------------------


class _SqlAlertStore:
    """The store over an engine whose database :func:`alerts.migrate.upgrade` has brought up to date.

    Every write stamps the row's ``updated_at_ns`` inside a transaction that holds the writers' lock
    until it commits, with a stamp above every stamp already stored: the order of stamps is the
    order of commits. A reader of ``updated_since`` (a poller, the event stream, the alert outputs)
    that has seen a stamp has seen every change stamped before it, so none is skipped, whichever
    thread or process wrote it, and however the wall clock steps.
    """

    reads_are_local = False

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writers = threading.Lock()

    @contextmanager
    def _writing(self) -> Iterator[tuple[Connection, int]]:
        """A write transaction and its change stamp: the wall clock, or above the newest stamp stored."""
        with self._writers, self._engine.begin() as conn:
            self._lock_other_writers(conn)
            newest = conn.execute(select(func.max(table.c.updated_at_ns))).scalar()
            yield conn, max(time.time_ns(), int(newest or 0) + 1)

    def _lock_other_writers(self, conn: Connection) -> None:
        """Hold off other processes' writers until this transaction ends (the threads' lock covers this one)."""

    def insert(self, alert: Alert) -> Alert:
        with self._writing() as (conn, stamp):
            row = _to_row(alert) | {"updated_at_ns": stamp}
            new_id = conn.execute(insert(table).values(row).returning(table.c.id)).scalar_one()
            if alert.tags:
                conn.execute(insert(alert_tags), [{"alert_id": new_id, "name": n, "value": v} for n, v in alert.tags])
        return dataclasses.replace(alert, id=int(new_id), updated_at_ns=stamp)

    def update(self, alert: Alert) -> None:
        self.update_many([alert])

    def update_many(self, alerts: Sequence[Alert]) -> None:
        """One transaction for all: a commit costs far more than a row, and an alert storm updates
        every asset's alert at once. Each row gets its own stamp, above every stamp stored before."""
        if not alerts:
            return
        with self._writing() as (conn, stamp):
            for i, alert in enumerate(alerts):
                alert_id = _require_id(alert)
                row = _to_row(alert) | {"updated_at_ns": stamp + i}
                if conn.execute(update(table).where(table.c.id == alert_id).values(row)).rowcount == 0:
                    raise LookupError(f"no alert with id {alert_id}")  # rolls back the others too

    def list(
        self,
        asset: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        since_ns: int | None = None,
        limit: int = 1000,
        acknowledged: bool | None = None,
        updated_since_ns: int | None = None,
        after: tuple[int, int] | None = None,
        severity: str | None = None,
        until_ns: int | None = None,
        tag: tuple[str, str] | None = None,
    ) -> builtins.list[Alert]:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        query = select(table)
        for column, value in (("asset", asset), ("state", state), ("kind", kind), ("severity", severity)):
            if value is not None:
                query = query.where(table.c[column] == value)
        if since_ns is not None:
            query = query.where(table.c.last_activity_ns >= since_ns)
        if until_ns is not None:
            query = query.where(table.c.started_at_ns <= until_ns)
        if tag is not None:
            tagged = alert_tags.c
            query = query.where(
                exists().where(tagged.alert_id == table.c.id, tagged.name == tag[0], tagged.value == tag[1])
            )
        if acknowledged is not None:
            ack = table.c.acknowledged_at_ns
            query = query.where(ack.is_not(None) if acknowledged else ack.is_(None))
        query = _ordered(query, updated_since_ns, after).limit(limit)
        with self._engine.connect() as conn:
            return _with_tags(conn, [_from_row(r) for r in conn.execute(query)])

    def changed_after(self, after: tuple[int, int]) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(_CHANGED_AFTER, {"stamp": after[0], "id": after[1]}).first() is not None

    def get(self, alert_id: int) -> Alert | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.id == alert_id)).first()
            return None if row is None else _with_tags(conn, [_from_row(row)])[0]

    def act(self, action: AlertAction, shelved_reason: str | None = None) -> Alert | None:
        if action.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action.action!r}")
        with self._writing() as (conn, stamp):  # the row and its history change together, or neither
            changes = _operator_columns(action, shelved_reason) | {"updated_at_ns": stamp}
            if conn.execute(update(table).where(table.c.id == action.alert_id).values(changes)).rowcount == 0:
                return None  # no such alert: nothing written
            conn.execute(insert(alert_history).values(dataclasses.asdict(action)))
        return self.get(action.alert_id)

    def history(self, alert_id: int) -> builtins.list[AlertAction]:
        query = select(alert_history).where(alert_history.c.alert_id == alert_id).order_by(alert_history.c.id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AlertAction(
                alert_id=int(r.alert_id),
                at_ns=int(r.at_ns),
                actor=r.actor,
                action=r.action,
                comment=r.comment,
                shelved_until_ns=_int_or_none(r.shelved_until_ns),
            )
            for r in rows
        ]

    def marked(self, action: str) -> set[int]:
        query = select(alert_history.c.alert_id).where(alert_history.c.action == action).distinct()
        with self._engine.connect() as conn:
            return {int(alert_id) for alert_id in conn.execute(query).scalars()}

    def open_alerts(self) -> builtins.list[Alert]:
        return self.list(state=STATE_OPEN, limit=1_000_000)

    def latest_activity(self) -> dict[tuple[str, str], int]:
        query = select(table.c.asset, table.c.kind, func.max(table.c.last_activity_ns)).group_by(
            table.c.asset, table.c.kind
        )
        with self._engine.connect() as conn:
            return {(asset, kind): int(latest) for asset, kind, latest in conn.execute(query)}

    def delivered(self, output: str) -> tuple[int, int] | None:
        query = select(output_cursors).where(output_cursors.c.name == output)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row.updated_at_ns), int(row.alert_id))

    def mark_delivered(self, output: str, upto: tuple[int, int]) -> None:
        values = {"updated_at_ns": upto[0], "alert_id": upto[1]}
        with self._engine.begin() as conn:  # one writer per output name: update, else insert
            found = conn.execute(update(output_cursors).where(output_cursors.c.name == output).values(values))
            if found.rowcount == 0:
                conn.execute(insert(output_cursors).values(name=output, **values))

    def close(self) -> None:
        self._engine.dispose()


# -- SQLite --------------------------------------------------------------------------------------


class SqliteAlertStore(_SqlAlertStore):
    """SQLite in WAL mode so readers never block the pipeline's writes for long."""

    reads_are_local = True  # a WAL reader waits for no writer

    def __init__(self, path: str | Path) -> None:
        path = str(path)
        _make_folder(path)
        # check_same_thread=False: the pool hands a connection to one thread at a time.
        engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        try:
            with engine.connect() as conn:
                migrate.upgrade(conn)
        except (SQLAlchemyError, sqlite3.Error) as exc:  # not a database, a folder, read-only, locked
            engine.dispose()
            verb = "open" if "unable to open" in _reason(exc) else "use"
            raise StoreOpenError(f"cannot {verb} the SQLite file {path}: {_reason(exc)}") from exc
        super().__init__(engine)

    def _lock_other_writers(self, conn: Connection) -> None:
        # The file's write lock now, before the stamp is read, not at the first write (SQLite's default).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")  # another process may hold the file
    cursor.close()


# -- PostgreSQL ----------------------------------------------------------------------------------


class PostgresAlertStore(_SqlAlertStore):
    """PostgreSQL through psycopg 3.

    ``schema`` puts the tables in their own schema (created if missing): lets several deployments, or
    parallel test runs, share one database without colliding.
    """

    reads_are_local = False  # a round trip, and up to connect_timeout_s when the server is away

    def __init__(self, url: str, *, schema: str | None = None, connect_timeout_s: int = 10) -> None:
        import psycopg  # here, not at the top: 9 MB that a SQLite store never needs

        connect_args: dict[str, Any] = {"connect_timeout": connect_timeout_s, "application_name": "plantwatch"}
        if schema:
            connect_args["options"] = f"-csearch_path={schema}"
        engine = create_engine(
            make_url(url).set(drivername="postgresql+psycopg"),
            connect_args=connect_args,
            pool_pre_ping=True,  # a connection the server dropped is replaced before it is used
            pool_size=2,
        )
        try:
            with engine.connect() as conn:
                # Services opening a new database at once (the workers of one site) raced in CREATE
                # SCHEMA and in Alembic's CREATE TABLE ("duplicate key value violates unique
                # constraint"): one at a time, until upgrade() commits.
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
                if schema:
                    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                migrate.upgrade(conn)
        except (SQLAlchemyError, psycopg.Error) as exc:  # unreachable, refused login, no database, no rights
            engine.dispose()
            where = _server(url)
            raise StoreOpenError(f"cannot open the alert store in PostgreSQL at {where}: {_reason(exc)}") from exc
        super().__init__(engine)

    def _lock_other_writers(self, conn: Connection) -> None:
        # Services sharing one database each stamp their writes: a transaction-scoped advisory lock
        # orders them (released at commit; readers never wait for it).
        conn.execute(select(func.pg_advisory_xact_lock(_WRITERS_LOCK_KEY)))


# pg_advisory_xact_lock's key for the alert writers: any fixed number that nothing else locks.
_WRITERS_LOCK_KEY = 0x706C616E74  # "plant"
# and for opening (creating, migrating) the tables.
_MIGRATION_LOCK_KEY = _WRITERS_LOCK_KEY + 1


def _make_folder(path: str) -> None:
    """The SQLite file's folder, created when missing; StoreOpenError naming it when it cannot be."""
    if path == ":memory:":
        return
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only mount
        reason = "a file of that name is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise StoreOpenError(f"cannot create the folder {folder} for the SQLite file {path}: {reason}") from exc


def _reason(exc: BaseException) -> str:
    """The driver's own words for a failure SQLAlchemy wrapped, on one line."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    return _one_line(orig if orig is not None else exc)


def _server(url: str) -> str:
    """host:port/database of a PostgreSQL URL: what to check, without the password the URL may hold."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "(the URL does not parse)"
    user = f"{params['user']}@" if params.get("user") else ""
    return f"{user}{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


def _one_line(exc: BaseException) -> str:
    # libpq's messages carry a tab-indented hint on a second line.
    return " ".join(str(exc).split())
