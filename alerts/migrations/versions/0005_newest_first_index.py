"""An index for GET /alerts' newest-first pages: with 100,000 alerts a page of 100 took 103 ms (a scan and
a sort of every row; bench/alerts_api.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("alerts_started_idx", "alerts", ["started_at_ns", "id"])


def downgrade() -> None:
    op.drop_index("alerts_started_idx", "alerts")
