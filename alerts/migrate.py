"""Bring an alert store's database to the newest schema with Alembic, keeping every alert in it.

Databases written before plantwatch used Alembic have the ``alerts`` table but no ``alembic_version``:
they are stamped with the revision their columns match (0001 without ``unseen_operating_point``,
0002 with it) and upgraded from there, so an upgrade of plantwatch never loses an alert.
"""

from __future__ import annotations

import logging
from pathlib import Path

# Alembic logs each plugin it loads, on import, and each step it takes at INFO: a service's log wants
# only what changed (logged below). Set before its modules are imported.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Connection, inspect  # noqa: E402

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# The revision a table written before Alembic is at, by whether it has this column.
_BEFORE_ALEMBIC = (("unseen_operating_point", "0002"), (None, "0001"))


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision."""
    script = ScriptDirectory(str(MIGRATIONS))
    newest = script.get_current_head()
    assert newest is not None
    return newest


def current(connection: Connection) -> str | None:
    """The revision the database is at (None: not under Alembic)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Create or upgrade the tables on ``connection`` (committed when this returns)."""
    config = _config(connection)
    before = current(connection)
    if before is None and inspect(connection).has_table("alerts"):
        columns = {c["name"] for c in inspect(connection).get_columns("alerts")}
        before = next(rev for column, rev in _BEFORE_ALEMBIC if column is None or column in columns)
        command.stamp(config, before)
    command.upgrade(config, "head")
    connection.commit()
    after = current(connection)
    if before is not None and after != before:
        log.warning("alert store upgraded from schema revision %s to %s, every alert kept", before, after)
