"""What owners spend on model calls, the limits they run under, and usage reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.store import audit
from backburner.store.audit import Actor, Target
from backburner.store.database import Database
from backburner.store.schema import jobs, owner_limits, owner_spend, provider_calls


@dataclass(frozen=True)
class OwnerLimits:
    owner: str
    max_running: int | None
    monthly_budget_usd: float | None
    requests_per_minute: int | None = None


@dataclass(frozen=True)
class UsageLine:
    """Model calls and their cost for one owner, job type and model."""

    owner: str
    type: str
    model: str
    model_calls: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float
    list_cost_usd: float
    unpriced_calls: int


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


async def get_limits(db: Database, owner: str) -> OwnerLimits | None:
    query = sa.select(owner_limits).where(owner_limits.c.owner == owner)
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return _limits(row) if row else None


async def list_limits(db: Database) -> list[OwnerLimits]:
    query = sa.select(owner_limits).order_by(owner_limits.c.owner)
    async with db.read() as conn:
        return [_limits(row) for row in (await conn.execute(query)).mappings().all()]


def _limits(row: sa.RowMapping) -> OwnerLimits:
    return OwnerLimits(
        row["owner"], row["max_running"], row["monthly_budget_usd"], row["requests_per_minute"]
    )


async def set_limits(
    db: Database,
    owner: str,
    *,
    max_running: int | None,
    monthly_budget_usd: float | None,
    now: datetime,
    requests_per_minute: int | None = None,
    actor: Actor | None = None,
) -> OwnerLimits:
    """Set (or, with all None, clear) an owner's own limits."""
    limits = OwnerLimits(owner, max_running, monthly_budget_usd, requests_per_minute)
    async with db.write() as tx:
        await tx.conn.execute(sa.delete(owner_limits).where(owner_limits.c.owner == owner))
        if any(
            value is not None for value in (max_running, monthly_budget_usd, requests_per_minute)
        ):
            await tx.conn.execute(sa.insert(owner_limits).values(**vars(limits), updated_at=now))
        await audit.record(
            tx.conn,
            actor,
            audit.Action.OWNER_LIMITS_CHANGED,
            Target("owner", owner, owner),
            now,
            detail={k: v for k, v in vars(limits).items() if k != "owner"},
        )
    return limits


async def monthly_budget(db: Database, owner: str, default: float | None) -> float | None:
    """The owner's monthly budget in force: its own, else the settings' `default`."""
    own = await get_limits(db, owner)
    if own is not None and own.monthly_budget_usd is not None:
        return own.monthly_budget_usd
    return default


async def spent(db: Database, owner: str, month: str) -> float:
    query = sa.select(owner_spend.c.spent_usd).where(
        owner_spend.c.owner == owner, owner_spend.c.month == month
    )
    async with db.read() as conn:
        return float((await conn.execute(query)).scalar() or 0.0)


async def spend_by_owner(db: Database, month: str) -> dict[str, float]:
    query = sa.select(owner_spend.c.owner, owner_spend.c.spent_usd).where(
        owner_spend.c.month == month
    )
    async with db.read() as conn:
        return {row[0]: float(row[1]) for row in (await conn.execute(query)).all()}


async def add_spend(conn: AsyncConnection, owner: str, month: str, usd: float) -> None:
    """Add to an owner's month, inside the caller's transaction (the one that records the
    call), so spend and calls never disagree."""
    updated = await conn.execute(
        sa.update(owner_spend)
        .where(owner_spend.c.owner == owner, owner_spend.c.month == month)
        .values(spent_usd=owner_spend.c.spent_usd + usd)
    )
    if updated.rowcount == 0:
        await conn.execute(sa.insert(owner_spend).values(owner=owner, month=month, spent_usd=usd))


TOKEN_COLUMNS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")


def token_sums() -> list[sa.ColumnElement[int]]:
    """The model calls' token totals, in TOKEN_COLUMNS order (0 when there are none)."""
    return [sa.func.coalesce(sa.func.sum(provider_calls.c[name]), 0) for name in TOKEN_COLUMNS]


async def usage_report(
    db: Database, *, owner: str | None = None, since: datetime | None = None
) -> list[UsageLine]:
    """Tokens and cost of model calls by owner, job type and model (calls submitted since
    `since`, of `owner` if given)."""
    c = provider_calls.c
    # A call outside any job (the quick path) carries its owner and type itself.
    call_owner = sa.func.coalesce(jobs.c.owner, c.owner)
    call_type = sa.func.coalesce(jobs.c.type, c.job_type)
    query = (
        sa.select(
            call_owner,
            call_type,
            c.model,
            sa.func.count(),
            *token_sums(),
            sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0),
            sa.func.coalesce(sa.func.sum(c.list_cost_usd), 0.0),
            sa.func.count().filter(c.cost_usd.is_(None), c.completed_at.is_not(None)),
        )
        .select_from(provider_calls.outerjoin(jobs, jobs.c.id == c.job_id))
        .group_by(call_owner, call_type, c.model)
        .order_by(call_owner, call_type, c.model)
    )
    if owner is not None:
        query = query.where(call_owner == owner)
    if since is not None:
        query = query.where(c.submitted_at >= since)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        UsageLine(
            owner=row[0],
            type=row[1],
            model=row[2],
            model_calls=int(row[3]),
            input_tokens=int(row[4]),
            cached_tokens=int(row[5]),
            output_tokens=int(row[6]),
            reasoning_tokens=int(row[7]),
            cost_usd=float(row[8]),
            list_cost_usd=float(row[9]),
            unpriced_calls=int(row[10]),
        )
        for row in rows
    ]
