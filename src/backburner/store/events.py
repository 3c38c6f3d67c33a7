"""Writing and reading a job's timeline. Every state transition writes exactly one row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from backburner.store.database import Database, Tx
from backburner.store.models import JobEvent
from backburner.store.schema import job_events, jobs
from backburner.store.transitions import Event, JobStatus, next_state


def event_row(
    job_id: str,
    kind: Event,
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
        "kind": kind.value,
        "at": at,
        "from_status": from_status,
        "to_status": to_status,
        "attempt": attempt,
        "message": message,
        "data": data,
    }


def transition_row(
    job_id: str,
    before: JobStatus | None,
    event: Event,
    at: datetime,
    *,
    attempt: int | None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The timeline row of a status change, its statuses taken from the state machine
    (which refuses a move it does not allow)."""
    after = next_state(before, event)
    return event_row(
        job_id,
        event,
        at,
        from_status=before.value if before is not None else None,
        to_status=after.value,
        attempt=attempt,
        message=message,
        data=data,
    )


async def add_events(tx: Tx, rows: list[dict[str, Any]]) -> None:
    await tx.insert_many(job_events, rows)


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


async def latest_events(db: Database, job_id: str, *, limit: int) -> list[JobEvent]:
    """The job's last `limit` events, oldest of them first."""
    query = (
        sa.select(job_events)
        .where(job_events.c.job_id == job_id)
        .order_by(job_events.c.id.desc())
        .limit(limit)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [JobEvent.from_row(row) for row in reversed(rows)]


async def count_events(db: Database, job_id: str) -> int:
    query = sa.select(sa.func.count()).where(job_events.c.job_id == job_id)
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def events_since(
    db: Database,
    *,
    after_id: int,
    owner: str | None = None,
    job_id: str | None = None,
    limit: int = 1000,
) -> list[tuple[JobEvent, str, str, str, float]]:
    """Events after `after_id` across jobs (of `owner`, or of one job), oldest first, each
    with its job's owner, type, current status and progress: what a live stream sends."""
    query = (
        sa.select(job_events, jobs.c.owner, jobs.c.type, jobs.c.status, jobs.c.progress)
        .join(jobs, jobs.c.id == job_events.c.job_id)
        .where(job_events.c.id > after_id)
        .order_by(job_events.c.id)
        .limit(limit)
    )
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    if job_id is not None:
        query = query.where(job_events.c.job_id == job_id)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    found = []
    for row in rows:
        values = dict(row)
        extra = (values.pop("owner"), values.pop("type"), values.pop("status"))
        progress = float(values.pop("progress"))
        found.append((JobEvent.from_row(values), *extra, progress))
    return found


async def latest_event_id(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.max(job_events.c.id)))).scalar() or 0)
