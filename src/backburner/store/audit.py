"""The audit trail: who did what to whose data, and from where.

A change is recorded in the same transaction as the change itself (the store's writers take
an `Actor` and call `record` inside their transaction), so there is never a change without
its record nor a record of a change that rolled back. Reads of results are recorded on
their own. Rows are never updated (a trigger refuses it); they leave only by retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.store.database import Database
from backburner.store.schema import audit_events


class Action(StrEnum):
    JOB_CREATED = "job.created"
    JOB_READ = "job.read"
    JOB_RESULT_READ = "job.result_read"
    JOB_RESULT_DOWNLOADED = "job.result_downloaded"
    JOB_CANCELED = "job.canceled"
    JOB_RETRIED = "job.retried"
    JOB_DELETED = "job.deleted"
    DOCUMENT_UPLOADED = "document.uploaded"
    DOCUMENT_READ = "document.read"
    DOCUMENT_DOWNLOADED = "document.downloaded"  # its original file
    DOCUMENT_DELETED = "document.deleted"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    WEBHOOK_SECRET_ROTATED = "webhook_secret.rotated"
    OWNER_LIMITS_CHANGED = "owner.limits_changed"
    OWNER_ERASED = "owner.erased"
    SESSION_SIGNED_IN = "session.signed_in"
    SESSION_SIGNED_OUT = "session.signed_out"
    ENCRYPTION_KEY_ADDED = "encryption.key_added"
    ENCRYPTION_KEY_RETIRED = "encryption.key_retired"
    JOB_RATED = "job.rated"
    EVAL_STARTED = "eval.started"
    SCHEDULE_CREATED = "schedule.created"
    SCHEDULE_CHANGED = "schedule.changed"
    SCHEDULE_DELETED = "schedule.deleted"


@dataclass(frozen=True)
class Actor:
    """Who acts: a key (directly, or through its dashboard session) or the system (the
    command line, a worker's own decisions), and the request it came with."""

    kind: str  # "key" | "system"
    key_id: str | None = None
    owner: str | None = None
    role: str | None = None
    client_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM = Actor("system")


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    actor: Actor
    action: str
    target_type: str
    target_id: str
    owner: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class Target:
    """What an event is about: its type ("job", "document", "key", "owner"), its id, and
    whose data it is."""

    type: str
    id: str
    owner: str | None


async def record(
    conn: AsyncConnection,
    actor: Actor | None,
    action: Action,
    target: Target,
    at: datetime,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's transaction. No actor: a change made by the
    service's own code paths that are not anyone's request (nothing to record)."""
    await record_many(conn, actor, action, [(target, detail)], at)


async def record_many(
    conn: AsyncConnection,
    actor: Actor | None,
    action: Action,
    targets: Sequence[tuple[Target, dict[str, Any] | None]],
    at: datetime,
) -> None:
    """One event per target (with its detail), in one statement: a batch of changes."""
    await record_each(conn, action, [(actor, target, detail, at) for target, detail in targets])


async def record_each(
    conn: AsyncConnection,
    action: Action,
    entries: Sequence[tuple[Actor | None, Target, dict[str, Any] | None, datetime]],
) -> None:
    """One event per entry, each by its own actor at its own time (none: not recorded), in
    one statement: changes asked for by several requests and written together."""
    rows = rows_of_each(action, entries)
    if rows:
        await conn.execute(sa.insert(audit_events), rows)


def rows_of_each(
    action: Action,
    entries: Sequence[tuple[Actor | None, Target, dict[str, Any] | None, datetime]],
) -> list[dict[str, Any]]:
    """The audit_events rows of record_each's entries (none for an entry without actor)."""
    return [
        {
            "at": at,
            "actor_kind": actor.kind,
            "actor_key_id": actor.key_id,
            "actor_owner": actor.owner,
            "actor_role": actor.role,
            "action": action.value,
            "target_type": target.type,
            "target_id": target.id,
            "owner": target.owner,
            "client_address": actor.client_address,
            "user_agent": actor.user_agent,
            "request_id": actor.request_id,
            "detail": detail,
        }
        for actor, target, detail, at in entries
        if actor is not None
    ]


async def record_read(
    db: Database, actor: Actor, action: Action, target: Target, at: datetime
) -> None:
    """A read changes nothing: its record is a statement of its own."""
    async with db.read() as conn:
        await record(conn, actor, action, target, at)


@dataclass(frozen=True)
class AuditFilter:
    owner: str | None = None  # whose data (members: always their own)
    actor_key_id: str | None = None
    action: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_events(
    db: Database, where: AuditFilter, *, before_id: int | None, limit: int
) -> tuple[list[AuditEvent], bool]:
    """Newest first; `before_id` continues a page. Returns the events and whether more
    follow."""
    query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit + 1)
    c = audit_events.c
    if where.owner is not None:
        query = query.where(c.owner == where.owner)
    if where.actor_key_id is not None:
        query = query.where(c.actor_key_id == where.actor_key_id)
    if where.action is not None:
        query = query.where(c.action == where.action)
    if where.target_id is not None:
        query = query.where(c.target_id == where.target_id)
    if where.since is not None:
        query = query.where(c.at >= where.since)
    if where.until is not None:
        query = query.where(c.at < where.until)
    if before_id is not None:
        query = query.where(c.id < before_id)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [_event(row) for row in rows[:limit]], len(rows) > limit


async def events_since(
    db: Database, since: datetime, *, after_id: int, limit: int
) -> list[AuditEvent]:
    """Oldest first from `since`, for exports: pages by id."""
    query = (
        sa.select(audit_events)
        .where(audit_events.c.at >= since, audit_events.c.id > after_id)
        .order_by(audit_events.c.id)
        .limit(limit)
    )
    async with db.read() as conn:
        return [_event(row) for row in (await conn.execute(query)).mappings().all()]


def _event(row: sa.RowMapping) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        at=row["at"],
        actor=Actor(
            kind=row["actor_kind"],
            key_id=row["actor_key_id"],
            owner=row["actor_owner"],
            role=row["actor_role"],
            client_address=row["client_address"],
            user_agent=row["user_agent"],
            request_id=row["request_id"],
        ),
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        owner=row["owner"],
        detail=row["detail"],
    )
