"""People's ratings of job results: one per job and rater (rating again replaces it),
kept with the job's type and model so quality can be summed per type and model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from backburner.store import audit
from backburner.store.audit import Actor, Target
from backburner.store.database import Database
from backburner.store.schema import job_feedback


@dataclass(frozen=True)
class Feedback:
    job_id: str
    rater: str
    owner: str
    job_type: str
    model: str
    rating: str
    comment: str | None
    created_at: datetime
    updated_at: datetime


async def rate(
    db: Database,
    *,
    job_id: str,
    rater: str,
    owner: str,
    job_type: str,
    model: str,
    rating: str,
    comment: str | None,
    now: datetime,
    actor: Actor,
) -> Feedback:
    """Store (or replace) the rater's rating of the job."""
    key = (job_feedback.c.job_id == job_id) & (job_feedback.c.rater == rater)
    async with db.write() as tx:
        changed = await tx.conn.execute(
            sa.update(job_feedback)
            .where(key)
            .values(rating=rating, comment=comment, model=model, updated_at=now)
        )
        if changed.rowcount == 0:
            await tx.conn.execute(
                sa.insert(job_feedback).values(
                    job_id=job_id,
                    rater=rater,
                    owner=owner,
                    job_type=job_type,
                    model=model,
                    rating=rating,
                    comment=comment,
                    created_at=now,
                    updated_at=now,
                )
            )
        await audit.record(
            tx.conn,
            actor,
            audit.Action.JOB_RATED,
            Target("job", job_id, owner),
            now,
            detail={"rating": rating},
        )
        row = (await tx.conn.execute(sa.select(job_feedback).where(key))).mappings().one()
    return Feedback(**dict(row))


async def ratings_of(db: Database, job_id: str) -> list[Feedback]:
    query = (
        sa.select(job_feedback)
        .where(job_feedback.c.job_id == job_id)
        .order_by(job_feedback.c.updated_at)
    )
    async with db.read() as conn:
        return [Feedback(**dict(r)) for r in (await conn.execute(query)).mappings().all()]


@dataclass(frozen=True)
class RatingTotals:
    job_type: str
    model: str
    up: int
    down: int

    @property
    def share_up(self) -> float | None:
        total = self.up + self.down
        return self.up / total if total else None


async def totals(db: Database, *, owner: str | None = None) -> list[RatingTotals]:
    """Thumbs up and down per job type and model."""
    c = job_feedback.c
    up = sa.func.sum(sa.case((c.rating == "up", 1), else_=0))
    down = sa.func.sum(sa.case((c.rating == "down", 1), else_=0))
    query = sa.select(c.job_type, c.model, up, down).group_by(c.job_type, c.model)
    if owner is not None:
        query = query.where(c.owner == owner)
    query = query.order_by(c.job_type, c.model)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [RatingTotals(r[0], r[1], int(r[2] or 0), int(r[3] or 0)) for r in rows]
