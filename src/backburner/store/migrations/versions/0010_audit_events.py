"""The audit trail: who did what to whose data, append-only.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backburner.store.schema import BigId, Json, UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

APPEND_ONLY = "audit events are append-only"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(10), nullable=False),
        sa.Column("actor_key_id", sa.String(36)),
        sa.Column("actor_owner", sa.String(200)),
        sa.Column("actor_role", sa.String(10)),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target_type", sa.String(20), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("client_address", sa.String(64)),
        sa.Column("user_agent", sa.String(300)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("detail", Json()),
    )
    op.create_index("ix_audit_events_owner", "audit_events", ["owner", "id"])
    op.create_index("ix_audit_events_target", "audit_events", ["target_id", "id"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    # Rows are never changed: the database itself refuses an UPDATE.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_update ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_table("audit_events")
