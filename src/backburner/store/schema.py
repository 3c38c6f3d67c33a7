"""The tables. Alembic migrations create them; this module is what the queries are written
against, and a test checks the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from backburner.store.sealed import BYTEWISE, SealedJson, SealedText


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def Json(*, none_as_null: bool = False) -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=none_as_null).with_variant(
        JSONB(none_as_null=none_as_null), "postgresql"
    )


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# Every text column compares bytewise ("C") on PostgreSQL, whatever the database's own
# collation. Ids, owners, types and statuses are what the queue's indexes are made of: in
# a database whose collation is a locale's (even C.UTF-8), each comparison in those
# indexes went through the locale (strcoll), ~9% of PostgreSQL's CPU per job in a drain
# of no-op jobs (bench/queue.py). Orderings by text (owners, types, models) are bytewise
# too, as SQLite's are. Migration 0016 brought the columns of older databases here.
def String(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation=BYTEWISE), "postgresql")


def Text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(sa.Text(collation=BYTEWISE), "postgresql")


metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", String(36), primary_key=True),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("type", String(100), nullable=False),
    sa.Column("status", String(20), nullable=False),
    sa.Column("substate", String(40)),
    sa.Column("payload", SealedJson("jobs.payload"), nullable=False),
    sa.Column("result", SealedJson("jobs.result")),
    sa.Column("error_message", Text()),
    sa.Column("error_kind", String(50)),
    sa.Column("error_retryable", sa.Boolean()),
    sa.Column("callback_url", SealedText("jobs.callback_url")),
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
    sa.Column("lease_owner", String(64)),
    sa.Column("lease_expires_at", UtcDateTime()),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("progress", sa.Float(), nullable=False, server_default="0"),
    sa.Column("progress_message", Text()),
    sa.Column("idempotency_key", String(200)),
    sa.Column("request_hash", String(64)),
    # When the caller needs the result by; lets model calls take discounted windows.
    sa.Column("deadline_at", UtcDateTime()),
    # Per-job notification wishes: {"email": [...], "slack": true, "teams": true}; SQL NULL
    # (not JSON null) when there are none, so "owes a notification" stays a cheap test.
    sa.Column("notify", SealedJson("jobs.notify", none_as_null=True)),
    # The model its calls use, when not the type's configured one (evaluation runs set it).
    sa.Column("model", String(100)),
    # How big its input is in its type's unit (a summary's characters, a classification's
    # leads): the ETA scales the type's history by it.
    sa.Column("size", sa.Float()),
    # A result larger than BACKBURNER_RESULT_INLINE_BYTES is an object (result stays NULL):
    # its key and its size in bytes.
    sa.Column("result_object", String(200)),
    sa.Column("result_bytes", sa.BigInteger()),
    # The URL the API was reached at when the job was created: its notifications link
    # there when BACKBURNER_PUBLIC_URL is not set.
    sa.Column("origin", String(300)),
    sa.Index(
        "ix_jobs_pending_queue",
        sa.text("priority DESC"),
        "run_at",
        "id",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index(
        "ix_jobs_running_lease",
        "lease_expires_at",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
    sa.Index(
        "ix_jobs_idempotency",
        "owner",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    sa.Index("ix_jobs_owner_id", "owner", "id"),
    sa.Index("ix_jobs_status_id", "status", "id"),
    # Only successful runs feed the ETA; partial, so claims never mistake it for a queue.
    sa.Index(
        "ix_jobs_type_completed",
        "type",
        "completed_at",
        postgresql_where=sa.text("status = 'succeeded'"),
        sqlite_where=sa.text("status = 'succeeded'"),
    ),
    # The last hour's and day's ended jobs, for the operator page.
    sa.Index(
        "ix_jobs_completed_at",
        "completed_at",
        postgresql_where=sa.text("completed_at IS NOT NULL"),
        sqlite_where=sa.text("completed_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_jobs_lease_owner",
        "lease_owner",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", String(36), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("kind", String(40), nullable=False),
    sa.Column("from_status", String(20)),
    sa.Column("to_status", String(20)),
    sa.Column("attempt", sa.Integer()),
    sa.Column("message", Text()),
    sa.Column("data", Json()),
    sa.Index("ix_job_events_job", "job_id", "id"),
)

job_steps = sa.Table(
    "job_steps",
    metadata,
    sa.Column("job_id", String(36), primary_key=True),
    sa.Column("key", String(200), primary_key=True),
    sa.Column("value", SealedJson("job_steps.value")),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

provider_calls = sa.Table(
    "provider_calls",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", String(36), nullable=False),
    sa.Column("key", String(200), nullable=False),
    sa.Column("provider", String(40), nullable=False),
    sa.Column("model", String(100), nullable=False),
    sa.Column("response_id", String(100), nullable=False),
    sa.Column("status", String(20), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("output", SealedJson("provider_calls.output")),
    sa.Column("error_message", Text()),
    sa.Column("input_tokens", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("cached_tokens", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("reasoning_tokens", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("submitted_at", UtcDateTime(), nullable=False),
    sa.Column("completed_at", UtcDateTime()),
    sa.Column("completion_window", String(10)),
    sa.Column("service_tier", String(20)),
    # What the tokens cost at the window's price, and at the standard ("soonest") price;
    # NULL when the model is not in the price table.
    sa.Column("cost_usd", sa.Float()),
    sa.Column("list_cost_usd", sa.Float()),
    # Responses this call had (a failed one asked again makes two), and what those that
    # ended failed or incomplete cost: what retries cost.
    sa.Column("responses", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("retry_cost_usd", sa.Float()),
    # Set for a call outside any job (the quick path): whose it was and what for.
    sa.Column("owner", String(200)),
    sa.Column("job_type", String(100)),
    sa.UniqueConstraint("job_id", "key", name="uq_provider_calls_job_key"),
    sa.Index("ix_provider_calls_response", "response_id"),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", String(36), primary_key=True),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("filename", String(300), nullable=False),
    sa.Column("content_type", String(100), nullable=False),
    sa.Column("size_bytes", sa.Integer(), nullable=False),
    sa.Column("char_count", sa.Integer(), nullable=False),
    sa.Column("sha256", String(64), nullable=False),
    sa.Column("text", SealedText("documents.text"), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # The uploaded file as an object (NULL: made by Backburner itself, or before 0015).
    sa.Column("original_key", String(200)),
    sa.Index("ix_documents_owner_id", "owner", "id"),
    sa.Index("ix_documents_created", "created_at"),  # retention finds the oldest
    sa.Index("ix_documents_owner_sha256", "owner", "sha256"),  # an upload sent again
)

# Objects to delete once due, unless a row still names them: those of deleted documents
# and jobs (due at once), and every object about to be written (due an hour on, so a write
# cut off before its row committed leaves nothing behind). See store/objects.py.
stale_objects = sa.Table(
    "stale_objects",
    metadata,
    sa.Column("key", String(200), primary_key=True),
    sa.Column("due_at", UtcDateTime(), nullable=False),
    sa.Index("ix_stale_objects_due", "due_at"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", String(36), primary_key=True),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("role", String(20), nullable=False),
    sa.Column("name", String(200)),
    sa.Column("prefix", String(16), nullable=False),
    sa.Column("key_hash", String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime()),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", String(64), primary_key=True),
    sa.Column("hostname", String(200), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("concurrency", sa.Integer(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
    sa.Column("stopped_at", UtcDateTime()),
)

webhook_receipts = sa.Table(
    "webhook_receipts",
    metadata,
    sa.Column("id", String(200), primary_key=True),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("event_type", String(100), nullable=False),
    sa.Index("ix_webhook_receipts_received", "received_at"),
)

owner_limits = sa.Table(
    "owner_limits",
    metadata,
    sa.Column("owner", String(200), primary_key=True),
    # NULL: the settings' default applies (no limit unless one is set there).
    sa.Column("max_running", sa.Integer()),
    sa.Column("monthly_budget_usd", sa.Float()),
    sa.Column("requests_per_minute", sa.Integer()),  # API requests per key (0: unlimited)
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

owner_spend = sa.Table(
    "owner_spend",
    metadata,
    sa.Column("owner", String(200), primary_key=True),
    sa.Column("month", String(7), primary_key=True),  # YYYY-MM, UTC
    sa.Column("spent_usd", sa.Float(), nullable=False, server_default="0"),
)

# One token bucket per provider+model, shared by every worker through the database.
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("key", String(200), primary_key=True),
    sa.Column("requests", sa.Float(), nullable=False),
    sa.Column("tokens", sa.Float(), nullable=False),
    sa.Column("scale", sa.Float(), nullable=False, server_default="1"),
    sa.Column("blocked_until", UtcDateTime()),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # Counters for /metrics: callers told to wait, and the seconds they were told.
    sa.Column("waits", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("waited_seconds", sa.Float(), nullable=False, server_default="0"),
)

# --- Notifications ------------------------------------------------------------------------
# The outbox: one row per job that reached a terminal state and may owe notifications,
# written in the transaction that wrote the state. The dispatcher expands each into the
# deliveries it owes (webhook, email, Slack, Teams) and marks it expanded.
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", String(36), nullable=False),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("event_type", String(40), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expanded_at", UtcDateTime()),
    sa.Index(
        "ix_notifications_unexpanded",
        "id",
        postgresql_where=sa.text("expanded_at IS NULL"),
        sqlite_where=sa.text("expanded_at IS NULL"),
    ),
    sa.Index("ix_notifications_job", "job_id"),  # deleting a job finds its rows
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", String(36), primary_key=True),
    sa.Column("notification_id", BigId),
    sa.Column("job_id", String(36), nullable=False),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("channel", String(20), nullable=False),  # webhook | email | slack | teams
    sa.Column("target", SealedText("deliveries.target"), nullable=False),  # URL or e-mail
    sa.Column("endpoint_id", String(36)),
    sa.Column("event_type", String(40), nullable=False),
    # Stable across attempts and redeliveries: receivers drop duplicates by it.
    sa.Column("event_id", String(64), nullable=False),
    sa.Column("payload", SealedJson("deliveries.payload"), nullable=False),
    sa.Column("status", String(20), nullable=False),  # pending | succeeded | failed
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("give_up_at", UtcDateTime(), nullable=False),
    sa.Column("lease_owner", String(64)),
    sa.Column("lease_expires_at", UtcDateTime()),
    sa.Column("last_status_code", sa.Integer()),
    sa.Column("last_error", Text()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("delivered_at", UtcDateTime()),
    sa.Index(
        "ix_deliveries_due",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index("ix_deliveries_job", "job_id", "created_at"),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", String(36), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer()),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("error", Text()),
    sa.Column("response_excerpt", Text()),
    sa.Index("ix_delivery_attempts_delivery", "delivery_id", "id"),
)

webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("secret", SealedText("webhook_secrets.secret"), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # Set when rotated out: the old secret still signs until then.
    sa.Column("expires_at", UtcDateTime()),
    sa.Index("ix_webhook_secrets_owner", "owner", "id"),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", String(36), primary_key=True),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("url", Text(), nullable=False),
    sa.Column("event_types", Json(), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("disabled_reason", Text()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_webhook_endpoints_owner", "owner"),
)

# An owner's default channels: where `notify: {email: true, slack: true}` sends.
owner_channels = sa.Table(
    "owner_channels",
    metadata,
    sa.Column("owner", String(200), primary_key=True),
    sa.Column("emails", SealedJson("owner_channels.emails"), nullable=False),
    sa.Column("slack_webhook_url", SealedText("owner_channels.slack_webhook_url")),
    sa.Column("teams_webhook_url", SealedText("owner_channels.teams_webhook_url")),
    # Event types the defaults apply to for every job (not only jobs that ask).
    sa.Column("event_types", Json(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# Dashboard sign-ins: the cookie holds a random session token, never the API key; only its
# hash is stored. Revoking the key ends its sessions.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", String(64), primary_key=True),
    sa.Column("key_id", String(36), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Index("ix_sessions_key", "key_id"),
)

# Who did what to whose data, append-only (a trigger refuses updates; rows leave only by
# retention). `owner` is whose data the target is: members read the events of their own.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor_kind", String(10), nullable=False),  # key | system
    sa.Column("actor_key_id", String(36)),
    sa.Column("actor_owner", String(200)),
    sa.Column("actor_role", String(10)),
    sa.Column("action", String(40), nullable=False),
    sa.Column("target_type", String(20), nullable=False),
    sa.Column("target_id", String(200), nullable=False),
    sa.Column("owner", String(200)),
    sa.Column("client_address", String(64)),
    sa.Column("user_agent", String(300)),
    sa.Column("request_id", String(64)),
    sa.Column("detail", Json()),
    sa.Index("ix_audit_events_owner", "owner", "id"),
    sa.Index("ix_audit_events_target", "target_id", "id"),
    sa.Index("ix_audit_events_at", "at"),
)

# The keys that have sealed data here, each with a check value sealed by it: at start-up a
# missing or wrong key is named before anything is written. `retired_at` is set once
# `backburner encryption rotate` has moved everything off the key.
encryption_keys = sa.Table(
    "encryption_keys",
    metadata,
    sa.Column("key_id", String(32), primary_key=True),
    sa.Column("check_value", Text(), nullable=False),
    sa.Column("first_used_at", UtcDateTime(), nullable=False),
    sa.Column("retired_at", UtcDateTime()),
)

# An evaluation run: every item of a golden dataset run as a job of its type (same queue,
# provider, retries and cost accounting), then scored. `scores` holds the run's metrics,
# `details` what does not fit one number (confusion matrix, per-label figures).
eval_runs = sa.Table(
    "eval_runs",
    metadata,
    sa.Column("id", String(40), primary_key=True),
    sa.Column("owner", String(200), nullable=False),  # whose jobs the items are
    sa.Column("job_type", String(100), nullable=False),
    sa.Column("dataset", String(200), nullable=False),
    sa.Column("dataset_sha256", String(64), nullable=False),
    sa.Column("model", String(100), nullable=False),
    sa.Column("completion_window", String(10)),
    sa.Column("label", String(100)),
    sa.Column("prompt_version", String(64), nullable=False),
    sa.Column("rubric", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("status", String(20), nullable=False),  # running | grading | scored
    sa.Column("items", sa.Integer(), nullable=False),
    # Set when a schedule started the run: one run per schedule and slot.
    sa.Column("schedule_id", String(40)),
    sa.Column("slot_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("ended_at", UtcDateTime()),
    sa.Column("cost_usd", sa.Float()),
    sa.Column("duration_seconds", sa.Float()),
    sa.Column("scores", Json()),
    sa.Column("details", Json()),
    sa.Index("ix_eval_runs_type_created", "job_type", "created_at"),
    sa.Index("ix_eval_runs_status", "status"),
    sa.UniqueConstraint("schedule_id", "slot_at", name="uq_eval_runs_slot"),
)

# One dataset item of a run: its job's input, what a good answer contains (both sealed:
# datasets may hold customers' data), its job, and its scores once the job has ended.
eval_items = sa.Table(
    "eval_items",
    metadata,
    sa.Column("run_id", String(40), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True),
    sa.Column("item_id", String(200), nullable=False),
    # Set once its job is made (a run is written first, its jobs then, by idempotency keys
    # `eval:<run>:<position>`, so a run cut off between the two is completed, not doubled).
    sa.Column("job_id", String(36)),
    sa.Column("input", SealedJson("eval_items.input"), nullable=False),
    sa.Column("expected", SealedJson("eval_items.expected"), nullable=False),
    sa.Column("grade_job_id", String(36)),
    sa.Column("scores", Json()),
    sa.Column("error", Text()),
)

# Jobs (or evaluation runs) created on a cron schedule. `next_at` is the next slot due;
# the process that moves it on (a compare-and-set) creates that slot's run, in the same
# transaction, so each slot runs once however many workers look.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", String(40), primary_key=True),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("name", String(100), nullable=False),
    sa.Column("cron", String(100), nullable=False),
    sa.Column("timezone", String(64), nullable=False),
    sa.Column("kind", String(10), nullable=False),  # job | eval
    sa.Column("job_type", String(100), nullable=False),
    sa.Column("payload", SealedJson("schedules.payload"), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("next_at", UtcDateTime(), nullable=False),
    sa.Column("last_slot_at", UtcDateTime()),
    sa.Column("last_target_id", String(40)),
    sa.Column("missed_slots", sa.Integer(), nullable=False, server_default="0"),
    sa.Index("ix_schedules_due", "enabled", "next_at"),
    sa.UniqueConstraint("owner", "name", name="uq_schedules_owner_name"),
)

# People's ratings of a job's result: one per job and rater, kept with the job's type and
# model so they can be summed per type and model.
job_feedback = sa.Table(
    "job_feedback",
    metadata,
    sa.Column("job_id", String(36), primary_key=True),
    sa.Column("rater", String(200), primary_key=True),
    sa.Column("owner", String(200), nullable=False),
    sa.Column("job_type", String(100), nullable=False),
    sa.Column("model", String(100), nullable=False),
    sa.Column("rating", String(4), nullable=False),  # up | down
    sa.Column("comment", SealedText("job_feedback.comment")),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index("ix_job_feedback_type_model", "job_type", "model"),
)
