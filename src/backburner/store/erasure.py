"""Erasing an owner (GDPR's right to erasure): everything of theirs goes, except what the
law and the books need — usage as anonymous totals, and the audit trail's record that the
erasure happened.

Jobs go one by one through `jobs.delete_job` (short transactions, each audited); the rest
of what the owner had goes in one transaction at the end, with the `owner.erased` event.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from backburner.store import audit, objects
from backburner.store.audit import Actor, Target
from backburner.store.database import Database
from backburner.store.schema import (
    api_keys,
    documents,
    eval_items,
    eval_runs,
    job_feedback,
    jobs,
    owner_channels,
    owner_limits,
    owner_spend,
    provider_calls,
    rate_limits,
    schedules,
    sessions,
    webhook_endpoints,
    webhook_secrets,
)
from backburner.store.transitions import JobStatus

# Usage of erased owners is kept under this name: totals, not linked to anyone.
ERASED = "(erased)"
UNFINISHED = [status.value for status in JobStatus if not status.is_terminal]


async def unfinished_jobs(db: Database, owner: str) -> list[str]:
    query = sa.select(jobs.c.id).where(jobs.c.owner == owner, jobs.c.status.in_(UNFINISHED))
    async with db.read() as conn:
        return list((await conn.execute(query)).scalars())


async def job_ids(db: Database, owner: str, *, limit: int) -> list[str]:
    query = sa.select(jobs.c.id).where(jobs.c.owner == owner).order_by(jobs.c.id).limit(limit)
    async with db.read() as conn:
        return list((await conn.execute(query)).scalars())


async def erase_rest(
    db: Database, owner: str, *, now: datetime, actor: Actor, jobs_deleted: int
) -> dict[str, int]:
    """Once the owner's jobs are deleted: documents, evaluation runs, schedules, ratings,
    channels, endpoints, secrets, limits, sessions and keys (revoked, their names dropped),
    and usage moved to ERASED. Returns
    what was removed, also kept in the `owner.erased` event."""
    async with db.write() as tx:
        conn = tx.conn
        key_ids = list(
            (
                await conn.execute(sa.select(api_keys.c.id).where(api_keys.c.owner == owner))
            ).scalars()
        )
        counts = {"jobs": jobs_deleted, "keys": len(key_ids)}
        originals = await conn.execute(
            sa.delete(documents)
            .where(documents.c.owner == owner)
            .returning(documents.c.original_key)
        )
        original_keys = list(originals.scalars())
        counts["documents"] = len(original_keys)
        await objects.doom(conn, original_keys, now)
        for table in (
            webhook_endpoints,
            webhook_secrets,
            owner_channels,
            owner_limits,
            owner_spend,
        ):
            await conn.execute(sa.delete(table).where(table.c.owner == owner))
        # Evaluation runs (their items hold the datasets' inputs), schedules, and ratings
        # the owner's keys gave (ratings of the owner's own jobs went with the jobs).
        runs = sa.select(eval_runs.c.id).where(eval_runs.c.owner == owner)
        await conn.execute(sa.delete(eval_items).where(eval_items.c.run_id.in_(runs)))
        counts["evaluation_runs"] = (
            await conn.execute(sa.delete(eval_runs).where(eval_runs.c.owner == owner))
        ).rowcount
        counts["schedules"] = (
            await conn.execute(sa.delete(schedules).where(schedules.c.owner == owner))
        ).rowcount
        await conn.execute(
            sa.delete(job_feedback).where(
                sa.or_(job_feedback.c.owner == owner, job_feedback.c.rater.in_(key_ids))
            )
        )
        await conn.execute(sa.delete(sessions).where(sessions.c.key_id.in_(key_ids)))
        await conn.execute(
            sa.delete(rate_limits).where(rate_limits.c.key.in_([f"api:{k}" for k in key_ids]))
        )
        await conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.owner == owner)
            .values(revoked_at=sa.func.coalesce(api_keys.c.revoked_at, now), name=None)
        )
        counts["model_calls_anonymised"] = (
            await conn.execute(
                sa.update(provider_calls)
                .where(provider_calls.c.owner == owner)
                .values(owner=ERASED, output=None, error_message=None)
            )
        ).rowcount
        await audit.record(
            conn,
            actor,
            audit.Action.OWNER_ERASED,
            Target("owner", owner, owner),
            now,
            detail=counts,
        )
    return counts
