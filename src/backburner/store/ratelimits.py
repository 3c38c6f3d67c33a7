"""The shared rate-limit buckets: read, change and write one atomically.

PostgreSQL locks the bucket's row (`FOR UPDATE`) for the read-change-write, so workers on
many machines take turns; SQLite's single writer does the same within one database file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa

from backburner.store.database import Database
from backburner.store.schema import rate_limits

T = TypeVar("T")


@dataclass(frozen=True)
class Bucket:
    key: str
    requests: float
    tokens: float
    scale: float
    blocked_until: datetime | None
    updated_at: datetime
    waits: int = 0
    waited_seconds: float = 0.0


async def update(
    db: Database, key: str, initial: Bucket, change: Callable[[Bucket], tuple[Bucket, T]]
) -> T:
    """Apply `change` to the bucket (created as `initial` if it does not exist yet) and
    store the result. The row is created before it is locked, so two workers meeting a new
    bucket at once take turns on it instead of each starting from a full one."""
    fresh = {
        "requests": initial.requests,
        "tokens": initial.tokens,
        "scale": initial.scale,
        "blocked_until": initial.blocked_until,
        "updated_at": initial.updated_at,
    }
    async with db.write() as tx:
        await tx.conn.execute(db.insert_or_ignore(rate_limits, {"key": key, **fresh}))
        # FOR UPDATE serialises concurrent takes on PostgreSQL; SQLite's writer lock does.
        query = sa.select(rate_limits).where(rate_limits.c.key == key).with_for_update()
        row = (await tx.conn.execute(query)).mappings().one()
        bucket, answer = change(Bucket(**row))
        await tx.conn.execute(
            sa.update(rate_limits)
            .where(rate_limits.c.key == key)
            .values(
                requests=bucket.requests,
                tokens=bucket.tokens,
                scale=bucket.scale,
                blocked_until=bucket.blocked_until,
                updated_at=bucket.updated_at,
                waits=bucket.waits,
                waited_seconds=bucket.waited_seconds,
            )
        )
        return answer


async def list_buckets(db: Database) -> list[Bucket]:
    async with db.read() as conn:
        rows = (
            (await conn.execute(sa.select(rate_limits).order_by(rate_limits.c.key)))
            .mappings()
            .all()
        )
    return [Bucket(**row) for row in rows]
