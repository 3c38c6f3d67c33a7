"""Uploaded documents: their extracted text is what summarisation jobs read."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from backburner.errors import NotFound
from backburner.store import audit, objects
from backburner.store.audit import Actor, Target
from backburner.store.database import Database, Tx
from backburner.store.models import Document, DocumentEntry, new_id
from backburner.store.schema import documents


async def take_document(
    db: Database,
    *,
    owner: str,
    filename: str,
    content_type: str,
    size_bytes: int,
    text: str,
    now: datetime,
    actor: Actor | None = None,
    document_id: str | None = None,
    original_key: str | None = None,
    checksum: str | None = None,
) -> tuple[Document, bool]:
    """Store a document (its original already stored as the object `original_key`),
    unless its owner already has one with the same content: then that one, and False (a
    file uploaded twice is one document). `checksum`: the SHA-256 of the file as uploaded
    (`content_checksum`); without a file, of its text."""
    checksum = checksum or content_checksum(text.encode())
    async with db.write() as tx:
        await tx.serialize_on(f"document:{owner}:{checksum}")  # two at once make one
        same = (
            sa.select(documents)
            .where(documents.c.owner == owner, documents.c.sha256 == checksum)
            .order_by(documents.c.created_at)
            .limit(1)
        )
        row = (await tx.conn.execute(same)).mappings().first()
        if row is not None:
            await _audit_upload(tx, actor, row["id"], owner, now, duplicate=True, filename=filename)
            return Document.from_row(row), False
        values = {
            "id": document_id or new_id(),
            "owner": owner,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": size_bytes,
            "char_count": len(text),
            "sha256": checksum,
            "text": text,
            "created_at": now,
            "original_key": original_key,
        }
        return await _insert(tx, values, actor), True


async def same_content(db: Database, owner: str, checksum: str) -> DocumentEntry | None:
    """The owner's document with this content checksum, if there is one."""
    query = (
        sa.select(*_ENTRY_COLUMNS)
        .where(documents.c.owner == owner, documents.c.sha256 == checksum)
        .order_by(documents.c.created_at)
        .limit(1)
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return DocumentEntry(**dict(row)) if row is not None else None


def content_checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _insert(tx: Tx, values: dict[str, Any], actor: Actor | None) -> Document:
    row = (
        (await tx.conn.execute(sa.insert(documents).values(values).returning(*documents.c)))
        .mappings()
        .one()
    )
    await _audit_upload(
        tx,
        actor,
        row["id"],
        row["owner"],
        row["created_at"],
        content_type=row["content_type"],
        size_bytes=row["size_bytes"],
    )
    return Document.from_row(row)


async def _audit_upload(
    tx: Tx, actor: Actor | None, document_id: str, owner: str, now: datetime, **detail: Any
) -> None:
    await audit.record(
        tx.conn,
        actor,
        audit.Action.DOCUMENT_UPLOADED,
        Target("document", document_id, owner),
        now,
        detail=detail,
    )


_ENTRY_COLUMNS = [
    documents.c[name] for name in DocumentEntry.__dataclass_fields__
]  # all but the text


async def list_documents(
    db: Database, *, owner: str | None, limit: int, before: str | None = None
) -> tuple[list[DocumentEntry], bool]:
    """Newest first, keyset-paginated on the time-ordered id, and whether more follow."""
    c = documents.c
    query = sa.select(*_ENTRY_COLUMNS).order_by(c.id.desc()).limit(limit + 1)
    if owner is not None:
        query = query.where(c.owner == owner)
    if before is not None:
        query = query.where(c.id < before)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [DocumentEntry(**dict(row)) for row in rows[:limit]], len(rows) > limit


async def characters_of(db: Database, ids: Sequence[str], *, owner: str | None) -> dict[str, int]:
    """The length of each of these documents that exists (and is `owner`'s), by id."""
    if not ids:
        return {}
    query = sa.select(documents.c.id, documents.c.char_count).where(documents.c.id.in_(list(ids)))
    if owner is not None:
        query = query.where(documents.c.owner == owner)
    async with db.read() as conn:
        return {row[0]: int(row[1]) for row in (await conn.execute(query)).all()}


async def names_of(db: Database, ids: Sequence[str]) -> dict[str, str]:
    """File names by document id (no text read: pages label steps with them)."""
    if not ids:
        return {}
    query = sa.select(documents.c.id, documents.c.filename).where(documents.c.id.in_(list(ids)))
    async with db.read() as conn:
        return {row[0]: row[1] for row in (await conn.execute(query)).all()}


async def get_documents(
    db: Database, ids: Sequence[str], *, owner: str | None
) -> dict[str, Document]:
    """The documents among `ids` that exist (and, with `owner`, belong to that owner)."""
    if not ids:
        return {}
    query = sa.select(documents).where(documents.c.id.in_(list(ids)))
    if owner is not None:
        query = query.where(documents.c.owner == owner)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return {row["id"]: Document.from_row(row) for row in rows}


async def delete_document(
    db: Database, document_id: str, *, owner: str | None, now: datetime, actor: Actor
) -> None:
    """Delete a document, its text and (once this commits, by the sweeper) its original;
    NotFound if it is not there (or not the owner's). Jobs that named it keep their
    results; a new job naming it is refused."""
    query = sa.delete(documents).where(documents.c.id == document_id)
    if owner is not None:
        query = query.where(documents.c.owner == owner)
    async with db.write() as tx:
        deleted = (
            await tx.conn.execute(query.returning(documents.c.owner, documents.c.original_key))
        ).first()
        if deleted is None:
            raise NotFound(f"no document {document_id}")
        deleted_owner, original_key = deleted
        await objects.doom(tx.conn, [original_key], now)
        await audit.record(
            tx.conn,
            actor,
            audit.Action.DOCUMENT_DELETED,
            Target("document", document_id, deleted_owner),
            now,
        )
