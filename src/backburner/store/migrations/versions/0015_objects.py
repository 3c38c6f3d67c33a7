"""Object storage: a document's original and a job's large result are objects, named on
their rows; `stale_objects` lists objects to delete once nothing names them (deleted rows,
writes cut off before their row committed). A job keeps the URL the API was reached at,
for its notifications' links when no public URL is set.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("original_key", sa.String(200)))
    op.add_column("jobs", sa.Column("result_object", sa.String(200)))
    op.add_column("jobs", sa.Column("result_bytes", sa.BigInteger()))
    op.add_column("jobs", sa.Column("origin", sa.String(300)))
    op.create_table(
        "stale_objects",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stale_objects_due", "stale_objects", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_stale_objects_due", table_name="stale_objects")
    op.drop_table("stale_objects")
    op.drop_column("jobs", "origin")
    op.drop_column("jobs", "result_bytes")
    op.drop_column("jobs", "result_object")
    op.drop_column("documents", "original_key")
