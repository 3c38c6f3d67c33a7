"""Deleting objects no row names any more (see store.objects for how keys get listed), and
re-sealing objects under a new key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from backburner.storage import ObjectMissing, Objects
from backburner.store import Database
from backburner.store import objects as objects_store

log = logging.getLogger(__name__)

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


async def reseal(
    db: Database,
    objects: Objects,
    *,
    on_progress: Callable[[str, int], None] = lambda _kind, _count: None,
) -> int:
    """Seal every object a row names with the keyring's first key (`backburner encryption
    rotate` does this before it retires older keys). Objects never change once written, so
    re-sealing one is a plain put; one whose row went meanwhile is deleted again."""
    total = 0
    for kind in ("documents", "results"):
        after: str | None = None
        while page := await objects_store.named_page(db, kind, after=after):
            count = 0
            for _, key in page:
                try:
                    resealed = await objects.reseal(key)
                except ObjectMissing:  # lost from the store: nothing to seal, nothing to wait on
                    log.warning(
                        "an object a row names is missing from the store", extra={"key": key}
                    )
                    continue
                if resealed:
                    count += 1
                    if not await objects_store.still_named(db, [key]):
                        await objects.delete([key])
            on_progress(kind, count)
            total += count
            after = page[-1][0]
    return total
