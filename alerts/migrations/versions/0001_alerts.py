"""The alerts table as plantwatch first created it (before alerts were judged for unseen operating points).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("started_at_ns", sa.BigInteger, nullable=False),
        sa.Column("last_anomalous_at_ns", sa.BigInteger, nullable=False),
        sa.Column("resolved_at_ns", sa.BigInteger),
        sa.Column("last_activity_ns", sa.BigInteger, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("peak_score", sa.Float(precision=53), nullable=False),
        sa.Column("peak_probability", sa.Float(precision=53), nullable=False),
        sa.Column("top_sensors", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("alerts_state_idx", "alerts", ["state"])
    op.create_index("alerts_asset_started_idx", "alerts", ["asset", "started_at_ns"])
    op.create_index("alerts_activity_idx", "alerts", ["last_activity_ns"])


def downgrade() -> None:
    op.drop_table("alerts")
