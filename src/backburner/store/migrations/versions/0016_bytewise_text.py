"""PostgreSQL: every text column of Backburner's tables compares bytewise (COLLATE "C"),
whatever the database's collation. The queue's indexes are made of ids, owners, types and
statuses; under a locale's collation (even C.UTF-8) each comparison in them went through
strcoll, about a tenth of PostgreSQL's CPU per job (bench/queue.py). SQLite compares
bytewise already: nothing to do there.

The table is not rewritten (the type stays), but every index on a changed column is
rebuilt, under a lock that holds the table's readers and writers for as long: on a large
`jobs` table, upgrade in a quiet moment (docs/operations.md, "Upgrading").

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# The tables at this revision (a later table is made bytewise by its own migration).
TABLES = (
    "api_keys",
    "audit_events",
    "deliveries",
    "delivery_attempts",
    "documents",
    "encryption_keys",
    "eval_items",
    "eval_runs",
    "job_events",
    "job_feedback",
    "job_steps",
    "jobs",
    "notifications",
    "owner_channels",
    "owner_limits",
    "owner_spend",
    "provider_calls",
    "rate_limits",
    "schedules",
    "sessions",
    "stale_objects",
    "webhook_endpoints",
    "webhook_receipts",
    "webhook_secrets",
    "workers",
)


def _text_columns(*, bytewise: bool) -> dict[str, list[tuple[str, str]]]:
    """Per table, its text columns (name, type as declared) that are not yet bytewise
    (`bytewise`), or that are (not `bytewise`, going back): those to change."""
    rows = op.get_bind().execute(
        sa.text(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), co.collname
            FROM pg_attribute AS a
            JOIN pg_class AS c ON c.oid = a.attrelid
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            LEFT JOIN pg_collation AS co ON co.oid = a.attcollation
            WHERE n.nspname = current_schema() AND c.relname = ANY(:tables)
              AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
              AND a.atttypid IN ('text'::regtype, 'varchar'::regtype)
            ORDER BY c.relname, a.attnum
            """
        ),
        {"tables": list(TABLES)},
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, declared, collation in rows:
        if (collation == "C") == bytewise:
            continue
        found.setdefault(table, []).append((column, declared))
    return found


def _collate(to: str, columns_of: dict[str, list[tuple[str, str]]]) -> None:
    for table, columns in columns_of.items():
        # One statement per table: its indexes are rebuilt once, not once per column.
        changes = ", ".join(
            f'ALTER COLUMN "{column}" TYPE {declared} COLLATE "{to}"'
            for column, declared in columns
        )
        op.execute(f'ALTER TABLE "{table}" {changes}')


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _collate("C", _text_columns(bytewise=True))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _collate("default", _text_columns(bytewise=False))
