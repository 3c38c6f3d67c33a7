"""Initial schema: jobs (the queue), job events, steps, provider calls, documents, keys,
workers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backburner.store.schema import BigId, Json, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")
RUNNING = sa.text("status = 'running'")
SUCCEEDED = sa.text("status = 'succeeded'")
HAS_KEY = sa.text("idempotency_key IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("substate", sa.String(40)),
        sa.Column("payload", Json(), nullable=False),
        sa.Column("result", Json()),
        sa.Column("error_message", sa.Text()),
        sa.Column("error_kind", sa.String(50)),
        sa.Column("callback_url", sa.Text()),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("run_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime()),
        sa.Column("completed_at", UtcDateTime()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("retry_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", UtcDateTime()),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("progress", sa.Float(), nullable=False, server_default="0"),
        sa.Column("progress_message", sa.Text()),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("request_hash", sa.String(64)),
    )
    op.create_index(
        "ix_jobs_pending_queue",
        "jobs",
        [sa.text("priority DESC"), "run_at", "id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_jobs_running_lease",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )
    op.create_index(
        "ix_jobs_idempotency",
        "jobs",
        ["owner", "idempotency_key"],
        unique=True,
        postgresql_where=HAS_KEY,
        sqlite_where=HAS_KEY,
    )
    op.create_index("ix_jobs_owner_id", "jobs", ["owner", "id"])
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.create_index(
        "ix_jobs_type_completed",
        "jobs",
        ["type", "completed_at"],
        postgresql_where=SUCCEEDED,
        sqlite_where=SUCCEEDED,
    )
    op.create_index(
        "ix_jobs_lease_owner",
        "jobs",
        ["lease_owner"],
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )

    op.create_table(
        "job_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20)),
        sa.Column("attempt", sa.Integer()),
        sa.Column("message", sa.Text()),
        sa.Column("data", Json()),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])

    op.create_table(
        "job_steps",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", Json()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )

    op.create_table(
        "provider_calls",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("response_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("output", Json()),
        sa.Column("error_message", sa.Text()),
        sa.Column("input_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("submitted_at", UtcDateTime(), nullable=False),
        sa.Column("completed_at", UtcDateTime()),
        sa.UniqueConstraint("job_id", "key", name="uq_provider_calls_job_key"),
    )
    op.create_index("ix_provider_calls_response", "provider_calls", ["response_id"])

    op.create_table(
        "documents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("filename", sa.String(300), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("char_count", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_documents_owner_id", "documents", ["owner", "id"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime()),
    )

    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("hostname", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
        sa.Column("stopped_at", UtcDateTime()),
    )


def downgrade() -> None:
    for table in (
        "workers",
        "api_keys",
        "documents",
        "provider_calls",
        "job_steps",
        "job_events",
        "jobs",
    ):
        op.drop_table(table)
