"""PostgreSQL restarted under load: an API process and a worker process keep their
promises across it. Every job created ends succeeded exactly once; a client that got an
error retries with its idempotency key and gets one job, not two; `/readyz` says the
database is gone while it is, and the processes are back within seconds of it; the
worker logs the outage once. Batches sent as it goes are all or none, and sent again."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from backburner.store import Database
from tests.conftest import KEYRING, wait_for
from tests.e2e.outages import prepared, sent_until_taken, succeeded_once_each
from tests.e2e.processes import child_env, free_port, started, wait_until_serving
from tests.pgserver import PrivateServer, private_postgres

pytestmark = pytest.mark.slow

JOBS = 2000  # created one by one
BATCHES, BATCH = 10, 100  # and in batches
TOTAL = JOBS + BATCHES * BATCH
RESTART_AFTER = 500


async def readyz(client: httpx.AsyncClient) -> int:
    try:
        return (await client.get("/readyz", timeout=2)).status_code
    except httpx.TransportError:
        return 0


async def restart(server: PrivateServer, client: httpx.AsyncClient) -> float:
    """Stop the database, see the API say so, start it again; seconds until ready again."""
    await asyncio.to_thread(server.stop)
    await wait_for(lambda: ready_is(client, 503), within=10, interval=0.1)
    await asyncio.to_thread(server.start)
    started_at = time.monotonic()
    await wait_for(lambda: ready_is(client, 200), within=30, interval=0.05)
    return time.monotonic() - started_at


async def ready_is(client: httpx.AsyncClient, wanted: int) -> bool:
    return await readyz(client) == wanted


async def test_a_restart_under_load_loses_no_job_and_runs_none_twice(tmp_path: Path) -> None:
    with private_postgres() as server:
        key = await prepared(server.url)
        env = child_env(server.url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
        with (
            started("serve", "--no-worker", "--port", str(port), env=env, log=api_log) as api,
            started("worker", env=env, log=worker_log),
        ):
            await asyncio.to_thread(wait_until_serving, base, api, api_log)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
                created: dict[str, str] = {}
                refused: list[int] = []
                limit = asyncio.Semaphore(16)

                async def create(index: int) -> None:
                    async with limit:
                        key = f"job-{index}"
                        answer = await sent_until_taken(
                            client, "/api/jobs", {"type": "noop"}, {"Idempotency-Key": key}, refused
                        )
                        created[key] = answer["job_id"]

                async def create_batch(number: int) -> None:
                    keys = [f"batch-{number}-{item}" for item in range(BATCH)]
                    jobs_asked = [{"type": "noop", "idempotency_key": key} for key in keys]
                    answer = await sent_until_taken(
                        client, "/api/jobs/batch", {"jobs": jobs_asked}, {}, refused
                    )
                    for key, entry in zip(keys, answer["jobs"], strict=True):
                        created[key] = entry["job_id"]

                producers = [asyncio.create_task(create(i)) for i in range(JOBS)]
                await wait_for(lambda: len(created) >= RESTART_AFTER, within=60)
                # Batches in flight as the database goes: all or none, sent again after.
                producers += [asyncio.create_task(create_batch(n)) for n in range(BATCHES)]
                back_after = await restart(server, client)
                await asyncio.gather(*producers)
            db = Database(server.url, sealer=KEYRING)
            try:
                total, ended = await succeeded_once_each(db, TOTAL, within=120)
            finally:
                await db.close()
    assert len(created) == TOTAL
    assert len(set(created.values())) == TOTAL  # one job per idempotency key
    assert total == TOTAL
    assert ended == [1] * TOTAL  # each succeeded, once
    assert set(refused) <= {503}, refused  # the outage is a 503, never a 500
    assert back_after < 5, f"ready {back_after:.1f} s after the database"
    # The worker tells of the outage once, not once per failed statement, and nothing else.
    worker_said = [json.loads(line) for line in worker_log.read_text().splitlines()]
    told = [(e["level"], e["msg"]) for e in worker_said if e["level"] != "info"]
    assert told == [
        ("warning", "database unreachable; retrying until it is back"),
        ("warning", "database reachable again"),
    ]
