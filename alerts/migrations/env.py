"""Alembic's environment for the alert store: run on the connection ``alerts.migrate`` hands it.

Never run from the command line with an ``alembic.ini``: the store upgrades its database itself when
it opens (:func:`alerts.migrate.upgrade`), so every installation is at the newest revision.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
