"""A service process whose pools alone could take more connections than PostgreSQL gives
its clients says so once, at start (under load it would otherwise fail to connect, one
statement after another); so does one whose pools could beside the connections other
clients hold then."""

from __future__ import annotations

import logging
import os

import asyncpg
import pytest
import sqlalchemy as sa

from backburner.opening import open_database
from backburner.store import Database
from backburner.store.database import application_name, plain_postgres_dsn
from tests.conftest import fast_settings, wait_for

WARNING = "this process may open more connections than PostgreSQL takes from clients"
OTHERS_WARNING = "this process may open more connections than PostgreSQL has left for clients"


def _told(caplog: pytest.LogCaptureFixture, warning: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(warning)]


async def _started(db_url: str, pool_size: int) -> tuple[int, int | None]:
    settings = fast_settings(db_url, database_pool_size=pool_size)
    db, _ = await open_database(settings, listen=True, pool_size=pool_size)
    try:
        return db.most_connections, await db.room_for_clients()
    finally:
        await db.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_pools_larger_than_the_server_are_told_once_at_start(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="backburner.opening"):
        _, room = await _started(db_url, 1)
        assert room is not None
        assert not _told(caplog, WARNING)
        most, _ = await _started(db_url, room)  # three pools of twice the room each
    told = _told(caplog, WARNING)
    assert len(told) == 1
    assert (told[0].most_connections, told[0].server_allows) == (most, room)  # type: ignore[attr-defined]
    assert most == 3 * 2 * room + 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sqlite_has_no_server_to_outgrow(db_url: str) -> None:
    _, room = await _started(db_url, 50)
    assert room is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_pools_that_fit_only_without_the_others_connections_are_told_at_start(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Pools that fit the server alone, started while other clients (other processes of a
    # fleet, an old deploy's) hold connections: told once, with what the others hold.
    with caplog.at_level(logging.WARNING, logger="backburner.opening"):
        _, room = await _started(db_url, 1)
        assert room is not None
        assert not _told(caplog, OTHERS_WARNING)
        pool_size = (room - 1) // 6  # three pools of twice that and the listener: room - 5 or more
        others = [
            await asyncpg.connect(
                plain_postgres_dsn(db_url), server_settings={"application_name": "backburner 1@old"}
            )
            for _ in range(6)
        ]
        try:
            most, _ = await _started(db_url, pool_size)
        finally:
            for conn in others:
                await conn.close()
    assert most <= room
    told = _told(caplog, OTHERS_WARNING)
    assert len(told) == 1
    assert told[0].others_hold >= len(others)  # type: ignore[attr-defined]
    assert (told[0].most_connections, told[0].server_allows) == (most, room)  # type: ignore[attr-defined]
    assert not _told(caplog, WARNING)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_every_connection_of_a_process_carries_its_name(db: Database) -> None:
    # Operators tell Backburner's connections apart in pg_stat_activity, one name a process.
    own = "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    async with db.asyncpg_connection() as conn:
        assert await conn.fetchval(own) == application_name()
    async with db.asyncpg_connection(queue=True) as conn:
        assert await conn.fetchval(own) == application_name()
    async with db.write() as tx:
        assert (await tx.conn.execute(sa.text(own))).scalar() == application_name()
    listening = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND query LIKE 'LISTEN %'"
    )

    async def listener_named() -> bool:  # the listener's own connection too
        async with db.asyncpg_connection() as conn:
            return bool(await conn.fetchval(listening, application_name()))

    await wait_for(listener_named)
    assert application_name().startswith(f"backburner {os.getpid()}@")
