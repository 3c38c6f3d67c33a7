"""Deleting: a job's notifications found by job id, the oldest documents by creation.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_notifications_job", "notifications", ["job_id"])
    op.create_index("ix_documents_created", "documents", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_documents_created", table_name="documents")
    op.drop_index("ix_notifications_job", table_name="notifications")
