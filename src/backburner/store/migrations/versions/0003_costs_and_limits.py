"""Cost per model call, job deadlines, owner limits and spend, the shared rate limiter.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backburner.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("deadline_at", UtcDateTime()))
    with op.batch_alter_table("provider_calls") as batch:
        batch.add_column(sa.Column("completion_window", sa.String(10)))
        batch.add_column(sa.Column("service_tier", sa.String(20)))
        batch.add_column(sa.Column("cost_usd", sa.Float()))
        batch.add_column(sa.Column("list_cost_usd", sa.Float()))
    op.create_table(
        "owner_limits",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("max_running", sa.Integer()),
        sa.Column("monthly_budget_usd", sa.Float()),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "owner_spend",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("spent_usd", sa.Float(), nullable=False, server_default="0"),
    )
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("requests", sa.Float(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False, server_default="1"),
        sa.Column("blocked_until", UtcDateTime()),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("owner_spend")
    op.drop_table("owner_limits")
    with op.batch_alter_table("provider_calls") as batch:
        for column in ("list_cost_usd", "cost_usd", "service_tier", "completion_window"):
            batch.drop_column(column)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("deadline_at")
