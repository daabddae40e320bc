"""Each alert's tags: the asset's topic segments (line, site, ...) and configured tags when it opened,
one row per tag so ``GET /alerts?tag=line:L2`` is an indexed lookup in both databases.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_tags",
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("alert_tags_lookup_idx", "alert_tags", ["name", "value", "alert_id"])


def downgrade() -> None:
    op.drop_index("alert_tags_lookup_idx", "alert_tags")
    op.drop_table("alert_tags")
