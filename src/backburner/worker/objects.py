"""Deleting objects no row names any more (see store.objects for how keys get listed)."""

from __future__ import annotations

from datetime import datetime

from backburner.storage import Objects
from backburner.store import Database
from backburner.store import objects as objects_store

BATCH = 200


async def sweep(db: Database, objects: Objects, now: datetime) -> int:
    """Delete the due objects that no document or job names; returns how many went. A
    store that fails leaves its keys listed for the next round."""
    removed = 0
    while batch := await objects_store.due(db, now, limit=BATCH):
        named = await objects_store.still_named(db, batch)
        gone = [key for key in batch if key not in named]
        await objects.delete(gone)
        await objects_store.forget(db, batch, now)
        removed += len(gone)
        if len(batch) < BATCH:
            break
    return removed
