"""API keys: created once (the secret is shown once), stored as a SHA-256 hash.

Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from backburner.errors import NotFound
from backburner.store import audit
from backburner.store.audit import Actor, Target
from backburner.store.database import Database
from backburner.store.models import ApiKey, Role, new_id
from backburner.store.schema import api_keys, sessions

KEY_PREFIX = "bb_"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    db: Database,
    *,
    owner: str,
    role: Role,
    now: datetime,
    name: str | None = None,
    actor: Actor | None = None,
) -> tuple[ApiKey, str]:
    """A new key for `owner`; returns its record and the secret, which is not kept."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    values = {
        "id": new_id(),
        "owner": owner,
        "role": role.value,
        "name": name,
        "prefix": secret[:10],
        "key_hash": hash_key(secret),
        "created_at": now,
    }
    async with db.write() as tx:
        row = (
            (await tx.conn.execute(sa.insert(api_keys).values(values).returning(*api_keys.c)))
            .mappings()
            .one()
        )
        await audit.record(
            tx.conn,
            actor,
            audit.Action.KEY_CREATED,
            Target("key", row["id"], owner),
            now,
            detail={"role": role.value},
        )
    return ApiKey.from_row(row), secret


async def find_active_key(db: Database, secret: str) -> ApiKey | None:
    query = sa.select(api_keys).where(
        api_keys.c.key_hash == hash_key(secret), api_keys.c.revoked_at.is_(None)
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return ApiKey.from_row(row) if row else None


async def list_keys(db: Database) -> list[ApiKey]:
    async with db.read() as conn:
        rows = (
            (await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)))
            .mappings()
            .all()
        )
    return [ApiKey.from_row(row) for row in rows]


async def count_active_keys(db: Database) -> int:
    query = sa.select(sa.func.count()).where(api_keys.c.revoked_at.is_(None))
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar() or 0)


async def revoke_key(
    db: Database, key_id: str, *, now: datetime, actor: Actor | None = None
) -> None:
    async with db.write() as tx:
        owner = (
            await tx.conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(api_keys.c.owner)
            )
        ).scalar()
        if owner is None:
            raise NotFound(f"no active key {key_id}")
        await audit.record(
            tx.conn, actor, audit.Action.KEY_REVOKED, Target("key", key_id, owner), now
        )


SESSION_PREFIX = "bbs_"


async def create_session(
    db: Database, key_id: str, *, now: datetime, ttl: timedelta, actor: Actor | None = None
) -> str:
    """A new dashboard session for a key; returns its token (only the hash is stored)."""
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    async with db.write() as tx:
        await tx.conn.execute(
            sa.insert(sessions).values(
                token_hash=hash_key(token), key_id=key_id, created_at=now, expires_at=now + ttl
            )
        )
        owner = actor.owner if actor else None
        await audit.record(
            tx.conn, actor, audit.Action.SESSION_SIGNED_IN, Target("key", key_id, owner), now
        )
    return token


async def find_session_key(db: Database, token: str, *, now: datetime) -> ApiKey | None:
    """The active key behind a live session, or None (unknown, expired or key revoked)."""
    query = (
        sa.select(api_keys)
        .join(sessions, sessions.c.key_id == api_keys.c.id)
        .where(
            sessions.c.token_hash == hash_key(token),
            sessions.c.expires_at > now,
            api_keys.c.revoked_at.is_(None),
        )
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return ApiKey.from_row(row) if row else None


async def end_session(
    db: Database, token: str, *, now: datetime | None = None, actor: Actor | None = None
) -> None:
    async with db.write() as tx:
        key_id = (
            await tx.conn.execute(
                sa.delete(sessions)
                .where(sessions.c.token_hash == hash_key(token))
                .returning(sessions.c.key_id)
            )
        ).scalar()
        if key_id is not None and actor is not None and now is not None:
            await audit.record(
                tx.conn,
                actor,
                audit.Action.SESSION_SIGNED_OUT,
                Target("key", key_id, actor.owner),
                now,
            )
