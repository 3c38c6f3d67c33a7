"""Receipts of verified provider webhooks, and the wake-up they cause."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from backburner.store.database import CHANNEL_RESPONSES, Database
from backburner.store.schema import webhook_receipts


async def record_response_event(
    db: Database, *, webhook_id: str, event_type: str, response_id: str, now: datetime
) -> bool:
    """Record a verified webhook and tell every worker the response changed. False if this
    webhook id was received before (a redelivery): nothing is signalled again. The wake-up
    goes after the commit, grouped with the others of this process (`Database.wake`): a
    burst of completions does not queue its commits on PostgreSQL's notification lock. Were
    it lost (the process dies between the two), polling still finds the response."""
    try:
        async with db.write() as tx:
            await tx.conn.execute(
                sa.insert(webhook_receipts).values(
                    id=webhook_id, received_at=now, event_type=event_type
                )
            )
    except IntegrityError:
        return False
    db.wake(CHANNEL_RESPONSES, response_id)
    return True
