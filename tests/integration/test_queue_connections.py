"""The queue's own connections (`Database.asyncpg_connection(queue=True)`, PostgreSQL): used
again while sound, never more than their number, and a connection a statement left in an
unknown state (cancelled, broken by the server, inside a transaction) never given to the
next statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from backburner.store import Database
from backburner.store import database as database_module
from backburner.store import jobs as jobs_store
from backburner.store.database import is_outage, plain_postgres_dsn
from tests.conftest import KEYRING, truncate_all, wait_for
from tests.running import new_job

# pool_size 1: the queue keeps up to two connections.
QUEUE_CONNECTIONS = 2


@pytest.fixture
async def lane_db(postgres_url: str) -> AsyncIterator[Database]:
    await truncate_all(postgres_url)
    database = Database(postgres_url, sealer=KEYRING, pool_size=1)
    yield database
    await database.close()


async def _pid(db: Database) -> int:
    async with db.asyncpg_connection(queue=True) as conn:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def _backend_is(postgres_url: str, pid: int, condition: str = "true") -> bool:
    """Whether backend `pid` is there and meets `condition` (SQL on pg_stat_activity)."""
    admin = await asyncpg.connect(plain_postgres_dsn(postgres_url))
    try:
        return bool(
            await admin.fetchval(
                f"SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND {condition}", pid
            )
        )
    finally:
        await admin.close()


async def _alive(postgres_url: str, pid: int) -> bool:
    return await _backend_is(postgres_url, pid)


async def _held(db: Database, release: asyncio.Event, held: list[int]) -> None:
    async with db.asyncpg_connection(queue=True) as conn:
        held.append(int(await conn.fetchval("SELECT pg_backend_pid()")))
        await release.wait()


async def test_statements_one_after_another_use_one_connection(lane_db: Database) -> None:
    assert len({await _pid(lane_db) for _ in range(20)}) == 1


async def test_many_statements_at_once_share_no_more_connections_than_the_queue_keeps(
    lane_db: Database,
) -> None:
    async def sleepy() -> int:
        async with lane_db.asyncpg_connection(queue=True) as conn:
            return int(await conn.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.02)"))

    pids = await asyncio.gather(*(sleepy() for _ in range(24)))
    assert len(pids) == 24
    assert len(set(pids)) <= QUEUE_CONNECTIONS


async def test_a_statement_the_server_refused_leaves_its_connection_for_the_next(
    lane_db: Database,
) -> None:
    before = await _pid(lane_db)
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with lane_db.asyncpg_connection(queue=True) as conn:
            await conn.fetchval("SELECT 1 / 0")
    assert await _pid(lane_db) == before


async def test_a_statement_cancelled_half_way_does_not_hand_its_connection_on(
    lane_db: Database, postgres_url: str
) -> None:
    started = asyncio.Event()
    pids: list[int] = []

    async def long() -> None:
        async with lane_db.asyncpg_connection(queue=True) as conn:
            pids.append(int(await conn.fetchval("SELECT pg_backend_pid()")))
            started.set()
            await conn.execute("SELECT pg_sleep(30)")

    task = asyncio.create_task(long())
    await started.wait()
    # Cancelled only once the server runs the sleep: PostgreSQL ignores a cancel request
    # that reaches a backend still reading its command, and the sleep would run its 30 s.
    await wait_for(
        lambda: _backend_is(postgres_url, pids[0], "state = 'active' AND wait_event = 'PgSleep'")
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The next statement runs at once, on another connection, not behind the sleep.
    async with asyncio.timeout(5):
        assert await _pid(lane_db) != pids[0]
    await wait_for(lambda: _not_alive(postgres_url, pids[0]), within=10)


async def _not_alive(postgres_url: str, pid: int) -> bool:
    return not await _alive(postgres_url, pid)


async def test_a_connection_left_inside_a_transaction_is_not_used_again(
    lane_db: Database,
) -> None:
    async with lane_db.asyncpg_connection(queue=True) as conn:
        left = int(await conn.fetchval("SELECT pg_backend_pid()"))
        await conn.execute("BEGIN")
    async with lane_db.asyncpg_connection(queue=True) as conn:
        assert int(await conn.fetchval("SELECT pg_backend_pid()")) != left
        assert not conn.is_in_transaction()


async def test_a_connection_the_server_dropped_is_replaced(
    lane_db: Database, postgres_url: str
) -> None:
    dropped = await _pid(lane_db)
    admin = await asyncpg.connect(plain_postgres_dsn(postgres_url))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", dropped)
    finally:
        await admin.close()
    await wait_for(lambda: _not_alive(postgres_url, dropped), within=10)
    # The first statement after may meet the broken connection (an outage, as any lane
    # without a ping first); the one after that runs on a new connection.
    try:
        first = await _pid(lane_db)
    except Exception as error:
        assert is_outage(error)  # noqa: PT017 (either outcome is right)
    else:
        assert first != dropped
    assert await _pid(lane_db) != dropped


async def test_a_statement_waits_for_a_busy_queues_connection_then_gives_up_as_an_outage(
    lane_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "QUEUE_POOL_WAIT_SECONDS", 0.2)
    release = asyncio.Event()
    held: list[int] = []
    holders = [asyncio.create_task(_held(lane_db, release, held)) for _ in range(QUEUE_CONNECTIONS)]
    await wait_for(lambda: len(held) == QUEUE_CONNECTIONS, within=10)
    with pytest.raises(TimeoutError) as waited:
        await _pid(lane_db)
    assert is_outage(waited.value)

    # A waiter handed a connection gets one of those held, once it is returned.
    waiting = asyncio.create_task(_pid(lane_db))
    given_up = asyncio.create_task(_pid(lane_db))
    await asyncio.sleep(0)
    given_up.cancel()
    release.set()
    await asyncio.gather(*holders)
    assert await waiting in held
    with pytest.raises(asyncio.CancelledError):
        await given_up
    # Nothing leaked: both connections are there for the next two at once.
    release.clear()
    again: list[int] = []
    holders = [
        asyncio.create_task(_held(lane_db, release, again)) for _ in range(QUEUE_CONNECTIONS)
    ]
    await wait_for(lambda: len(again) == QUEUE_CONNECTIONS, within=10)
    release.set()
    await asyncio.gather(*holders)
    assert set(again) == set(held)


async def test_a_connection_dropped_while_others_wait_lets_a_waiter_open_a_new_one(
    lane_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "QUEUE_POOL_WAIT_SECONDS", 10.0)
    release = asyncio.Event()
    held: list[int] = []
    keeper = asyncio.create_task(_held(lane_db, release, held))
    await wait_for(lambda: len(held) == 1, within=10)
    entered = asyncio.Event()

    async def left_in_a_transaction() -> None:
        async with lane_db.asyncpg_connection(queue=True) as conn:
            await conn.execute("BEGIN")
            entered.set()
            await release.wait()

    spoiler = asyncio.create_task(left_in_a_transaction())
    await entered.wait()
    waiting = asyncio.create_task(_pid(lane_db))
    await asyncio.sleep(0)
    release.set()
    # The spoiled connection is closed on its return; the waiter opens one of its own, or
    # takes the keeper's, whichever comes first: either way at once, not after 10 s.
    async with asyncio.timeout(5):
        await asyncio.gather(keeper, spoiler)
        assert await waiting


async def test_closed_then_used_again_the_database_opens_new_connections(
    postgres_url: str,
) -> None:
    await truncate_all(postgres_url)
    db = Database(postgres_url, sealer=KEYRING, pool_size=1)
    now = datetime.now(UTC)
    try:
        await jobs_store.insert_job(db, new_job(), now=now)
        await db.close()
        await jobs_store.insert_job(db, new_job(), now=now)
    finally:
        await db.close()


def test_a_database_outliving_its_event_loop_opens_connections_in_the_next(
    postgres_url: str,
) -> None:
    asyncio.run(truncate_all(postgres_url))
    db = Database(postgres_url, sealer=KEYRING, pool_size=1)
    now = datetime.now(UTC)
    made = [asyncio.run(jobs_store.insert_job(db, new_job(), now=now)) for _ in range(3)]
    asyncio.run(db.close())
    assert all(created for _, created in made)
