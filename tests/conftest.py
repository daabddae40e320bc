"""Shared pytest fixtures: real Mosquitto and VictoriaMetrics servers (session-scoped).

Tests that need a broker/database they can restart use ``tests.servers.run_mosquitto`` /
``run_victoria`` directly with their own ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import MosquittoServer, VictoriaServer, run_mosquitto, run_victoria

from alerts.store import SqliteAlertStore


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    with run_mosquitto(tmp_path_factory.mktemp("mosquitto")) as server:
        yield server


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaServer]:
    with run_victoria(tmp_path_factory.mktemp("victoria")) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteAlertStore]:
    """An empty SQLite alert store (the API tests'; tests/test_alert_store.py has its own for both engines)."""
    s = SqliteAlertStore(tmp_path / "alerts.db")
    yield s
    s.close()
