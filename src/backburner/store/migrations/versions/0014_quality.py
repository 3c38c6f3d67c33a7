"""Quality: evaluation runs and their items, schedules, people's ratings of results, a
job's own model (evaluation runs compare models) and its input's size (for the ETA).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("model", sa.String(100)))
    op.add_column("jobs", sa.Column("size", sa.Float()))
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("dataset_sha256", sa.String(64), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("completion_window", sa.String(10)),
        sa.Column("label", sa.String(100)),
        sa.Column("prompt_version", sa.String(64), nullable=False),
        sa.Column("rubric", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.String(40)),
        sa.Column("slot_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("cost_usd", sa.Float()),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("scores", _json()),
        sa.Column("details", _json()),
        sa.UniqueConstraint("schedule_id", "slot_at", name="uq_eval_runs_slot"),
    )
    op.create_index("ix_eval_runs_type_created", "eval_runs", ["job_type", "created_at"])
    op.create_index("ix_eval_runs_status", "eval_runs", ["status"])
    op.create_table(
        "eval_items",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("job_id", sa.String(36)),
        sa.Column("input", _json(), nullable=False),
        sa.Column("expected", _json(), nullable=False),
        sa.Column("grade_job_id", sa.String(36)),
        sa.Column("scores", _json()),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_slot_at", sa.DateTime(timezone=True)),
        sa.Column("last_target_id", sa.String(40)),
        sa.Column("missed_slots", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("owner", "name", name="uq_schedules_owner_name"),
    )
    op.create_index("ix_schedules_due", "schedules", ["enabled", "next_at"])
    op.create_table(
        "job_feedback",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("rater", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("rating", sa.String(4), nullable=False),
        sa.Column("comment", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_job_feedback_type_model", "job_feedback", ["job_type", "model"])


def downgrade() -> None:
    op.drop_table("job_feedback")
    op.drop_table("schedules")
    op.drop_table("eval_items")
    op.drop_table("eval_runs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("size")
        batch.drop_column("model")
