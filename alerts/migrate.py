"""Bring an alert store's database to the newest schema with Alembic, keeping every alert in it.

Databases written before plantwatch used Alembic have the ``alerts`` table but no ``alembic_version``:
they are stamped with the revision their columns match (0001 without ``unseen_operating_point``,
0002 with it) and upgraded from there, so an upgrade of plantwatch never loses an alert.

Alembic (with Mako, which it loads) holds 11 MB once imported, for as long as the service runs. A
store already at the newest revision, every start but the first after an upgrade, needs none of it:
the revision is read with SQLAlchemy and compared with :data:`HEAD`, and Alembic is imported only
when there is something to do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0007"  # the newest revision in migrations/versions (a test holds it to Alembic's own head)
# The revision a table written before Alembic is at, by whether it has this column.
_BEFORE_ALEMBIC = (("unseen_operating_point", "0002"), (None, "0001"))


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
    if before == HEAD:
        connection.commit()  # what the caller did before (a schema created, a lock taken) ends here too
        return
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
