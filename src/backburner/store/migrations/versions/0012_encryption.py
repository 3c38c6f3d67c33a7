"""Encryption at rest: the keys that sealed data here; room for sealed webhook secrets;
no uniqueness on delivery targets, which are sealed now (random nonces make equal targets
differ; a notification is expanded once, in one transaction, and its batch deduplicated).

Values written before this revision stay readable as they are; `backburner encryption
rotate` seals them.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encryption_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("check_value", sa.Text(), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
    )
    with op.batch_alter_table("webhook_secrets") as batch:
        batch.alter_column("secret", type_=sa.Text(), existing_nullable=False)
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_deliveries_target", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.create_unique_constraint(
            "uq_deliveries_target", ["notification_id", "channel", "target"]
        )
    with op.batch_alter_table("webhook_secrets") as batch:
        batch.alter_column("secret", type_=sa.String(100), existing_nullable=False)
    op.drop_table("encryption_keys")
