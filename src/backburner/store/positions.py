"""What the ETA reads: a type's recent run times, a job's place in the queue, the live
capacity of the workers. Reads only; the API caches what it can (`api/estimates.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from backburner.store.database import Database
from backburner.store.schema import jobs, workers
from backburner.store.transitions import JobStatus

PENDING = JobStatus.PENDING.value


async def recent_runs(
    db: Database, job_type: str, *, sample: int = 50
) -> list[tuple[float, float | None]]:
    """How long the type's most recent successful jobs ran (start to finish), each with
    its input's size."""
    query = (
        sa.select(jobs.c.started_at, jobs.c.completed_at, jobs.c.size)
        .where(
            jobs.c.type == job_type,
            jobs.c.status == JobStatus.SUCCEEDED.value,
            jobs.c.completed_at.is_not(None),
        )
        .order_by(jobs.c.completed_at.desc())
        .limit(sample)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        ((done - started).total_seconds(), size) for started, done, size in rows if started and done
    ]


async def count_ahead(
    db: Database, *, job_id: str, priority: int, now: datetime, max_count: int = 10_000
) -> int:
    """Runnable pending jobs a worker would take before this one (capped at `max_count`)."""
    inner = (
        sa.select(sa.literal(1))
        .where(
            jobs.c.status == PENDING,
            jobs.c.run_at <= now,
            jobs.c.id != job_id,
            sa.or_(
                jobs.c.priority > priority,
                sa.and_(jobs.c.priority == priority, jobs.c.id < job_id),
            ),
        )
        .limit(max_count)
        .subquery()
    )
    async with db.read() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(inner))).scalar() or 0
        )


async def due_by_priority(
    db: Database, *, now: datetime, max_count: int = 10_000
) -> dict[int, int]:
    """Runnable pending jobs by priority (at most `max_count` counted in all): where a job
    created now would stand, without a count per created job."""
    due = (
        sa.select(jobs.c.priority)
        .where(jobs.c.status == PENDING, jobs.c.run_at <= now)
        .limit(max_count)
        .subquery()
    )
    query = sa.select(due.c.priority, sa.func.count()).group_by(due.c.priority)
    async with db.read() as conn:
        return {int(priority): int(count) for priority, count in (await conn.execute(query)).all()}


async def queue_positions(
    db: Database, job_ids: Sequence[str], *, now: datetime, max_count: int = 10_000
) -> dict[str, int]:
    """For each of these pending jobs that is runnable now: how many runnable jobs a worker
    would take before it (as count_ahead, in one query for a whole page). Jobs further
    back than `max_count` get `max_count`; jobs not runnable yet are left out."""
    if not job_ids:
        return {}
    head = (
        sa.select(jobs.c.id, jobs.c.priority)
        .where(jobs.c.status == PENDING, jobs.c.run_at <= now)
        .order_by(jobs.c.priority.desc(), jobs.c.id)
        .limit(max_count)
        .subquery()
    )
    ranked = sa.select(
        head.c.id,
        (sa.func.row_number().over(order_by=(head.c.priority.desc(), head.c.id)) - 1).label(
            "ahead"
        ),
    ).subquery()
    runnable = sa.select(jobs.c.id).where(
        jobs.c.id.in_(job_ids), jobs.c.status == PENDING, jobs.c.run_at <= now
    )
    async with db.read() as conn:
        found = {
            row.id: int(row.ahead)
            for row in await conn.execute(
                sa.select(ranked.c.id, ranked.c.ahead).where(ranked.c.id.in_(job_ids))
            )
        }
        waiting = [row.id for row in await conn.execute(runnable)]
    return {job_id: found.get(job_id, max_count) for job_id in waiting}


async def live_capacity(
    db: Database, *, now: datetime, silence: timedelta = timedelta(seconds=30)
) -> int:
    """Execution slots of workers that have been heard from lately (at least 1)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(workers.c.concurrency), 0)).where(
        workers.c.stopped_at.is_(None), workers.c.heartbeat_at > now - silence
    )
    async with db.read() as conn:
        return max(1, int((await conn.execute(query)).scalar() or 0))
