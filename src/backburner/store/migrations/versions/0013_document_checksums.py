"""Documents found by their owner and checksum: the same text uploaded again is the same
document.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_documents_owner_sha256", "documents", ["owner", "sha256"])


def downgrade() -> None:
    op.drop_index("ix_documents_owner_sha256", table_name="documents")
