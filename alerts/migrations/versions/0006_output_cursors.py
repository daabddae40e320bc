"""Where each alert output (MQTT, webhooks) has delivered up to in the order of changes, so a restart
neither loses nor repeats a batch it finished.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "output_cursors",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("updated_at_ns", sa.BigInteger, nullable=False),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("output_cursors")
