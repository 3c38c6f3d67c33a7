"""Which objects to delete: `stale_objects`, and whether a row still names an object.

An object is written only after its key is listed here, due an hour later (`expect`), and
it is named by its row when that row commits. Deleting the row lists the key again, due
at once (`doom`, in the deleting transaction). The sweeper (worker.objects) deletes a due
object unless a row names it, so neither a crash between the object write and the row,
nor one between the row's deletion and the object's, leaves an object behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.store.database import Database
from backburner.store.schema import documents, jobs, stale_objects

# Longer than any object write and the commit of its row.
WRITE_GRACE = timedelta(hours=1)

DOCUMENTS_PREFIX = "documents/"
RESULTS_PREFIX = "results/"


async def expect(db: Database, key: str, now: datetime) -> None:
    """Note an object about to be written: if its row never names it, it goes."""
    async with db.write() as tx:
        await _list(tx.conn, [key], now + WRITE_GRACE)


async def doom(conn: AsyncConnection, keys: Iterable[str | None], now: datetime) -> None:
    """In the transaction deleting their rows: these objects go as soon as it commits."""
    await _list(conn, [key for key in keys if key], now)


async def _list(conn: AsyncConnection, keys: Sequence[str], due_at: datetime) -> None:
    if not keys:
        return
    unique = sorted(set(keys))
    await conn.execute(sa.delete(stale_objects).where(stale_objects.c.key.in_(unique)))
    await conn.execute(sa.insert(stale_objects), [{"key": key, "due_at": due_at} for key in unique])


async def due(db: Database, now: datetime, *, limit: int = 200) -> list[str]:
    query = (
        sa.select(stale_objects.c.key)
        .where(stale_objects.c.due_at <= now)
        .order_by(stale_objects.c.due_at)
        .limit(limit)
    )
    async with db.read() as conn:
        return list((await conn.execute(query)).scalars())


async def still_named(db: Database, keys: Sequence[str]) -> set[str]:
    """The keys among these that a document or job row names (found by the id in the key,
    so by primary key)."""
    by_document = {
        k.removeprefix(DOCUMENTS_PREFIX): k for k in keys if k.startswith(DOCUMENTS_PREFIX)
    }
    by_job = {
        k.removeprefix(RESULTS_PREFIX).split("/", 1)[0]: k
        for k in keys
        if k.startswith(RESULTS_PREFIX)
    }
    named: set[str] = set()
    async with db.read() as conn:
        if by_document:
            rows = await conn.execute(
                sa.select(documents.c.original_key).where(documents.c.id.in_(list(by_document)))
            )
            named |= {key for key in rows.scalars() if key}
        if by_job:
            rows = await conn.execute(
                sa.select(jobs.c.result_object).where(jobs.c.id.in_(list(by_job)))
            )
            named |= {key for key in rows.scalars() if key}
    return named & set(keys)


async def forget(db: Database, keys: Sequence[str], now: datetime) -> None:
    """The objects are gone (or kept because named): stop listing them, unless listed
    again since with a later due time (a new write under way)."""
    if not keys:
        return
    async with db.write() as tx:
        await tx.conn.execute(
            sa.delete(stale_objects).where(
                stale_objects.c.key.in_(list(keys)), stale_objects.c.due_at <= now
            )
        )


async def pending(db: Database) -> int:
    async with db.read() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(stale_objects))).scalar_one()
        )


async def named_page(
    db: Database, kind: str, *, after: str | None, limit: int = 200
) -> list[tuple[str, str]]:
    """(row id, object key) of documents (`kind` "documents") or jobs ("results") that name
    an object, in id order after `after`: how key rotation walks every object."""
    table, column = (
        (documents, documents.c.original_key)
        if kind == "documents"
        else (jobs, jobs.c.result_object)
    )
    query = (
        sa.select(table.c.id, column).where(column.is_not(None)).order_by(table.c.id).limit(limit)
    )
    if after is not None:
        query = query.where(table.c.id > after)
    async with db.read() as conn:
        return [(row[0], row[1]) for row in (await conn.execute(query)).all()]
