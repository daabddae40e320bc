"""Operators acknowledge, shelve and comment on alerts: their columns on alerts, and every action's history.

Alerts written before are unacknowledged, unshelved, with no history.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("acknowledged_at_ns", sa.BigInteger))
        batch.add_column(sa.Column("acknowledged_by", sa.Text))
        batch.add_column(sa.Column("shelved_until_ns", sa.BigInteger))
        batch.add_column(sa.Column("shelved_reason", sa.Text))
    op.create_table(
        "alert_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("at_ns", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("shelved_until_ns", sa.BigInteger),
        sqlite_autoincrement=True,
    )
    op.create_index("alert_history_alert_idx", "alert_history", ["alert_id", "id"])


def downgrade() -> None:
    op.drop_table("alert_history")
    with op.batch_alter_table("alerts") as batch:
        for column in ("shelved_reason", "shelved_until_ns", "acknowledged_by", "acknowledged_at_ns"):
            batch.drop_column(column)
