"""The registry of worker processes: who is alive, with what capacity."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from backburner.store.database import Database
from backburner.store.schema import jobs, workers
from backburner.store.transitions import JobStatus


async def register_worker(
    db: Database, *, worker_id: str, hostname: str, pid: int, concurrency: int, now: datetime
) -> None:
    async with db.write() as tx:
        await tx.conn.execute(
            sa.insert(workers).values(
                id=worker_id,
                hostname=hostname,
                pid=pid,
                concurrency=concurrency,
                started_at=now,
                heartbeat_at=now,
            )
        )


async def mark_worker_stopped(db: Database, worker_id: str, *, now: datetime) -> None:
    async with db.write() as tx:
        await tx.conn.execute(
            sa.update(workers).where(workers.c.id == worker_id).values(stopped_at=now)
        )


async def silent_workers_on(
    db: Database, hostname: str, *, besides: str, silent_since: datetime
) -> list[tuple[str, int]]:
    """(id, pid) of the workers registered on `hostname` that never said they stopped and
    have not heartbeated since `silent_since`."""
    query = sa.select(workers.c.id, workers.c.pid).where(
        workers.c.hostname == hostname,
        workers.c.stopped_at.is_(None),
        workers.c.id != besides,
        workers.c.heartbeat_at < silent_since,
    )
    async with db.read() as conn:
        return [(row.id, int(row.pid)) for row in await conn.execute(query)]


async def release_leases_of(db: Database, worker_ids: list[str], *, now: datetime) -> int:
    """Mark these (dead) workers stopped and let their leases run out now, so the reaper
    hands their jobs on at its next round instead of after the lease. Returns the jobs."""
    if not worker_ids:
        return 0
    async with db.write() as tx:
        await tx.conn.execute(
            sa.update(workers).where(workers.c.id.in_(worker_ids)).values(stopped_at=now)
        )
        released = await tx.conn.execute(
            sa.update(jobs)
            .where(
                jobs.c.lease_owner.in_(worker_ids),
                jobs.c.status == JobStatus.RUNNING.value,
                jobs.c.lease_expires_at > now,
            )
            .values(lease_expires_at=now)
        )
    return int(released.rowcount or 0)
