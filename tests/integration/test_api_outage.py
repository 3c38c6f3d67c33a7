"""The API during a database outage: every request it cannot serve is a 503 with
Retry-After, and the outage is one story in the log (told once when it starts and once
when it ends), not a warning for every request it refused."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.conftest import fast_settings, serving, wait_for
from tests.e2e.outages import prepared
from tests.pgserver import private_postgres

pytestmark = pytest.mark.slow

UNREACHABLE = "database unreachable; retrying until it is back"
BACK = "database reachable again"


async def _answers(client: httpx.AsyncClient) -> bool:
    return (await client.get("/api/jobs")).status_code == 200


async def test_an_outage_is_told_once_not_once_a_request(caplog: pytest.LogCaptureFixture) -> None:
    with private_postgres() as server:
        key = await prepared(server.url)
        async with serving(fast_settings(server.url), key, embed_worker=False) as client:
            assert await _answers(client)
            with caplog.at_level(logging.WARNING):
                await asyncio.to_thread(server.stop)
                refused = [await client.get("/api/jobs") for _ in range(30)]
                created = await client.post("/api/jobs", json={"type": "noop"})
                await asyncio.to_thread(server.start)
                await wait_for(lambda: _answers(client), within=30, interval=0.1)
    assert {r.status_code for r in [*refused, created]} == {503}
    assert all(r.headers["retry-after"] == "5" for r in refused)
    assert refused[0].headers["content-type"] == "application/problem+json"
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said.count(UNREACHABLE) == 1
    assert said.count(BACK) == 1
    assert "database unavailable" not in said
