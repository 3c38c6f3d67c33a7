"""The notification outbox and its deliveries (the owners' configuration of endpoints,
channels and secrets is in `channels.py`).

A terminal job state and the notification row it owes are written in one transaction
(`owe_notifications`, called by every statement that ends a job). Dispatchers expand
each notification into deliveries (`expand_notifications`), claim due deliveries with a
lease (`claim_deliveries`, `FOR UPDATE SKIP LOCKED` on PostgreSQL) and record each
attempt (`record_attempts`). A dispatcher that dies mid-delivery loses its lease and the
delivery is sent again: at least once, with one stable event id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.errors import Conflict, NotFound
from backburner.store.channels import Endpoint, OwnerChannels, channels_of, endpoints_of
from backburner.store.database import CHANNEL_OUTBOX, Database
from backburner.store.models import Job, new_id
from backburner.store.schema import (
    deliveries,
    delivery_attempts,
    jobs,
    notifications,
    owner_channels,
    webhook_endpoints,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    id: str
    notification_id: int | None
    job_id: str
    owner: str
    channel: str
    target: str
    endpoint_id: str | None
    event_type: str
    event_id: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    give_up_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(**dict(row))


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt went and what to do next: `status` is pending (retry at
    `next_attempt_at`), succeeded, or failed (gave up)."""

    attempt: Attempt
    status: str
    next_attempt_at: datetime | None = None
    disable_endpoint: bool = False


@dataclass(frozen=True)
class OwedDelivery:
    """One delivery a notification owes, as the dispatcher decided it."""

    channel: str
    target: str
    endpoint_id: str | None
    payload: dict[str, Any]


def owes_notification() -> sa.ColumnElement[bool]:
    """Whether a job row may owe notifications: it asked for them, or its owner has
    endpoints or default channels. Jobs nobody listens to cost no outbox row."""
    return sa.or_(asks_for_notifications(), owner_listens())


def asks_for_notifications() -> sa.ColumnElement[bool]:
    """The job's own part of `owes_notification`: it named a callback or channels."""
    return sa.or_(jobs.c.callback_url.is_not(None), jobs.c.notify.is_not(None))


def owner_listens() -> sa.ColumnElement[bool]:
    """The owner's part of `owes_notification` (on `jobs.owner`): it has enabled
    endpoints or default channels, the same for all of its jobs."""
    return sa.or_(
        sa.select(webhook_endpoints.c.id)
        .where(webhook_endpoints.c.owner == jobs.c.owner, webhook_endpoints.c.enabled)
        .exists(),
        sa.select(owner_channels.c.owner).where(owner_channels.c.owner == jobs.c.owner).exists(),
    )


async def owe_notifications(conn: AsyncConnection, job_ids: Sequence[str], now: datetime) -> int:
    """Write the outbox rows for jobs that just ended, in the caller's transaction (which
    signals CHANNEL_OUTBOX when this returns more than zero)."""
    if not job_ids:
        return 0
    owed = sa.select(
        jobs.c.id,
        jobs.c.owner,
        sa.literal("job.") + jobs.c.status,
        sa.literal(now, type_=notifications.c.created_at.type),
    ).where(
        jobs.c.id.in_(list(job_ids)),
        jobs.c.status.in_(("succeeded", "failed", "canceled")),
        owes_notification(),
    )
    result = await conn.execute(
        sa.insert(notifications).from_select(["job_id", "owner", "event_type", "created_at"], owed)
    )
    return max(0, result.rowcount or 0)


async def expand_notifications(
    db: Database,
    *,
    now: datetime,
    retry_for: timedelta,
    owed: Callable[[Job, str, str, OwnerChannels | None, list[Endpoint]], list[OwedDelivery]],
    with_result: Callable[[Job], Awaitable[Job]] | None = None,
    limit: int = 200,
) -> int:
    """Turn unexpanded notifications into deliveries, in one transaction per batch; `owed`
    decides which deliveries a job's event owes (`with_result` first reads a result kept
    as an object). Safe with many dispatchers (SKIP LOCKED)."""
    pick = (
        sa.select(notifications)
        .where(notifications.c.expanded_at.is_(None))
        .order_by(notifications.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with db.write() as tx:
        rows = (await tx.conn.execute(pick)).mappings().all()
        if not rows:
            return 0
        job_ids = [row["job_id"] for row in rows]
        owners = {row["owner"] for row in rows}
        found = {
            row["id"]: Job.from_row(row)
            for row in (await tx.conn.execute(sa.select(jobs).where(jobs.c.id.in_(job_ids))))
            .mappings()
            .all()
        }
        channels = await channels_of(tx.conn, owners)
        endpoints = await endpoints_of(tx.conn, owners)
        values: list[dict[str, Any]] = []
        for row in rows:
            job = found.get(row["job_id"])
            if job is None:
                continue
            if job.result_object is not None and with_result is not None:
                job = await with_result(job)
            # Unique across databases and deployments (a counter is not: two deployments'
            # evt_1 would look like one event to a receiver deduplicating by id), and
            # stable: stored with each delivery, so a redelivery sends it again.
            event_id = f"evt_{new_id()}"
            for item in owed(
                job,
                row["event_type"],
                event_id,
                channels.get(job.owner),
                endpoints.get(job.owner, []),
            ):
                values.append(
                    {
                        "id": new_id(),
                        "notification_id": row["id"],
                        "job_id": job.id,
                        "owner": job.owner,
                        "channel": item.channel,
                        "target": item.target,
                        "endpoint_id": item.endpoint_id,
                        "event_type": row["event_type"],
                        "event_id": event_id,
                        "payload": item.payload,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "give_up_at": now + retry_for,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        # One delivery per notification, channel and target: an owner's two endpoints
        # with one URL (or a callback that is also an endpoint) make one.
        values = list(
            {(v["notification_id"], v["channel"], v["target"]): v for v in values}.values()
        )
        inserted = await _insert_isolated(tx.conn, values)
        await tx.conn.execute(
            sa.update(notifications)
            .where(notifications.c.id.in_([row["id"] for row in rows]))
            .values(expanded_at=now)
        )
        return inserted


async def _insert_isolated(conn: AsyncConnection, values: list[dict[str, Any]]) -> int:
    """Insert a batch of deliveries that spans many owners. Should the batch fail, each
    notification's deliveries go in on their own (a savepoint each), and one that cannot
    is logged and dropped: one owner's bad row never holds back another owner's."""
    if not values:
        return 0
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(deliveries), values)
        return len(values)
    except DBAPIError:
        pass
    by_notification: dict[Any, list[dict[str, Any]]] = {}
    for value in values:
        by_notification.setdefault(value["notification_id"], []).append(value)
    inserted = 0
    for notification_id, owed in by_notification.items():
        try:
            async with conn.begin_nested():
                await conn.execute(sa.insert(deliveries), owed)
            inserted += len(owed)
        except DBAPIError as error:
            log.error(
                "a notification's deliveries could not be stored; dropped",
                extra={
                    "notification_id": notification_id,
                    "job_id": owed[0]["job_id"],
                    "owner": owed[0]["owner"],
                    "error": f"{type(error.orig).__name__}: {error.orig}"[:300],
                },
            )
    return inserted


async def has_work(db: Database, *, now: datetime) -> tuple[bool, bool]:
    """Whether anything waits to be expanded, and to be sent (a read, for idle dispatchers)."""
    unexpanded = sa.select(notifications.c.id).where(notifications.c.expanded_at.is_(None))
    due = sa.select(deliveries.c.id).where(
        deliveries.c.status == "pending",
        deliveries.c.next_attempt_at <= now,
        sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now),
    )
    query = sa.select(unexpanded.exists(), due.exists())
    async with db.read() as conn:
        waiting, sendable = (await conn.execute(query)).one()
    return bool(waiting), bool(sendable)


async def claim_deliveries(
    db: Database, *, dispatcher_id: str, limit: int, lease_seconds: float, now: datetime
) -> list[Delivery]:
    """Take due deliveries for one dispatcher, leased so a dead one's are sent again."""
    due = (
        sa.select(deliveries.c.id)
        .where(
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= now,
            sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now),
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    claim = (
        sa.update(deliveries)
        .where(deliveries.c.id.in_(sa.select(due.c.id)))
        .values(
            lease_owner=dispatcher_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=deliveries.c.attempts + 1,
            updated_at=now,
        )
        .returning(*deliveries.c)
    )
    async with db.write() as tx:
        rows = (await tx.conn.execute(claim)).mappings().all()
    return [Delivery.from_row(row) for row in rows]


async def record_attempts(
    db: Database, *, dispatcher_id: str, results: Sequence[AttemptResult], now: datetime
) -> None:
    """Record a batch of attempts and where each delivery stands, in one transaction."""
    if not results:
        return
    update = (
        sa.update(deliveries)
        .where(
            deliveries.c.id == sa.bindparam("b_id"),
            deliveries.c.lease_owner == dispatcher_id,
        )
        .values(
            status=sa.bindparam("b_status"),
            next_attempt_at=sa.func.coalesce(
                sa.bindparam("b_next", type_=deliveries.c.next_attempt_at.type),
                deliveries.c.next_attempt_at,
            ),
            last_status_code=sa.bindparam("b_code", type_=sa.Integer()),
            last_error=sa.bindparam("b_error", type_=sa.Text()),
            delivered_at=sa.bindparam("b_delivered", type_=deliveries.c.delivered_at.type),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    async with db.write() as tx:
        await tx.conn.execute(
            update,
            [
                {
                    "b_id": r.attempt.delivery_id,
                    "b_status": r.status,
                    "b_next": r.next_attempt_at,
                    "b_code": r.attempt.status_code,
                    "b_error": r.attempt.error,
                    "b_delivered": r.attempt.at if r.status == "succeeded" else None,
                }
                for r in results
            ],
        )
        await tx.conn.execute(
            sa.insert(delivery_attempts),
            [vars(r.attempt) for r in results],
        )
        gone = [r.attempt.delivery_id for r in results if r.disable_endpoint]
        if gone:
            endpoint_ids = sa.select(deliveries.c.endpoint_id).where(
                deliveries.c.id.in_(gone), deliveries.c.endpoint_id.is_not(None)
            )
            await tx.conn.execute(
                sa.update(webhook_endpoints)
                .where(webhook_endpoints.c.id.in_(endpoint_ids))
                .values(enabled=False, disabled_reason="the receiver answered 410 Gone")
            )


async def list_deliveries(db: Database, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
    async with db.read() as conn:
        rows = (
            (
                await conn.execute(
                    sa.select(deliveries)
                    .where(deliveries.c.job_id == job_id)
                    .order_by(deliveries.c.created_at, deliveries.c.id)
                )
            )
            .mappings()
            .all()
        )
        found = [Delivery.from_row(row) for row in rows]
        attempts: dict[str, list[Attempt]] = {d.id: [] for d in found}
        if found:
            query = (
                sa.select(delivery_attempts)
                .where(delivery_attempts.c.delivery_id.in_(list(attempts)))
                .order_by(delivery_attempts.c.id)
            )
            for row in (await conn.execute(query)).mappings().all():
                values = dict(row)
                values.pop("id")
                attempts[row["delivery_id"]].append(Attempt(**values))
    return [(d, attempts[d.id]) for d in found]


async def get_delivery(db: Database, delivery_id: str, *, owner: str | None) -> Delivery:
    query = sa.select(deliveries).where(deliveries.c.id == delivery_id)
    if owner is not None:
        query = query.where(deliveries.c.owner == owner)
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return Delivery.from_row(row)


async def redeliver(
    db: Database, delivery_id: str, *, owner: str | None, now: datetime, retry_for: timedelta
) -> Delivery:
    """Send a delivery again (same event id), whatever became of it before."""
    query = sa.select(deliveries).where(deliveries.c.id == delivery_id).with_for_update()
    if owner is not None:
        query = query.where(deliveries.c.owner == owner)
    async with db.write() as tx:
        row = (await tx.conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"no delivery {delivery_id}")
        if row["status"] == "pending" and row["lease_owner"] is not None:
            raise Conflict(f"delivery {delivery_id} is being sent right now")
        updated = (
            (
                await tx.conn.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id == delivery_id)
                    .values(
                        status="pending",
                        next_attempt_at=now,
                        give_up_at=now + retry_for,
                        updated_at=now,
                    )
                    .returning(*deliveries.c)
                )
            )
            .mappings()
            .one()
        )
        await tx.signal(CHANNEL_OUTBOX)
    return Delivery.from_row(updated)
