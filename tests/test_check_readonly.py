"""`plantwatch check` changes nothing: it reads what exists and says whether what is missing can be created."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from servers import PG_URL
from test_check import _check, pg_alerts_url  # noqa: F401 - pg_alerts_url is a fixture used by name

from alerts.model import STATE_OPEN, Alert
from alerts.store import PostgresAlertStore, SqliteAlertStore
from ingest.sink import SqliteSink
from telemetry.counters import Counters

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, extra: str = "") -> Path:
    """Nothing listens on the broker's port: these tests are about the files."""
    path = tmp_path / "plant.yaml"
    path.write_text(f"mqtt: {{url: 'mqtt://127.0.0.1:1'}}\nstorage: {{kind: sqlite}}\n{extra}", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("model_dir", "line"),
    [
        (None, "ok detector.model_dir not set: learned baselines are not kept across restarts"),
        ("{tmp}", "ok detector.model_dir {tmp}: exists, writable"),
        ("{tmp}/models/line1", "ok detector.model_dir {tmp}/models/line1: will be created"),
        ("{tmp}/a-file/models", "FAIL detector.model_dir {tmp}/a-file/models: {tmp}/a-file is a file, not a folder"),
    ],
    ids=["unset", "exists", "missing", "under-a-file"],
)
def test_the_model_dir_line_says_whether_it_exists_or_can_be_created(
    model_dir: str | None, line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("x")
    extra = "" if model_dir is None else f"detector: {{model_dir: '{model_dir.format(tmp=tmp_path)}'}}\n"
    _, lines = _check(_config(tmp_path, extra), capsys)
    assert lines["models"] == line.format(tmp=tmp_path)
    assert not (tmp_path / "models").exists()


def _tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` and its bytes: what a check that changes nothing leaves as it was."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_existing_sqlite_files_are_read_not_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteAlertStore(data / "alerts.db")  # as the service leaves them: WAL mode, one alert open
    store.insert(Alert(None, "pump-1", "anomaly", STATE_OPEN, 1, 1, None, "warning", 3.0, 0.99, ()))
    store.close()
    SqliteSink(data / "readings.db", counters=Counters()).close()
    before = _tree(data)
    config = _config(
        tmp_path,
        f"storage: {{kind: sqlite, sqlite_path: '{data / 'readings.db'}'}}\n"
        f"alerts: {{store_url: 'sqlite:///{data / 'alerts.db'}'}}\n",
    )
    _, lines = _check(config, capsys)
    assert (
        lines["storage"] == f"ok storage.sqlite_path {data / 'readings.db'}: opened read-only; readings table present"
    )
    assert lines["alerts"] == f"ok alerts.store_url sqlite:///{data / 'alerts.db'}: opened read-only; 1 open alert(s)"
    assert _tree(data) == before  # no -wal or -shm file left behind either


def test_missing_sqlite_files_are_not_created_only_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """configs/docker.yaml's sqlite:////data/alerts.db made the check create /data and the file on the host."""
    config = _config(
        tmp_path,
        f"storage: {{kind: sqlite, sqlite_path: '{tmp_path / 'no-folder' / 'readings.db'}'}}\n"
        f"alerts: {{store_url: 'sqlite:///{tmp_path / 'data' / 'deeper' / 'alerts.db'}'}}\n",
    )
    _, lines = _check(config, capsys)
    # The alert store creates its folders (alerts.store); the readings file only itself (ingest.sink).
    assert lines["alerts"] == (
        f"ok alerts.store_url sqlite:///{tmp_path / 'data' / 'deeper' / 'alerts.db'}: no such file yet: "
        "will be created at start"
    )
    assert lines["storage"] == (
        f"FAIL storage.sqlite_path {tmp_path / 'no-folder' / 'readings.db'}: no such folder {tmp_path / 'no-folder'}"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plant.yaml"]


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "alerts.db").write_text("not SQLite")
    config = _config(tmp_path, f"alerts: {{store_url: 'sqlite:///{tmp_path / 'alerts.db'}'}}\n")
    _, lines = _check(config, capsys)
    assert lines["alerts"] == (
        f"FAIL alerts.store_url sqlite:///{tmp_path / 'alerts.db'}: cannot read it: file is not a database"
    )


def test_postgresql_is_read_and_the_missing_table_judged(
    tmp_path: Path,
    pg_alerts_url: str,  # noqa: F811 - the imported fixture: a fresh schema as search_path, no alerts table
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = pg_alerts_url.rpartition("%3D")[2]
    role = f"pw_noright_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
    try:
        # A user that may not create the table fails now, not at the first alert.
        as_role = pg_alerts_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
        _, lines = _check(_config(tmp_path, f"alerts: {{store_url: '{as_role}'}}\n"), capsys)
        assert lines["alerts"] == (
            f"FAIL alerts.store_url {as_role}: connected, but there is no alerts table and no right to create one "
            f"in schema {schema}"
        )
        # Once the service has created it, its open alerts are counted.
        store = PostgresAlertStore(PG_URL, schema=schema)
        store.insert(Alert(None, "pump-1", "anomaly", STATE_OPEN, 1, 1, None, "warning", 3.0, 0.99, ()))
        store.close()
        _, lines = _check(_config(tmp_path, f"alerts: {{store_url: '{pg_alerts_url}'}}\n"), capsys)
        assert lines["alerts"] == f"ok alerts.store_url {pg_alerts_url}: connected; 1 open alert(s)"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
