"""Shared pytest fixtures: real Mosquitto and VictoriaMetrics servers (session-scoped).

Tests that need a broker/database they can restart use ``tests.servers.run_mosquitto`` /
``run_victoria`` directly with their own ``tmp_path``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from servers import PG_URL, MosquittoServer, VictoriaServer, run_mosquitto, run_victoria, skip_or_fail

from alerts.store import PostgresAlertStore, SqliteAlertStore


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    with run_mosquitto(tmp_path_factory.mktemp("mosquitto")) as server:
        yield server


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaServer]:
    with run_victoria(tmp_path_factory.mktemp("victoria")) as server:
        yield server


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema unique to this test in the PostgreSQL at PG_URL, dropped afterwards, so parallel runs
    never collide. Skipped locally when the server is down; a failure under CI=true."""
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    schema = f"pw_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteAlertStore]:
    """An empty alert store, in SQLite and in PostgreSQL (the API's and the lifecycle's tests run on both)."""
    if request.param == "sqlite":
        s = SqliteAlertStore(tmp_path / "alerts.db")
    else:  # the same contract; typed as the SQLite store the tests were written against
        s = PostgresAlertStore(PG_URL, schema=request.getfixturevalue("pg_schema"))  # type: ignore[assignment]
    yield s
    s.close()
