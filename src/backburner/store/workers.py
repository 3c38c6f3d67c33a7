"""The registry of worker processes: who is alive, with what capacity."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from backburner.store.database import Database
from backburner.store.schema import workers


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
