"""SQLite's one write connection: not rolled back after every commit (a trip to the
driver's thread for nothing), but one handed back inside a transaction still is, so the
next writer never inherits another's half-done change; rows sent straight to the driver
(Tx.insert_many) are the rows SQLAlchemy would have written."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from backburner.store import Database, audit
from backburner.store import jobs as jobs_store
from backburner.store.audit import Actor, Target
from backburner.store.database import _DriverInsert, is_outage
from backburner.store.schema import audit_events, jobs
from tests.conftest import wait_for
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
    async def write_then_fail() -> None:
        async with db.write() as tx:
            await tx.conn.execute(sa.insert(jobs).values(_row()))
            raise RuntimeError("half way")

    with pytest.raises(RuntimeError, match="half way"):
        await write_then_fail()
    async with db.read() as read:
        assert (await read.execute(sa.select(sa.func.count()).select_from(jobs))).scalar() == 0
    made, created = await jobs_store.insert_job(db, new_job(), now=T0)
    assert created
    assert made.id


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rows_sent_straight_to_the_driver_read_back_as_sqlalchemy_writes_them(
    db: Database,
) -> None:
    actor = Actor("key", "k1", "alice", "member", "127.0.0.1", "agent\u00e9", "req-1")
    entries = [
        (actor, Target("job", f"j{n}", "alice"), {"type": "noop", "n": n, "text": "é\u2028"}, at)
        for n, at in enumerate([T0, T0.astimezone(timezone(timedelta(hours=-7)))])
    ]
    async with db.write() as tx:
        await tx.conn.execute(
            sa.insert(audit_events), audit.rows_of_each(audit.Action.JOB_CREATED, entries[:1])
        )
        await tx.insert_many(audit_events, audit.rows_of_each(audit.Action.JOB_CREATED, entries))
    async with db.read() as read:
        rows = (await read.execute(sa.select(audit_events).order_by(audit_events.c.id))).all()
    by_sqlalchemy, *by_driver = [row._asdict() | {"id": None} for row in rows]
    assert by_driver[0] == by_sqlalchemy
    assert by_driver[1]["at"] == T0
    assert by_driver[1]["detail"]["n"] == 1


def test_a_row_lacking_a_column_sqlalchemy_would_fill_in_is_refused() -> None:
    table = sa.Table(
        "with_default",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("made", sa.Integer, default=7),
    )
    with pytest.raises(ValueError, match="made"):
        _DriverInsert.of(table, ("id",), sqlite_dialect.dialect())


def _row() -> dict[str, object]:
    return jobs_store._row_of(new_job(), "00000000-0000-7000-8000-000000000001", T0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_driver_error_on_rows_sent_straight_reads_as_sqlalchemy_reads_it(
    db: Database,
) -> None:
    """A duplicate is SQLAlchemy's IntegrityError (a bug, not an outage), and the writer is
    free after it; a locked or full database would be its OperationalError (a 503)."""
    made, _ = await jobs_store.insert_job(db, new_job(), now=T0)

    async def write_again() -> None:
        async with db.write() as tx:
            await tx.insert_many(jobs, [jobs_store._row_of(new_job(), made.id, T0)])

    with pytest.raises(sa.exc.IntegrityError) as raised:
        await write_again()
    assert isinstance(raised.value.orig, sqlite3.IntegrityError)
    assert not is_outage(raised.value)
    assert (await jobs_store.insert_job(db, new_job(), now=T0))[1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rows_with_different_keys_are_refused_not_cut_to_the_first_rows_keys(
    db: Database,
) -> None:
    first = audit.rows_of_each(
        audit.Action.JOB_CREATED, [(Actor("system"), Target("job", "j1", "alice"), None, T0)]
    )[0]

    async def write_both() -> None:
        async with db.write() as tx:
            await tx.insert_many(audit_events, [first, first | {"id": 99}])

    with pytest.raises(ValueError, match="different keys"):
        await write_both()
    async with db.read() as read:
        assert (
            await read.execute(sa.select(sa.func.count()).select_from(audit_events))
        ).scalar() == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_the_writer_usable(
    db: Database, db_url: str
) -> None:
    """A fault: the write is cancelled while its BEGIN IMMEDIATE waits in the driver's thread
    for another process's lock. The BEGIN goes through there after the cancel; the next
    writer must not inherit that transaction."""
    blocker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process writing

        async def write() -> None:
            async with db.write() as tx:
                await tx.insert_many(jobs, [_row()])

        waiting = asyncio.create_task(write())
        # Checked out, its BEGIN handed to the driver's thread, which waits on the lock.
        await wait_for(lambda: db.engine.pool.checkedout() == 1)  # type: ignore[attr-defined]
        for _ in range(3):
            await asyncio.sleep(0)
        waiting.cancel()
        blocker.rollback()  # the other process is done: the waiting BEGIN now goes through
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        blocker.close()
    made, created = await jobs_store.insert_job(db, new_job(), now=T0)
    assert created
    async with db.read() as read:
        ids = set((await read.execute(sa.select(jobs.c.id))).scalars())
    assert ids == {made.id}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_database_that_refuses_writes_is_an_outage_and_the_writer_recovers(
    db: Database,
) -> None:
    """A fault on the statements sent straight to the driver: the database refuses writes
    (as a full disk or a read-only file would). The create fails as an outage (the API's
    503), nothing is half stored, and creates work again once the database does."""

    async def refuse_writes(on: bool) -> None:
        async with db.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")

    await refuse_writes(True)
    with pytest.raises(sa.exc.OperationalError) as raised:
        await jobs_store.insert_job(db, new_job(), now=T0)
    assert isinstance(raised.value.orig, sqlite3.OperationalError)
    assert is_outage(raised.value)
    await refuse_writes(False)
    made, created = await jobs_store.insert_job(db, new_job(), now=T0)
    assert created
    async with db.read() as read:
        ids = set((await read.execute(sa.select(jobs.c.id))).scalars())
    assert ids == {made.id}
