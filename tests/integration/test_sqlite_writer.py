"""SQLite's one write connection is not rolled back after every commit (a trip to the
driver's thread for nothing), but one handed back inside a transaction still is: the next
writer never inherits another's half-done change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from backburner.store import Database
from backburner.store import jobs as jobs_store
from backburner.store.schema import jobs
from tests.running import new_job

T0 = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_write_connection_handed_back_inside_a_transaction_is_rolled_back(
    db: Database,
) -> None:
    made, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    # A transaction SQLAlchemy does not know of (as one whose rollback was cancelled would
    # be left): begun and written to on the driver's connection, then handed back.
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute("DELETE FROM jobs WHERE id = ?", (made.id,))
        assert driver.in_transaction
    assert not driver.in_transaction

    # The next writer begins its own transaction (not "within a transaction") and the
    # half-done delete is gone with the rollback.
    second, created = await jobs_store.insert_job(db, new_job(), now=T0)
    assert created
    async with db.read() as read:
        ids = set((await read.execute(sa.select(jobs.c.id))).scalars())
    assert ids == {made.id, second.id}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_write_that_fails_half_way_leaves_nothing_and_the_writer_free(
    db: Database,
) -> None:
    with pytest.raises(RuntimeError, match="half way"):
        async with db.write() as tx:
            await tx.conn.execute(sa.insert(jobs).values(_row()))
            raise RuntimeError("half way")
    async with db.read() as read:
        assert (await read.execute(sa.select(sa.func.count()).select_from(jobs))).scalar() == 0
    made, created = await jobs_store.insert_job(db, new_job(), now=T0)
    assert created and made.id


def _row() -> dict[str, object]:
    return jobs_store._row_of(new_job(), "00000000-0000-7000-8000-000000000001", T0)
