"""AlertStore contract, run against SQLite and the real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import sql
from servers import PG_URL, free_port
from sqlalchemy import Connection, Engine, create_engine, inspect, make_url

from alerts import migrate, schema
from alerts.model import Alert, AlertAction
from alerts.store import AlertStore, PostgresAlertStore, SqliteAlertStore, StoreOpenError, open_store
from detector.types import Contribution

S = 1_000_000_000


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStore]:
    if request.param == "sqlite":
        s: AlertStore = SqliteAlertStore(tmp_path / "alerts.db")
    else:
        s = PostgresAlertStore(PG_URL, schema=request.getfixturevalue("pg_schema"))
    yield s
    s.close()


def make_alert(asset: str = "pump-1", start_s: int = 100, **changes: object) -> Alert:
    alert = Alert(
        id=None,
        asset=asset,
        kind="anomaly",
        state="open",
        started_at_ns=start_s * S,
        last_anomalous_at_ns=start_s * S + 5 * S,
        resolved_at_ns=None,
        severity="warning",
        peak_score=3.5,
        peak_probability=0.97,
        top_sensors=(
            Contribution("vibration", 0.7, "high", 9.1, 1.0, 4.0),
            Contribution("temp", 0.3, "low", 10.5, 20.0, 60.0),
        ),
    )
    return dataclasses.replace(alert, **changes)  # type: ignore[arg-type]


def test_insert_assigns_ids_and_round_trips_every_field(store: AlertStore) -> None:
    first = store.insert(make_alert())
    second = store.insert(make_alert(asset="pump-2", unseen_operating_point=True))
    assert first.id is not None and second.id is not None and first.id != second.id
    assert store.list(asset="pump-1") == [first]  # includes top_sensors decoded from JSON
    assert store.list(asset="pump-2") == [second] and second.unseen_operating_point
    store.update(dataclasses.replace(second, unseen_operating_point=False))
    assert store.list(asset="pump-2")[0].unseen_operating_point is False


def test_update_overwrites_state_and_resolution(store: AlertStore) -> None:
    alert = store.insert(make_alert())
    resolved = dataclasses.replace(
        alert, state="resolved", resolved_at_ns=200 * S, severity="critical", peak_score=9.0, top_sensors=()
    )
    store.update(resolved)
    assert store.list() == [resolved]
    assert store.open_alerts() == []


def test_update_many_writes_all_in_one_transaction_or_none(store: AlertStore) -> None:
    first, second = store.insert(make_alert()), store.insert(make_alert(asset="pump-2"))
    before = max(a.updated_at_ns or 0 for a in store.list())
    store.update_many([dataclasses.replace(first, peak_score=7.0), dataclasses.replace(second, severity="critical")])
    stored = {a.asset: a for a in store.list()}
    assert stored["pump-1"].peak_score == 7.0 and stored["pump-2"].severity == "critical"
    stamps = {stored["pump-1"].updated_at_ns or 0, stored["pump-2"].updated_at_ns or 0}
    assert len(stamps) == 2 and min(stamps) > before  # each change has its own place in the order of changes
    with pytest.raises(LookupError):
        store.update_many([dataclasses.replace(first, peak_score=1.0), make_alert(id=987_654)])
    assert first.id is not None and (again := store.get(first.id)) is not None
    assert again.peak_score == 7.0  # rolled back with the unknown one


def test_get_reads_one_alert_by_id(store: AlertStore) -> None:
    first = store.insert(make_alert())
    second = store.insert(make_alert(asset="pump-2"))
    assert second.id is not None and store.get(second.id) == second
    assert first.id is not None and store.get(first.id) == first
    assert store.get(second.id + 1000) is None


def test_operator_actions_change_their_columns_and_history_only(store: AlertStore) -> None:
    alert = store.insert(make_alert())
    assert alert.id is not None
    acked = store.act(AlertAction(alert.id, 1_000 * S, "shift-a", "acknowledged", "looking at it"))
    assert acked is not None and acked.acknowledged_at_ns == 1_000 * S and acked.acknowledged_by == "shift-a"
    # The lifecycle's next write of the open alert (it never saw the acknowledgement) keeps it.
    store.update(dataclasses.replace(alert, peak_score=9.9))
    again = store.get(alert.id)
    assert again is not None and again.peak_score == 9.9 and again.acknowledged_by == "shift-a"
    shelved = store.act(AlertAction(alert.id, 1_001 * S, "shift-a", "shelved", shelved_until_ns=5_000 * S), "pump out")
    assert shelved is not None and shelved.shelved_until_ns == 5_000 * S and shelved.shelved_reason == "pump out"
    assert shelved.shelved(4_999 * S) and not shelved.shelved(5_000 * S)
    store.act(AlertAction(alert.id, 1_002 * S, "shift-b", "commented", "fitter on site"))
    unshelved = store.act(AlertAction(alert.id, 1_003 * S, "shift-b", "unshelved"))
    assert unshelved is not None and unshelved.shelved_until_ns is None and unshelved.shelved_reason is None
    assert [(a.actor, a.action, a.comment) for a in store.history(alert.id)] == [
        ("shift-a", "acknowledged", "looking at it"),
        ("shift-a", "shelved", None),
        ("shift-b", "commented", "fitter on site"),
        ("shift-b", "unshelved", None),
    ]
    assert store.history(alert.id)[1].shelved_until_ns == 5_000 * S
    other = store.insert(make_alert(asset="pump-2"))
    assert store.list(acknowledged=True) == [store.get(alert.id)]
    assert store.list(acknowledged=False) == [other]
    assert store.act(AlertAction(987_654, 1, "x", "commented", "?")) is None
    with pytest.raises(ValueError, match="action must be one of"):
        store.act(AlertAction(alert.id, 1, "x", "deleted"))


def test_pages_keep_a_stable_order_and_pollers_get_what_changed(store: AlertStore) -> None:
    alerts = [store.insert(make_alert(asset=f"pump-{i}", start_s=100 + i // 2)) for i in range(7)]  # ties
    newest_first = store.list()
    assert [a.id for a in newest_first] == [
        a.id for a in sorted(alerts, key=lambda a: (-a.started_at_ns, -(a.id or 0)))
    ]
    pages, after = [], None
    while True:
        page = store.list(limit=3, after=after)
        pages.append(page)
        if len(page) < 3:
            break
        after = (page[-1].started_at_ns, page[-1].id or 0)
        store.insert(make_alert(asset="late", start_s=999))  # newer than every page: never in the later ones
    assert [a for page in pages for a in page] == newest_first
    mark = max(a.updated_at_ns or 0 for a in store.list(limit=100)) + 1
    changed = dataclasses.replace(alerts[2], peak_score=8.0)
    store.update(changed)
    assert [a.id for a in store.list(updated_since_ns=mark)] == [alerts[2].id]
    assert alerts[4].id is not None
    store.act(AlertAction(alerts[4].id, 5 * S, "shift-a", "commented", "seen"))
    since = store.list(updated_since_ns=mark)
    assert [a.id for a in since] == [alerts[2].id, alerts[4].id]  # oldest change first
    last = since[0]
    assert store.list(updated_since_ns=mark, after=(last.updated_at_ns or 0, last.id or 0)) == [since[1]]


def test_changed_after_says_whether_anything_follows_a_place_in_the_order_of_changes(store: AlertStore) -> None:
    assert not store.changed_after((0, 0))  # nothing stored
    first, second = store.insert(make_alert(asset="a")), store.insert(make_alert(asset="b"))
    assert first.updated_at_ns is not None and second.updated_at_ns is not None and first.id and second.id
    assert store.changed_after((0, 0))
    assert store.changed_after((first.updated_at_ns, 0))  # (t, 0): at or after t
    assert store.changed_after((first.updated_at_ns, first.id))  # the second follows the first
    assert not store.changed_after((second.updated_at_ns, second.id))  # a poller up to date
    assert not store.changed_after((second.updated_at_ns + 1, 0))
    store.act(AlertAction(first.id, 5 * S, "shift-a", "commented", "seen"))  # the first changes again
    assert store.changed_after((second.updated_at_ns, second.id))
    (again,) = store.list(updated_since_ns=second.updated_at_ns, after=(second.updated_at_ns, second.id))
    assert again.id == first.id and again.updated_at_ns is not None
    assert not store.changed_after((again.updated_at_ns, again.id))


def test_update_of_unknown_or_unsaved_alert_raises(store: AlertStore) -> None:
    with pytest.raises(LookupError):
        store.update(make_alert(id=987_654))
    with pytest.raises(ValueError, match="no id"):
        store.update(make_alert())


def test_list_filters_and_orders_newest_first(store: AlertStore) -> None:
    old = store.insert(make_alert(start_s=100))
    mid = store.insert(make_alert(start_s=200, asset="pump-2", kind="maintenance"))
    new = store.insert(make_alert(start_s=300))
    store.update(done := dataclasses.replace(old, state="resolved", resolved_at_ns=400 * S))

    assert [a.id for a in store.list()] == [new.id, mid.id, done.id]
    assert [a.id for a in store.list(asset="pump-1")] == [new.id, done.id]
    assert [a.id for a in store.list(state="resolved")] == [done.id]
    assert [a.id for a in store.list(kind="maintenance")] == [mid.id]
    assert [a.id for a in store.list(asset="pump-1", state="open")] == [new.id]
    assert [a.id for a in store.list(limit=2)] == [new.id, mid.id]
    assert [a.id for a in store.open_alerts()] == [new.id, mid.id]


def test_since_uses_last_activity(store: AlertStore) -> None:
    # last_anomalous_at = start + 5 s; a resolved alert's activity is its resolved_at.
    early = store.insert(make_alert(start_s=100))  # active until 105 s
    late = store.insert(make_alert(start_s=200))  # active until 205 s
    store.update(resolved := dataclasses.replace(early, state="resolved", resolved_at_ns=300 * S))

    assert [a.id for a in store.list(since_ns=205 * S)] == [late.id, resolved.id]
    assert [a.id for a in store.list(since_ns=206 * S)] == [resolved.id]
    assert store.list(since_ns=301 * S) == []


def test_limit_must_be_positive(store: AlertStore) -> None:
    with pytest.raises(ValueError):
        store.list(limit=0)


def test_concurrent_writer_and_reader(store: AlertStore) -> None:
    """The pipeline thread writes while the API thread reads over the same store object."""
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(40):
                alert = store.insert(make_alert(asset=f"a{i}", start_s=i))
                store.update(dataclasses.replace(alert, peak_score=float(i)))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(40):
                store.list(limit=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list()) == 40


def test_each_output_keeps_its_own_place_in_the_order_of_changes(store: AlertStore) -> None:
    assert store.delivered("mqtt") is None
    store.mark_delivered("mqtt", (5 * S, 3))
    store.mark_delivered("webhook:cmms", (6 * S, 4))
    store.mark_delivered("mqtt", (7 * S, 9))
    assert (store.delivered("mqtt"), store.delivered("webhook:cmms")) == ((7 * S, 9), (6 * S, 4))


def test_a_poller_following_the_order_of_changes_misses_none(
    store: AlertStore, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Writers on several threads and on a second store over the same database (another process,
    for PostgreSQL; a second file handle, for SQLite) race a poller that pages by its last change:
    the poller still sees every alert's final state, because stamps are handed out in commit order."""
    if isinstance(store, SqliteAlertStore):
        other: AlertStore = SqliteAlertStore(tmp_path / "alerts.db")
    else:
        other = PostgresAlertStore(PG_URL, schema=request.getfixturevalue("pg_schema"))
    seen: dict[int, int] = {}
    done = threading.Event()

    def write(on: AlertStore, writer: int) -> None:
        for n in range(100):  # new alerts, and a comment on each: changes no later write covers
            alert = on.insert(make_alert(asset=f"w{writer}-{n}"))
            on.act(AlertAction(alert.id or 0, n, f"w{writer}", "commented", str(n)))

    def poll() -> None:
        after = None
        while True:
            last_round = done.is_set()
            for alert in store.list(updated_since_ns=0, after=after, limit=50):
                seen[alert.id or 0] = alert.updated_at_ns or 0
                after = (alert.updated_at_ns or 0, alert.id or 0)
            if last_round:
                return

    writers = [threading.Thread(target=write, args=(on, k)) for k, on in enumerate([store, store, other, other])]
    poller = threading.Thread(target=poll)
    for t in [poller, *writers]:
        t.start()
    for t in writers:
        t.join()
    done.set()
    poller.join()
    other.close()
    assert seen == {a.id: a.updated_at_ns for a in store.list(limit=1000)}


def test_sqlite_schema_creation_is_idempotent_and_persistent(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "alerts.db"  # parent directory is created on demand
    first = SqliteAlertStore(path)
    saved = first.insert(make_alert())
    first.close()
    again = SqliteAlertStore(path)
    assert again.open_alerts() == [saved]
    again.close()


def test_postgres_schema_creation_is_idempotent(pg_schema: str) -> None:
    first = PostgresAlertStore(PG_URL, schema=pg_schema)
    saved = first.insert(make_alert())
    first.close()
    again = PostgresAlertStore(PG_URL, schema=pg_schema)
    assert again.open_alerts() == [saved]
    again.close()


def _first_schema(table: str, id_type: str) -> tuple[str, str]:
    """The alerts table as the first schema made it, before unseen_operating_point, and one row for it."""
    create = (
        f"CREATE TABLE {table} (id {id_type} PRIMARY KEY, asset TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"
        " started_at_ns BIGINT NOT NULL, last_anomalous_at_ns BIGINT NOT NULL, resolved_at_ns BIGINT,"
        " last_activity_ns BIGINT NOT NULL, severity TEXT NOT NULL, peak_score DOUBLE PRECISION NOT NULL,"
        " peak_probability DOUBLE PRECISION NOT NULL, top_sensors TEXT NOT NULL)"
    )
    sensors = json.dumps(
        [{"sensor": "flow", "share": 1, "direction": "high", "value": 3, "expected_low": 1, "expected_high": 2}]
    )
    insert = (
        f"INSERT INTO {table} (asset, kind, state, started_at_ns, last_anomalous_at_ns, last_activity_ns, severity,"
        f" peak_score, peak_probability, top_sensors) VALUES ('pump-9', 'anomaly', 'open', 5, 6, 6, 'warning', 2.5,"
        f" 0.99, '{sensors}')"
    )
    return create, insert


def _reads_the_old_row_and_writes_new_ones(store: AlertStore) -> None:
    (old,) = store.list()
    assert old.asset == "pump-9" and old.unseen_operating_point is False  # the default of a row written before
    assert old.top_sensors == (Contribution("flow", 1.0, "high", 3.0, 1.0, 2.0),)
    new = store.insert(make_alert(unseen_operating_point=True))
    assert store.list(asset="pump-1") == [new]


def _sqlite_made_by(path: Path, statements: list[str] | tuple[str, ...]) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)


def _postgres_made_by(schema: str, statements: list[str] | tuple[str, ...]) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for statement in statements:
            conn.execute(statement)


def _postgres_dropped(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_a_sqlite_table_of_the_first_schema_gains_the_new_column(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    _sqlite_made_by(path, _first_schema("alerts", "INTEGER"))
    store = SqliteAlertStore(path)
    _reads_the_old_row_and_writes_new_ones(store)
    store.close()
    again = SqliteAlertStore(path)  # opening it again adds nothing twice
    assert len(again.list()) == 2
    again.close()


def test_a_postgres_table_of_the_first_schema_gains_the_new_column(pg_schema: str) -> None:
    _postgres_made_by(pg_schema, _first_schema(f'"{pg_schema}".alerts', "BIGSERIAL"))
    store = PostgresAlertStore(PG_URL, schema=pg_schema)
    _reads_the_old_row_and_writes_new_ones(store)
    store.close()
    again = PostgresAlertStore(PG_URL, schema=pg_schema)
    assert len(again.list()) == 2
    again.close()


def _todays_schema_before_alembic(table: str, id_type: str) -> list[str]:
    """The table as the hand-written store of 2026-12 made it (every column, no alembic_version), with a row."""
    create, insert = _first_schema(table, id_type)
    return [
        create,
        f"ALTER TABLE {table} ADD COLUMN unseen_operating_point BOOLEAN NOT NULL DEFAULT FALSE",
        f"CREATE INDEX alerts_state_idx ON {table} (state)",
        insert,
        f"UPDATE {table} SET unseen_operating_point = TRUE",
    ]


def test_a_sqlite_database_of_the_store_before_alembic_is_upgraded_keeping_its_alerts(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    _sqlite_made_by(path, _todays_schema_before_alembic("alerts", "INTEGER"))
    store = SqliteAlertStore(path)
    (old,) = store.list()
    assert old.asset == "pump-9" and old.unseen_operating_point is True
    store.insert(make_alert())
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrate.head(),)]
    again = SqliteAlertStore(path)
    assert len(again.list()) == 2
    again.close()


def test_a_postgres_database_of_the_store_before_alembic_is_upgraded_keeping_its_alerts(pg_schema: str) -> None:
    _postgres_made_by(pg_schema, _todays_schema_before_alembic(f'"{pg_schema}".alerts', "BIGSERIAL"))
    store = PostgresAlertStore(PG_URL, schema=pg_schema)
    (old,) = store.list()
    assert old.unseen_operating_point is True
    assert old.id is not None and store.insert(make_alert()).id == old.id + 1  # the sequence carries on
    store.close()


def _empty_database(engine: str, tmp_path: Path, name: str, request: pytest.FixtureRequest) -> Engine:
    """An engine on a new, empty database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if engine == "sqlite":
        made = create_engine(f"sqlite:///{tmp_path / name}.db")
    else:
        where = f"{request.getfixturevalue('pg_schema')}_{name}"
        _postgres_made_by(where, [])
        request.addfinalizer(lambda: _postgres_dropped(where))
        url = make_url(PG_URL).set(drivername="postgresql+psycopg")
        made = create_engine(url, connect_args={"options": f"-csearch_path={where}"})
    request.addfinalizer(made.dispose)  # before the schema is dropped: finalizers run last first
    return made


def _structure(conn: Connection) -> dict[str, tuple[object, ...]]:
    """Every table's columns, keys and indexes as the database reports them (and, in SQLite, whether
    the table says AUTOINCREMENT, which decides whether ids are ever reused)."""
    found = inspect(conn)
    tables: dict[str, tuple[object, ...]] = {}
    for table in sorted(found.get_table_names()):
        columns = [(c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in found.get_columns(table)]
        foreign = [
            (f["constrained_columns"], f["referred_table"], f["referred_columns"])
            for f in found.get_foreign_keys(table)
        ]
        indexes = sorted((i["name"], i["column_names"], i["unique"]) for i in found.get_indexes(table))
        unique = sorted(str(u) for u in found.get_unique_constraints(table))
        made = ""
        if conn.dialect.name == "sqlite":
            made = str(conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar())
        keys = found.get_pk_constraint(table)
        tables[table] = (columns, keys, foreign, indexes, unique, "AUTOINCREMENT" in made)
    return tables


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_the_migrations_and_a_new_store_build_what_the_schema_describes(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """alerts.schema (what the queries are built from) and the newest migration agree, column by column,
    and a new store, created from alerts.schema without Alembic, gets the same tables, keys and indexes."""
    with _empty_database(engine, tmp_path, "migrated", request).connect() as conn:
        migrate.upgrade_with_alembic(conn, None)
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
        migrated = _structure(conn)
    with _empty_database(engine, tmp_path, "new", request).connect() as conn:
        migrate.upgrade(conn)  # an empty database: created from alerts.schema and stamped
        assert _structure(conn) == migrated
        assert migrate.current(conn) == migrate.HEAD
        migrate.upgrade_with_alembic(conn, migrate.HEAD)  # Alembic finds it at its head: nothing to do
        assert _structure(conn) == migrated


def test_postgres_reconnects_after_connection_loss(pg_schema: str) -> None:
    store = PostgresAlertStore(PG_URL, schema=pg_schema)
    saved = store.insert(make_alert())
    with psycopg.connect(PG_URL, autocommit=True) as admin:  # the server drops the store's connections
        dropped = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'plantwatch' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert dropped
    assert store.list() == [saved]
    store.close()


def test_open_store_sqlite_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:///data/rel.db")
    assert isinstance(rel, SqliteAlertStore)
    rel.close()
    assert (tmp_path / "data" / "rel.db").exists()

    absolute = tmp_path / "abs.db"
    abs_store = open_store(f"sqlite:///{absolute}")  # absolute path -> four slashes
    assert f"sqlite:///{absolute}".startswith("sqlite:////")
    abs_store.close()
    assert absolute.exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_postgres(scheme: str, pg_schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    # libpq's `options` puts the unqualified table into the throwaway schema.
    url = PG_URL.replace("postgresql://", f"{scheme}://") + f"?options=-csearch_path%3D{pg_schema}"
    store = open_store(url)
    assert isinstance(store, PostgresAlertStore)
    saved = store.insert(make_alert())
    assert store.list() == [saved]
    store.close()


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db", "sqlite:///", "alerts.db", ""])
def test_open_store_rejects_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite|postgres"):
        open_store(url)


def test_unreachable_postgres_is_one_line_naming_the_server_not_the_password() -> None:
    url = f"postgresql://plantwatch:hunter2@127.0.0.1:{free_port()}/alerts"  # nothing listens there
    with pytest.raises(StoreOpenError) as info:
        open_store(url)
    message = str(info.value)
    assert "\n" not in message and "hunter2" not in message
    assert "PostgreSQL at plantwatch@127.0.0.1:" in message and "/alerts" in message and "refused" in message


def test_missing_postgres_database_is_named(pg_schema: str) -> None:  # pg_schema: the server is up
    url = PG_URL.rsplit("/", 1)[0] + "/no_such_database_pw"
    with pytest.raises(StoreOpenError, match=r'database "no_such_database_pw" does not exist'):
        open_store(url)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda db: db.mkdir(), "cannot open the SQLite file {db}: unable to open database file"),  # a folder
        (lambda db: db.write_text("not sqlite"), "cannot use the SQLite file {db}: file is not a database"),
    ],
)
def test_unopenable_sqlite_file_is_named(tmp_path: Path, make: Callable[[Path], object], message: str) -> None:
    db = tmp_path / "alerts.db"
    make(db)
    with pytest.raises(StoreOpenError) as info:
        open_store(f"sqlite:///{db}")
    assert str(info.value) == message.format(db=db)


def test_sqlite_folder_blocked_by_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(StoreOpenError, match=r"cannot create the folder .*data for the SQLite file .*: a file of"):
        open_store(f"sqlite:///{tmp_path / 'data' / 'alerts.db'}")


def test_head_is_alembics_newest_revision() -> None:
    assert migrate.head() == migrate.HEAD  # a new migration must move HEAD too


def test_a_new_store_and_one_at_the_newest_revision_open_without_loading_alembic_or_psycopg(tmp_path: Path) -> None:
    # Alembic (11 MB) and psycopg (9 MB) would stay in the service's memory for nothing.
    db = tmp_path / "alerts.db"
    code = (
        "import sys; from alerts.store import SqliteAlertStore; s = SqliteAlertStore(sys.argv[1]); "
        "print(len(s.list()), sorted(m for m in ('alembic', 'mako', 'psycopg') if m in sys.modules))"
    )
    for _new_then_opened_again in range(2):
        out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["0", "[]"]
    with sqlite3.connect(db) as made:
        assert made.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrate.HEAD,)]
