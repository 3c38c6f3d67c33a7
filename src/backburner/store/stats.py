"""Cluster-wide figures for monitoring, read from the tables every process writes, so any
API process's /metrics tells the whole story (workers need no port of their own)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.store.database import Database
from backburner.store.schema import deliveries, jobs, provider_calls, rate_limits, workers
from backburner.store.usage import token_sums

TERMINAL = ("succeeded", "failed", "canceled")


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (`le` upper bounds, +Inf last), the count and the sum."""

    buckets: list[tuple[float, int]]
    count: int
    total: float


@dataclass
class Stats:
    jobs_by_state: dict[tuple[str, str], int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    finished: dict[tuple[str, str], int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    queue_depth: dict[str, int] = field(default_factory=dict)
    queue_oldest: dict[str, float] = field(default_factory=dict)
    waiting_provider: int = 0
    durations: dict[str, Histogram] = field(default_factory=dict)
    queue_latency: dict[str, Histogram] = field(default_factory=dict)
    provider_calls: dict[tuple[str, str], int] = field(default_factory=dict)
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)
    cost_usd: dict[str, float] = field(default_factory=dict)
    provider_latency: dict[str, Histogram] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    delivery_attempts: dict[str, int] = field(default_factory=dict)
    workers_alive: int = 0
    heartbeat_age: dict[str, float] = field(default_factory=dict)
    rate_limit_scale: dict[str, float] = field(default_factory=dict)
    rate_limit_blocked: dict[str, float] = field(default_factory=dict)
    rate_limit_waits: dict[str, int] = field(default_factory=dict)
    rate_limit_waited: dict[str, float] = field(default_factory=dict)


def seconds_between(
    later: sa.ColumnElement[datetime], earlier: sa.ColumnElement[datetime], dialect: str
) -> sa.ColumnElement[float]:
    if dialect == "postgresql":
        return sa.cast(sa.func.extract("epoch", later - earlier), sa.Float)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


async def _histograms(
    conn: AsyncConnection,
    key: sa.ColumnElement[str],
    seconds: sa.ColumnElement[float],
    where: Sequence[sa.ColumnElement[bool]],
    bounds: Sequence[float],
    table: sa.Table,
) -> dict[str, Histogram]:
    """One aggregate query: per key, how many values fall at or under each bound."""
    columns = [
        sa.func.sum(sa.case((seconds <= bound, 1), else_=0)).label(f"b{i}")
        for i, bound in enumerate(bounds)
    ]
    query = (
        sa.select(
            key.label("k"),
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(seconds), 0.0).label("s"),
            *columns,
        )
        .select_from(table)
        .where(*where)
        .group_by(key)
    )
    found: dict[str, Histogram] = {}
    for row in (await conn.execute(query)).mappings().all():
        buckets = [(bound, int(row[f"b{i}"] or 0)) for i, bound in enumerate(bounds)]
        buckets.append((float("inf"), int(row["n"])))
        found[row["k"]] = Histogram(buckets, int(row["n"]), float(row["s"] or 0.0))
    return found


@dataclass(frozen=True)
class ReadyQueue:
    """A type's jobs that may start now and are not yet claimed: what to scale workers on."""

    depth: int
    oldest_seconds: float  # how long the longest-waiting of them has been ready


async def ready_by_type(conn: AsyncConnection, now: datetime) -> dict[str, ReadyQueue]:
    j = jobs.c
    query = (
        sa.select(j.type, sa.func.count(), sa.func.min(j.run_at))
        .where(j.status == "pending", j.run_at <= now)
        .group_by(j.type)
    )
    found: dict[str, ReadyQueue] = {}
    for job_type, count, oldest in (await conn.execute(query)).all():
        # min() keeps the column's type: a timezone-aware UTC time on both databases.
        found[job_type] = ReadyQueue(int(count), max(0.0, (now - oldest).total_seconds()))
    return found


@dataclass(frozen=True)
class QueueOfType:
    ready: int  # may start now, not claimed
    oldest_ready_seconds: float
    scheduled: int  # pending with a later run_at (retries waiting, run_at in the future)
    running: int  # claimed by a worker (waiting on the model included)
    waiting_provider: int


async def queue_by_type(db: Database, now: datetime) -> dict[str, QueueOfType]:
    """The queue per type, for operators and autoscalers (`backburner queue stats`)."""
    j = jobs.c
    counts: dict[tuple[str, str], int] = {}
    async with db.read() as conn:
        ready = await ready_by_type(conn, now)
        state = sa.case(
            (j.substate == "waiting_provider", "waiting_provider"),
            (j.status == "running", "running"),
            else_="scheduled",
        )
        query = (
            sa.select(j.type, state, sa.func.count())
            .where(sa.or_(j.status == "running", sa.and_(j.status == "pending", j.run_at > now)))
            .group_by(j.type, state)
        )
        for job_type, kind, count in (await conn.execute(query)).all():
            counts[(job_type, kind)] = int(count)
    types = sorted({job_type for job_type, _ in counts} | set(ready))
    return {
        job_type: QueueOfType(
            ready=ready[job_type].depth if job_type in ready else 0,
            oldest_ready_seconds=ready[job_type].oldest_seconds if job_type in ready else 0.0,
            scheduled=counts.get((job_type, "scheduled"), 0),
            running=counts.get((job_type, "running"), 0)
            + counts.get((job_type, "waiting_provider"), 0),
            waiting_provider=counts.get((job_type, "waiting_provider"), 0),
        )
        for job_type in types
    }


async def collect(
    db: Database,
    *,
    now: datetime,
    duration_bounds: Sequence[float],
    latency_bounds: Sequence[float],
    heartbeat_timeout: float,
) -> Stats:
    stats = Stats()
    j, c = jobs.c, provider_calls.c
    dialect = db.dialect
    async with db.read() as conn:
        for job_type, status, substate, count in (
            await conn.execute(
                sa.select(j.type, j.status, j.substate, sa.func.count()).group_by(
                    j.type, j.status, j.substate
                )
            )
        ).all():
            state = "waiting_provider" if substate == "waiting_provider" else status
            key = (job_type, state)
            stats.jobs_by_state[key] = stats.jobs_by_state.get(key, 0) + int(count)
            stats.created[job_type] = stats.created.get(job_type, 0) + int(count)
            if status in TERMINAL:
                stats.finished[(job_type, status)] = int(count)
            if substate == "waiting_provider":
                stats.waiting_provider += int(count)
        stats.retries = {
            t: int(n)
            for t, n in (
                await conn.execute(sa.select(j.type, sa.func.sum(j.retry_count)).group_by(j.type))
            ).all()
        }
        ready = await ready_by_type(conn, now)
        stats.queue_depth = {job_type: queue.depth for job_type, queue in ready.items()}
        stats.queue_oldest = {job_type: queue.oldest_seconds for job_type, queue in ready.items()}
        stats.durations = await _histograms(
            conn,
            j.type,
            seconds_between(j.completed_at, j.started_at, dialect),
            [j.status.in_(TERMINAL), j.started_at.is_not(None)],
            duration_bounds,
            jobs,
        )
        stats.queue_latency = await _histograms(
            conn,
            j.type,
            seconds_between(j.started_at, j.created_at, dialect),
            [j.started_at.is_not(None)],
            latency_bounds,
            jobs,
        )
        for model, status, count, inp, cached, out, reasoning, cost in (
            await conn.execute(
                sa.select(
                    c.model,
                    c.status,
                    sa.func.count(),
                    *token_sums(),
                    sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0),
                ).group_by(c.model, c.status)
            )
        ).all():
            stats.provider_calls[(model, status)] = int(count)
            for kind, value in (
                ("input", inp),
                ("cached", cached),
                ("output", out),
                ("reasoning", reasoning),
            ):
                stats.tokens[(model, kind)] = stats.tokens.get((model, kind), 0) + int(value)
            stats.cost_usd[model] = stats.cost_usd.get(model, 0.0) + float(cost)
        stats.provider_latency = await _histograms(
            conn,
            c.model,
            seconds_between(c.completed_at, c.submitted_at, dialect),
            [c.completed_at.is_not(None)],
            latency_bounds,
            provider_calls,
        )
        d = deliveries.c
        for channel, status, count, attempts in (
            await conn.execute(
                sa.select(d.channel, d.status, sa.func.count(), sa.func.sum(d.attempts)).group_by(
                    d.channel, d.status
                )
            )
        ).all():
            stats.deliveries[(channel, status)] = int(count)
            stats.delivery_attempts[channel] = stats.delivery_attempts.get(channel, 0) + int(
                attempts or 0
            )
        for worker_id, beat in (
            await conn.execute(
                sa.select(workers.c.id, workers.c.heartbeat_at).where(
                    workers.c.stopped_at.is_(None)
                )
            )
        ).all():
            age = (now - beat).total_seconds()
            if age <= heartbeat_timeout:
                stats.workers_alive += 1
                stats.heartbeat_age[worker_id] = max(0.0, age)
        r = rate_limits.c
        for key, scale, blocked, waits, waited in (
            await conn.execute(
                sa.select(r.key, r.scale, r.blocked_until, r.waits, r.waited_seconds)
            )
        ).all():
            stats.rate_limit_waits[key] = int(waits)
            stats.rate_limit_waited[key] = float(waited)
            stats.rate_limit_scale[key] = float(scale)
            stats.rate_limit_blocked[key] = (
                max(0.0, (blocked - now).total_seconds()) if blocked is not None else 0.0
            )
    return stats
