"""Several services opening one new PostgreSQL alert store at once (the workers of a site starting
together) all open it: creating the schema and migrating the tables is done one at a time. Before,
they raced in CREATE SCHEMA and Alembic's CREATE TABLE ("duplicate key value violates unique
constraint"), and a worker of the scale-out test exited at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from servers import PG_URL

from alerts.store import PostgresAlertStore

OPEN_AT = """
import sys, time
from alerts.store import PostgresAlertStore
time.sleep(max(float(sys.argv[3]) - time.time(), 0))  # all at once
PostgresAlertStore(sys.argv[1], schema=sys.argv[2]).close()
"""


def test_services_opening_a_new_store_at_once_all_open_it(pg_schema: str) -> None:
    at = time.time() + 3.0  # after every process has imported what it needs
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, PG_URL, pg_schema, str(at)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outcomes = [(proc.wait(60), proc.stdout.read().decode() if proc.stdout else "") for proc in procs]
    assert all(code == 0 for code, _ in outcomes), outcomes
    store = PostgresAlertStore(PG_URL, schema=pg_schema)
    try:
        assert store.open_alerts() == []
    finally:
        store.close()
