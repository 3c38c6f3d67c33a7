"""A service process whose pools alone could take more connections than PostgreSQL gives
its clients says so once, at start (under load it would otherwise fail to connect, one
statement after another)."""

from __future__ import annotations

import logging

import pytest

from backburner.opening import open_database
from tests.conftest import fast_settings

WARNING = "this process may open more connections than PostgreSQL takes from clients"


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
        assert not [r for r in caplog.records if r.getMessage().startswith(WARNING)]
        most, _ = await _started(db_url, room)  # three pools of twice the room each
    told = [r for r in caplog.records if r.getMessage().startswith(WARNING)]
    assert len(told) == 1
    assert (told[0].most_connections, told[0].server_allows) == (most, room)  # type: ignore[attr-defined]
    assert most == 3 * 2 * room + 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sqlite_has_no_server_to_outgrow(db_url: str) -> None:
    _, room = await _started(db_url, 50)
    assert room is None
