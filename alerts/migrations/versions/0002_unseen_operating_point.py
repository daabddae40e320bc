"""Alerts say whether their peak row lay at an operating point the baseline never covered.

Rows written before were not judged: they read false.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("unseen_operating_point", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("unseen_operating_point")
