"""Bring an alert store's database to the newest schema with Alembic, keeping every alert in it.

Databases written before plantwatch used Alembic have the ``alerts`` table but no ``alembic_version``:
they are stamped with the revision their columns match (0001 without ``unseen_operating_point``,
0002 with it) and upgraded from there, so an upgrade of plantwatch never loses an alert.

Alembic (with Mako, which it loads) holds 11 MB once imported, for as long as the service runs, so
it is imported only to upgrade a store written by an earlier plantwatch:

- a store already at the newest revision (every start but the first after an upgrade) has its
  revision read with SQLAlchemy and compared with :data:`HEAD`;
- a new, empty database gets the tables :mod:`alerts.schema` describes, and is stamped at
  :data:`HEAD` (Alembic's own recipe for a database built from scratch, with the stamp written
  here). ``tests/test_alert_store.py`` holds the two ways to the same tables, indexes and keys.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, inspect, text

from alerts import schema

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0007"  # the newest revision in migrations/versions (a test holds it to Alembic's own head)
# The revision a table written before Alembic is at, by whether it has this column.
_BEFORE_ALEMBIC = (("unseen_operating_point", "0002"), (None, "0001"))

# Alembic's version table, as its ``stamp`` creates it: the same name, type and key constraint.
_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def _quiet_alembic() -> None:
    """Alembic logs each plugin it loads, on import, and each step it takes at INFO: a service's log
    wants only what changed (logged below). Set before its modules are imported."""
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _config(connection: Connection) -> Config:
    _quiet_alembic()
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision, as Alembic finds it."""
    _quiet_alembic()
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    newest = script.get_current_head()
    assert newest is not None
    return newest


def current(connection: Connection) -> str | None:
    """The revision the database is at (None: not under Alembic)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


def upgrade(connection: Connection) -> None:
    """Create or upgrade the tables on ``connection`` (committed when this returns)."""
    before = current(connection)
    if before is None and not set(schema.metadata.tables) & set(inspect(connection).get_table_names()):
        create_newest(connection)
    elif before != HEAD:
        upgrade_with_alembic(connection, before)
    connection.commit()  # what the caller did before (a schema created, a lock taken) ends here too


def create_newest(connection: Connection) -> None:
    """A new database: the newest tables, stamped at :data:`HEAD`, without Alembic."""
    schema.metadata.create_all(connection)
    _VERSION.create(connection)
    connection.execute(_VERSION.insert().values(version_num=HEAD))


def upgrade_with_alembic(connection: Connection, before: str | None) -> None:
    """Alembic's migrations from ``before`` (None: not under Alembic, or a new database) to the newest."""
    config = _config(connection)
    from alembic import command

    if before is None and inspect(connection).has_table("alerts"):
        columns = {c["name"] for c in inspect(connection).get_columns("alerts")}
        before = next(rev for column, rev in _BEFORE_ALEMBIC if column is None or column in columns)
        command.stamp(config, before)
    command.upgrade(config, "head")
    connection.commit()
    after = current(connection)
    if before is not None and after != before:
        log.warning("alert store upgraded from schema revision %s to %s, every alert kept", before, after)
