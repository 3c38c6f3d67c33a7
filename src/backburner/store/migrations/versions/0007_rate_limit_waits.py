"""How often and how long the shared rate limiter made callers wait, for /metrics.

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
    with op.batch_alter_table("rate_limits") as batch:
        batch.add_column(sa.Column("waits", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("waited_seconds", sa.Float(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("rate_limits") as batch:
        batch.drop_column("waited_seconds")
        batch.drop_column("waits")
