"""Schedules: cron lines that create jobs or evaluation runs. Whoever moves a schedule's
`next_at` on (compare-and-set on the value it read) has fired that slot; the slot's job is
made first with an idempotency key naming the slot, so a process that dies between the two
leaves the slot to be fired again, which finds the job already made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from backburner.errors import Conflict
from backburner.store import audit
from backburner.store.audit import Actor, Target
from backburner.store.database import Database
from backburner.store.schema import schedules


@dataclass(frozen=True)
class Schedule:
    id: str
    owner: str
    name: str
    cron: str
    timezone: str
    kind: str  # job | eval
    job_type: str
    payload: dict[str, Any]  # the job's payload, or the evaluation's options
    enabled: bool
    created_at: datetime
    next_at: datetime
    last_slot_at: datetime | None
    last_target_id: str | None
    missed_slots: int

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        return cls(**dict(row))


async def insert_schedule(db: Database, values: dict[str, Any], *, actor: Actor) -> Schedule:
    """Store a new schedule; Conflict when its owner has one of that name."""
    try:
        async with db.write() as tx:
            await tx.conn.execute(sa.insert(schedules).values(**values))
            await audit.record(
                tx.conn,
                actor,
                audit.Action.SCHEDULE_CREATED,
                Target("schedule", values["id"], values["owner"]),
                values["created_at"],
                detail={"name": values["name"], "cron": values["cron"], "kind": values["kind"]},
            )
    except IntegrityError:
        raise Conflict(f"a schedule named {values['name']!r} exists already") from None
    found = await get_schedule(db, values["id"])
    assert found is not None
    return found


async def get_schedule(
    db: Database, schedule_id: str, *, owner: str | None = None
) -> Schedule | None:
    query = sa.select(schedules).where(schedules.c.id == schedule_id)
    if owner is not None:
        query = query.where(schedules.c.owner == owner)
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return Schedule.from_row(row) if row else None


async def list_schedules(db: Database, *, owner: str | None = None) -> list[Schedule]:
    query = sa.select(schedules).order_by(schedules.c.name, schedules.c.id)
    if owner is not None:
        query = query.where(schedules.c.owner == owner)
    async with db.read() as conn:
        return [Schedule.from_row(r) for r in (await conn.execute(query)).mappings().all()]


async def set_enabled(
    db: Database, schedule_id: str, enabled: bool, *, next_at: datetime, actor: Actor, now: datetime
) -> Schedule | None:
    """Pause or resume; resuming starts from the next slot after now (a paused schedule
    does not catch up what it skipped while paused)."""
    async with db.write() as tx:
        row = (
            await tx.conn.execute(
                sa.update(schedules)
                .where(schedules.c.id == schedule_id)
                .values(enabled=enabled, next_at=next_at)
                .returning(schedules.c.owner)
            )
        ).first()
        if row is None:
            return None
        await audit.record(
            tx.conn,
            actor,
            audit.Action.SCHEDULE_CHANGED,
            Target("schedule", schedule_id, row[0]),
            now,
            detail={"enabled": enabled},
        )
    return await get_schedule(db, schedule_id)


async def delete_schedule(db: Database, schedule_id: str, *, actor: Actor, now: datetime) -> bool:
    async with db.write() as tx:
        row = (
            await tx.conn.execute(
                sa.delete(schedules)
                .where(schedules.c.id == schedule_id)
                .returning(schedules.c.owner, schedules.c.name)
            )
        ).first()
        if row is None:
            return False
        await audit.record(
            tx.conn,
            actor,
            audit.Action.SCHEDULE_DELETED,
            Target("schedule", schedule_id, row[0]),
            now,
            detail={"name": row[1]},
        )
    return True


async def due_schedules(db: Database, *, now: datetime, limit: int = 100) -> list[Schedule]:
    query = (
        sa.select(schedules)
        .where(schedules.c.enabled.is_(True), schedules.c.next_at <= now)
        .order_by(schedules.c.next_at)
        .limit(limit)
    )
    async with db.read() as conn:
        return [Schedule.from_row(r) for r in (await conn.execute(query)).mappings().all()]


async def advance(
    db: Database,
    schedule: Schedule,
    *,
    slot_at: datetime,
    next_at: datetime,
    target_id: str,
    missed: int,
) -> bool:
    """Move the schedule past the slot it fired, if no one has since it was read."""
    async with db.write() as tx:
        moved = await tx.conn.execute(
            sa.update(schedules)
            .where(schedules.c.id == schedule.id, schedules.c.next_at == schedule.next_at)
            .values(
                next_at=next_at,
                last_slot_at=slot_at,
                last_target_id=target_id,
                missed_slots=schedules.c.missed_slots + missed,
            )
        )
    return moved.rowcount == 1
