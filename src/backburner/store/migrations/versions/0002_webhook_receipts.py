"""Receipts of provider webhooks, so a redelivered event is acted on once.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backburner.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_receipts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
    )
    op.create_index("ix_webhook_receipts_received", "webhook_receipts", ["received_at"])


def downgrade() -> None:
    op.drop_table("webhook_receipts")
