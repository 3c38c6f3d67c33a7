"""Writing and reading a job's timeline. Every state transition writes exactly one row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.store.database import Database
from backburner.store.models import JobEvent
from backburner.store.schema import job_events


def event_row(
    job_id: str,
    kind: str,
    at: datetime,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    attempt: int | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "kind": kind,
        "at": at,
        "from_status": from_status,
        "to_status": to_status,
        "attempt": attempt,
        "message": message,
        "data": data,
    }


async def add_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(sa.insert(job_events), rows)


async def list_events(
    db: Database, job_id: str, *, after_id: int = 0, limit: int = 1000
) -> list[JobEvent]:
    query = (
        sa.select(job_events)
        .where(job_events.c.job_id == job_id, job_events.c.id > after_id)
        .order_by(job_events.c.id)
        .limit(limit)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [JobEvent.from_row(row) for row in rows]
