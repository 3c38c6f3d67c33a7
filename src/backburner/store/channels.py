"""Notification configuration: owners' webhook endpoints, default channels (e-mail,
Slack, Teams) and webhook signing secrets. The outbox itself is in `outbox.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.errors import Conflict, NotFound
from backburner.store import audit
from backburner.store.audit import Actor, Target
from backburner.store.database import Database
from backburner.store.models import new_id
from backburner.store.schema import owner_channels, webhook_endpoints, webhook_secrets

EVENT_TYPES = ("job.succeeded", "job.failed", "job.canceled")


@dataclass(frozen=True)
class Endpoint:
    id: str
    owner: str
    url: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class OwnerChannels:
    owner: str
    emails: list[str]
    slack_webhook_url: str | None
    teams_webhook_url: str | None
    event_types: list[str]


async def signing_secrets(db: Database, owners: set[str], now: datetime) -> dict[str, list[str]]:
    """Each owner's secrets still valid for signing, newest first."""
    query = (
        sa.select(webhook_secrets.c.owner, webhook_secrets.c.secret)
        .where(
            webhook_secrets.c.owner.in_(list(owners)),
            sa.or_(webhook_secrets.c.expires_at.is_(None), webhook_secrets.c.expires_at > now),
        )
        .order_by(webhook_secrets.c.id.desc())
    )
    found: dict[str, list[str]] = {}
    async with db.read() as conn:
        for owner, secret in (await conn.execute(query)).all():
            found.setdefault(owner, []).append(secret)
    return found


async def current_secret(
    db: Database, owner: str, *, now: datetime, make: Callable[[], str]
) -> str:
    """The owner's current signing secret, made on first use."""
    query = (
        sa.select(webhook_secrets.c.secret)
        .where(webhook_secrets.c.owner == owner, webhook_secrets.c.expires_at.is_(None))
        .order_by(webhook_secrets.c.id.desc())
        .limit(1)
    )
    async with db.write() as tx:
        found = (await tx.conn.execute(query)).scalar()
        if found is not None:
            return str(found)
        secret = make()
        await tx.conn.execute(
            sa.insert(webhook_secrets).values(owner=owner, secret=secret, created_at=now)
        )
        return secret


async def rotate_secret(
    db: Database,
    owner: str,
    *,
    now: datetime,
    overlap: timedelta,
    make: Callable[[], str],
    actor: Actor | None = None,
) -> tuple[str, datetime]:
    """A new current secret; the previous one keeps signing until `now + overlap`."""
    until = now + overlap
    async with db.write() as tx:
        await tx.conn.execute(
            sa.update(webhook_secrets)
            .where(webhook_secrets.c.owner == owner, webhook_secrets.c.expires_at.is_(None))
            .values(expires_at=until)
        )
        secret = make()
        await tx.conn.execute(
            sa.insert(webhook_secrets).values(owner=owner, secret=secret, created_at=now)
        )
        await audit.record(
            tx.conn, actor, audit.Action.WEBHOOK_SECRET_ROTATED, Target("owner", owner, owner), now
        )
    return secret, until


async def add_endpoint(
    db: Database, owner: str, url: str, event_types: list[str], *, now: datetime, limit: int
) -> Endpoint:
    """A new endpoint of the owner's; Conflict if the owner has one for this URL already
    (it would receive every event twice) or has `limit` endpoints already (each job's end
    owes a delivery to each). Both are checked with the owner's endpoints serialised, so
    two racing requests cannot both pass."""
    endpoint = Endpoint(new_id(), owner, url, event_types, True, None, now)
    mine = sa.select(webhook_endpoints.c.id, webhook_endpoints.c.url).where(
        webhook_endpoints.c.owner == owner
    )
    async with db.write() as tx:
        await tx.serialize_on(f"webhook_endpoints:{owner}")
        existing = (await tx.conn.execute(mine)).all()
        for endpoint_id, existing_url in existing:
            if existing_url == url:
                raise Conflict(f"you have an endpoint for this URL already: {endpoint_id}")
        if len(existing) >= limit:
            raise Conflict(
                f"you have {len(existing)} webhook endpoints; at most {limit} are allowed"
            )
        await tx.conn.execute(sa.insert(webhook_endpoints).values(**vars(endpoint)))
    return endpoint


async def list_endpoints(db: Database, owner: str) -> list[Endpoint]:
    query = (
        sa.select(webhook_endpoints)
        .where(webhook_endpoints.c.owner == owner)
        .order_by(webhook_endpoints.c.created_at)
    )
    async with db.read() as conn:
        return [Endpoint(**dict(row)) for row in (await conn.execute(query)).mappings().all()]


async def delete_endpoint(db: Database, endpoint_id: str, *, owner: str) -> None:
    async with db.write() as tx:
        result = await tx.conn.execute(
            sa.delete(webhook_endpoints).where(
                webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.owner == owner
            )
        )
    if not result.rowcount:
        raise NotFound(f"no webhook endpoint {endpoint_id}")


async def get_channels(db: Database, owner: str) -> OwnerChannels | None:
    query = sa.select(owner_channels).where(owner_channels.c.owner == owner)
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return _owner_channels(row) if row else None


async def set_channels(db: Database, channels: OwnerChannels, *, now: datetime) -> None:
    async with db.write() as tx:
        await tx.conn.execute(
            sa.delete(owner_channels).where(owner_channels.c.owner == channels.owner)
        )
        await tx.conn.execute(sa.insert(owner_channels).values(**vars(channels), updated_at=now))


async def channels_of(conn: AsyncConnection, owners: set[str]) -> dict[str, OwnerChannels]:
    """Each of these owners' default channels (in the caller's transaction)."""
    query = sa.select(owner_channels).where(owner_channels.c.owner.in_(list(owners)))
    return {
        row["owner"]: _owner_channels(row) for row in (await conn.execute(query)).mappings().all()
    }


async def endpoints_of(conn: AsyncConnection, owners: set[str]) -> dict[str, list[Endpoint]]:
    """Each of these owners' enabled endpoints (in the caller's transaction)."""
    query = sa.select(webhook_endpoints).where(
        webhook_endpoints.c.owner.in_(list(owners)), webhook_endpoints.c.enabled
    )
    found: dict[str, list[Endpoint]] = {}
    for row in (await conn.execute(query)).mappings().all():
        found.setdefault(row["owner"], []).append(Endpoint(**dict(row)))
    return found


def _owner_channels(row: Any) -> OwnerChannels:
    return OwnerChannels(
        owner=row["owner"],
        emails=list(row["emails"]),
        slack_webhook_url=row["slack_webhook_url"],
        teams_webhook_url=row["teams_webhook_url"],
        event_types=list(row["event_types"]),
    )
