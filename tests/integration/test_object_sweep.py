"""The sweeper deletes exactly the objects no row names: writes cut off before their row
committed (once their grace has passed), and those of deleted rows; never one a row
still names, nor one whose write is still under way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backburner.storage import Objects, document_key, open_objects
from backburner.store import Database
from backburner.store import documents as documents_store
from backburner.store import objects as objects_store
from backburner.store.audit import SYSTEM
from backburner.worker.objects import sweep
from tests.conftest import KEYRING, fast_settings


def objects_in(tmp_path: Path, db_url: str) -> Objects:
    settings = fast_settings(db_url, storage_url=str(tmp_path / "objects"))
    return open_objects(settings, KEYRING)


async def test_only_objects_no_row_names_are_swept(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    objects = objects_in(tmp_path, db_url)
    now = datetime.now(UTC)

    # A write cut off before its row: listed, written, never named.
    orphan = "documents/00000000-0000-7000-8000-000000000001"
    await objects_store.expect(db, orphan, now)
    await objects.put(orphan, b"orphan")

    # A document whose row committed: named.
    kept_id = "00000000-0000-7000-8000-000000000002"
    await objects_store.expect(db, document_key(kept_id), now)
    await objects.put(document_key(kept_id), b"kept")
    document, _ = await documents_store.take_document(
        db,
        owner="alice",
        filename="kept.txt",
        content_type="text/plain",
        size_bytes=4,
        text="kept",
        now=now,
        document_id=kept_id,
        original_key=document_key(kept_id),
    )

    # Within the grace nothing goes: the orphan's write may still be under way.
    assert await sweep(db, objects, now + timedelta(minutes=5)) == 0
    assert await objects.exists(orphan)

    later = now + objects_store.WRITE_GRACE + timedelta(seconds=1)
    assert await sweep(db, objects, later) == 1
    assert not await objects.exists(orphan)
    assert await objects.get(document_key(kept_id)) == b"kept"
    assert await objects_store.pending(db) == 0

    # Deleting the row lists its object, due at once.
    await documents_store.delete_document(db, document.id, owner="alice", now=later, actor=SYSTEM)
    assert await sweep(db, objects, later) == 1
    assert not await objects.exists(document_key(kept_id))
    assert await objects_store.pending(db) == 0


async def test_a_sealed_object_does_not_open_under_another_key_or_name(
    db_url: str, tmp_path: Path
) -> None:
    objects = objects_in(tmp_path, db_url)
    await objects.put("documents/a", b"secret words")
    raw = (tmp_path / "objects" / "documents" / "a").read_bytes()
    assert b"secret words" not in raw
    # Moved under another key, it does not open (the key is the associated data).
    (tmp_path / "objects" / "documents" / "b").write_bytes(raw)
    with pytest.raises(ValueError, match="does not open"):
        await objects.get("documents/b")
