"""What the operator pages show: recent activity in time buckets, latency percentiles,
workers with their leases. Aggregated in the database so a busy day costs a few grouped
scans, not a transfer of every job."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from backburner.store.database import Database
from backburner.store.schema import UtcDateTime, jobs, provider_calls, workers
from backburner.store.stats import TERMINAL, seconds_between

# Percentiles come from the latest finished jobs of the window, at most this many.
PERCENTILE_SAMPLE = 5000


@dataclass(frozen=True)
class Window:
    name: str
    since: datetime
    bucket_seconds: int
    buckets: int

    def start_of(self, index: int) -> datetime:
        return self.since + timedelta(seconds=index * self.bucket_seconds)


def windows(now: datetime) -> list[Window]:
    """The last hour in 5-minute buckets and the last day in hourly ones."""
    hour = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5)
    day = now.replace(minute=0, second=0, microsecond=0)
    return [
        Window("hour", hour - timedelta(minutes=55), 300, 12),
        Window("day", day - timedelta(hours=23), 3600, 24),
    ]


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    count: int


@dataclass
class Activity:
    window: Window
    finished: dict[str, list[int]] = field(default_factory=dict)  # outcome -> per bucket
    created: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    calls: dict[str, list[int]] = field(default_factory=dict)  # call status -> per bucket
    queue_wait: Percentiles | None = None
    run_time: Percentiles | None = None

    @property
    def error_rate(self) -> float | None:
        done = sum(sum(counts) for counts in self.finished.values())
        failed = sum(self.finished.get("failed", []))
        return failed / done if done else None


@dataclass(frozen=True)
class WorkerView:
    id: str
    hostname: str
    pid: int
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    leases: int
    next_lease_expiry: datetime | None


def percentiles(values: Sequence[float]) -> Percentiles | None:
    if not values:
        return None
    if len(values) == 1:
        return Percentiles(values[0], values[0], values[0], 1)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return Percentiles(cuts[49], cuts[94], cuts[98], len(values))


def first_id_at(moment: datetime) -> str:
    """The smallest job id (UUIDv7 layout, see models.new_id) created at `moment` or later."""
    ms = int(moment.timestamp() * 1000)
    return str(uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80))


def _bucket(
    column: sa.ColumnElement[datetime], window: Window, dialect: str
) -> sa.ColumnElement[int]:
    since = sa.bindparam(None, window.since, type_=UtcDateTime())
    offset = seconds_between(column, since, dialect) / window.bucket_seconds
    # Only rows at or after `since` are bucketed, so SQLite's truncating cast (it may lack
    # floor()) and PostgreSQL's floor agree.
    if dialect == "postgresql":
        offset = sa.func.floor(offset)
    return sa.cast(offset, sa.Integer)


def _counts(rows: Sequence[Any], window: Window) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for index, key, count in rows:
        if 0 <= index < window.buckets:
            found.setdefault(key, [0] * window.buckets)[index] += int(count)
    return found


async def activity(db: Database, window: Window) -> Activity:
    j, c = jobs.c, provider_calls.c
    found = Activity(window)
    async with db.read() as conn:
        finished_bucket = _bucket(j.completed_at, window, db.dialect)
        rows = await conn.execute(
            sa.select(finished_bucket, j.status, sa.func.count())
            .where(j.completed_at >= window.since, j.status.in_(TERMINAL))
            .group_by(finished_bucket, j.status)
        )
        found.finished = _counts(rows.all(), window)
        created_bucket = _bucket(j.created_at, window, db.dialect)
        rows = await conn.execute(
            sa.select(created_bucket, sa.literal("created"), sa.func.count())
            # Ids begin with their creation time: the primary key finds the window's jobs.
            .where(j.id >= first_id_at(window.since), j.created_at >= window.since)
            .group_by(created_bucket)
        )
        found.created = _counts(rows.all(), window).get("created", [0] * window.buckets)
        call_bucket = _bucket(c.submitted_at, window, db.dialect)
        found.tokens = [0] * window.buckets
        found.cost_usd = [0.0] * window.buckets
        for index, status, count, tokens, cost in (
            await conn.execute(
                sa.select(
                    call_bucket,
                    c.status,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(c.input_tokens + c.output_tokens), 0),
                    sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0),
                )
                .where(c.submitted_at >= window.since)
                .group_by(call_bucket, c.status)
            )
        ).all():
            if 0 <= index < window.buckets:
                found.calls.setdefault(status, [0] * window.buckets)[index] += int(count)
                found.tokens[index] += int(tokens)
                found.cost_usd[index] += float(cost)
        sample = (
            await conn.execute(
                sa.select(
                    seconds_between(j.started_at, j.created_at, db.dialect),
                    seconds_between(j.completed_at, j.started_at, db.dialect),
                )
                .where(
                    j.completed_at >= window.since,
                    j.status.in_(TERMINAL),
                    j.started_at.is_not(None),
                )
                .order_by(j.completed_at.desc())
                .limit(PERCENTILE_SAMPLE)
            )
        ).all()
    found.queue_wait = percentiles([max(0.0, float(wait)) for wait, _ in sample])
    found.run_time = percentiles([max(0.0, float(run)) for _, run in sample])
    return found


async def queue_by_type_and_state(db: Database) -> dict[str, dict[str, int]]:
    """Jobs not yet ended, per type and state (waiting on the provider apart)."""
    j = jobs.c
    state = sa.case((j.substate == "waiting_provider", "waiting_provider"), else_=j.status)
    query = (
        sa.select(j.type, state, sa.func.count())
        .where(j.status.in_(("pending", "running")))
        .group_by(j.type, state)
    )
    found: dict[str, dict[str, int]] = {}
    async with db.read() as conn:
        for job_type, status, count in (await conn.execute(query)).all():
            found.setdefault(job_type, {})[status] = int(count)
    return found


async def live_workers(db: Database, *, now: datetime, silence: timedelta) -> list[WorkerView]:
    """Workers heard from within `silence`, with how many leases each holds."""
    w, j = workers.c, jobs.c
    leases = (
        sa.select(
            j.lease_owner.label("worker_id"),
            sa.func.count().label("leases"),
            sa.func.min(j.lease_expires_at, type_=UtcDateTime()).label("next_expiry"),
        )
        .where(j.status == "running", j.lease_owner.is_not(None))
        .group_by(j.lease_owner)
        .subquery()
    )
    query = (
        sa.select(
            w.id,
            w.hostname,
            w.pid,
            w.concurrency,
            w.started_at,
            w.heartbeat_at,
            sa.func.coalesce(leases.c.leases, 0),
            leases.c.next_expiry,
        )
        .select_from(workers.outerjoin(leases, leases.c.worker_id == w.id))
        .where(w.stopped_at.is_(None), w.heartbeat_at > now - silence)
        .order_by(w.started_at)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        WorkerView(
            id=row[0],
            hostname=row[1],
            pid=int(row[2]),
            concurrency=int(row[3]),
            started_at=row[4],
            heartbeat_at=row[5],
            leases=int(row[6]),
            next_lease_expiry=row[7],
        )
        for row in rows
    ]
