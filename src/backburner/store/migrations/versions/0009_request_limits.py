"""An owner's own API request rate (requests per minute per key), set by admins.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("owner_limits") as batch:
        batch.add_column(sa.Column("requests_per_minute", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("owner_limits") as batch:
        batch.drop_column("requests_per_minute")
