"""What is kept for how long: old audit events, old webhook receipts, finished jobs and
old documents past the retention an operator set. Everything goes in small batches, each
its own short transaction, so pruning never holds locks for long."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from backburner.store.database import Database
from backburner.store.schema import audit_events, documents, jobs, webhook_receipts
from backburner.store.transitions import JobStatus

BATCH = 500
FINISHED = [status.value for status in JobStatus if status.is_terminal]


async def delete_in_batches(
    db: Database, table: sa.Table, key: sa.Column[Any], older: sa.ColumnElement[bool]
) -> int:
    """Delete the rows matching `older`, BATCH at a time; returns how many went."""
    removed = 0
    while True:
        batch = sa.select(key).where(older).limit(BATCH)
        async with db.write() as tx:
            ids = list((await tx.conn.execute(batch)).scalars())
            if ids:
                await tx.conn.execute(sa.delete(table).where(key.in_(ids)))
        removed += len(ids)
        if len(ids) < BATCH:
            return removed


async def prune_audit(db: Database, *, before: datetime) -> int:
    return await delete_in_batches(db, audit_events, audit_events.c.id, audit_events.c.at < before)


async def prune_webhook_receipts(db: Database, *, before: datetime) -> int:
    """Receipts only guard against a webhook delivered twice; past the provider's retry
    window they guard nothing."""
    c = webhook_receipts.c
    return await delete_in_batches(db, webhook_receipts, c.id, c.received_at < before)


async def expired_jobs(db: Database, *, before: datetime, limit: int) -> list[str]:
    """Jobs that ended before `before`, oldest first."""
    query = (
        sa.select(jobs.c.id)
        .where(jobs.c.status.in_(FINISHED), jobs.c.completed_at < before)
        .order_by(jobs.c.completed_at)
        .limit(limit)
    )
    async with db.read() as conn:
        return list((await conn.execute(query)).scalars())


async def expired_documents(db: Database, *, before: datetime, limit: int) -> list[str]:
    query = (
        sa.select(documents.c.id)
        .where(documents.c.created_at < before)
        .order_by(documents.c.created_at)
        .limit(limit)
    )
    async with db.read() as conn:
        return list((await conn.execute(query)).scalars())
