"""Alerts record when their row last changed (wall clock), so a poller can ask for what changed since.

Rows written before take their last activity (event time, which live equals the wall clock).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("updated_at_ns", sa.BigInteger))
    op.execute("UPDATE alerts SET updated_at_ns = last_activity_ns")
    op.create_index("alerts_updated_idx", "alerts", ["updated_at_ns", "id"])


def downgrade() -> None:
    op.drop_index("alerts_updated_idx", "alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("updated_at_ns")
