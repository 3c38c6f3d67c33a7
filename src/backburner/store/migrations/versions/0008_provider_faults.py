"""Provider faults: whether a job's error was worth a retry, what a call's retries cost,
and model calls made outside a job (the quick path).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # Whether running the job again could have succeeded (transient) or not.
        batch.add_column(sa.Column("error_retryable", sa.Boolean()))
    with op.batch_alter_table("provider_calls") as batch:
        # Responses the call had (1 + the ones asked again); existing rows had one each.
        batch.add_column(sa.Column("responses", sa.Integer(), nullable=False, server_default="1"))
        # What its responses that ended failed or incomplete cost.
        batch.add_column(sa.Column("retry_cost_usd", sa.Float()))
        # A call outside a job (the quick path) says whose it was and what for.
        batch.add_column(sa.Column("owner", sa.String(200)))
        batch.add_column(sa.Column("job_type", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("provider_calls") as batch:
        batch.drop_column("job_type")
        batch.drop_column("owner")
        batch.drop_column("retry_cost_usd")
        batch.drop_column("responses")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("error_retryable")
