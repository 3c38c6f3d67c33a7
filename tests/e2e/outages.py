"""What the outage tests share: a server's database made ready, requests sent until they
are taken, and the check that every job created ended succeeded exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from backburner.store import Database, Role, migrate
from backburner.store import keys as keys_store
from backburner.store.schema import job_events, jobs
from tests.conftest import KEYRING, wait_for


async def prepared(url: str) -> str:
    """Migrate the server's database and make a member key (alice's)."""
    db = Database(url, sealer=KEYRING)
    try:
        await migrate.upgrade(db)
        _, key = await keys_store.create_key(
            db, owner="alice", role=Role.MEMBER, now=datetime.now(UTC)
        )
    finally:
        await db.close()
    return key


async def sent_until_taken(
    client: httpx.AsyncClient,
    path: str,
    body: object,
    headers: dict[str, str],
    refused: list[int],
) -> Any:
    """POSTed until it is taken, again and again with the same idempotency keys; each
    refusal's status is noted in `refused`."""
    while True:
        try:
            answer = await client.post(path, json=body, headers=headers)
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code in (200, 201):
            return answer.json()
        if answer is not None:
            refused.append(answer.status_code)
        await asyncio.sleep(0.1)


async def succeeded_once_each(db: Database, total: int, *, within: float) -> tuple[int, list[int]]:
    """Wait until `total` jobs have succeeded; then the jobs stored, and for each job that
    succeeded, how many times it did."""

    async def all_succeeded() -> bool:
        async with db.read() as conn:
            query = sa.select(sa.func.count()).where(jobs.c.status == "succeeded")
            return (await conn.execute(query)).scalar_one() == total

    await wait_for(all_succeeded, within=within, interval=0.5)
    async with db.read() as conn:
        stored = (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar_one()
        ended = (
            await conn.execute(
                sa.select(sa.func.count())
                .where(job_events.c.to_status == "succeeded")
                .group_by(job_events.c.job_id)
            )
        ).scalars()
        return int(stored), [int(count) for count in ended]
