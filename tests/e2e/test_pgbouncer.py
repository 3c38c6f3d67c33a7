"""The queue through PgBouncer in transaction pooling mode: an API process and a worker
process whose every statement goes through the proxy (LISTEN on a direct connection),
jobs created one by one and in a batch, picked up at once, each run once."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from backburner.store import Database, Role
from backburner.store import keys as keys_store
from backburner.store.schema import job_events, jobs
from tests.conftest import KEYRING, truncate_all, wait_for
from tests.e2e.outages import sent_until_taken, succeeded_once_each
from tests.e2e.processes import child_env, free_port, run_cli, started, wait_until_serving
from tests.pgserver import pgbouncer, restartable_pgbouncer

pytestmark = pytest.mark.slow


def through(postgres_url: str, port: int) -> str:
    """The same database, reached through the PgBouncer on `port`."""
    return f"postgresql://postgres@127.0.0.1:{port}/{postgres_url.rpartition('/')[2]}"


async def test_the_queue_runs_through_pgbouncer(postgres_url: str, tmp_path: Path) -> None:
    # Every table: a worker an earlier test killed on this database would be taken over.
    await truncate_all(postgres_url)
    with pgbouncer() as port:
        pooled = through(postgres_url, port)
        # The worker's idle poll is half a minute: a job picked up sooner was heard of
        # through LISTEN on the direct connection.
        env = child_env(
            pooled,
            database_transaction_pooler="true",
            database_listen_url=postgres_url,
            idle_poll_seconds="30",
        )
        # Schema upgrades and key management go through the proxy too.
        await asyncio.to_thread(run_cli, "db", "upgrade", env=env)
        db = Database(pooled, sealer=KEYRING, transaction_pooler=True)
        _, key = await keys_store.create_key(
            db, owner="alice", role=Role.MEMBER, now=datetime.now(UTC)
        )
        api_port = free_port()
        base = f"http://127.0.0.1:{api_port}"
        api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
        try:
            with (
                started(
                    "serve", "--no-worker", "--port", str(api_port), env=env, log=api_log
                ) as api,
                started("worker", env=env, log=worker_log),
            ):
                await asyncio.to_thread(wait_until_serving, base, api, api_log)
                headers = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
                    singles = await asyncio.gather(
                        *(client.post("/api/jobs", json={"type": "noop"}) for _ in range(50))
                    )
                    assert {answer.status_code for answer in singles} == {201}
                    batch = await client.post(
                        "/api/jobs/batch", json={"jobs": [{"type": "noop"}] * 200}
                    )
                    assert batch.status_code == 201, batch.text

                    async def succeeded(count: int) -> bool:
                        async with db.read() as conn:
                            query = sa.select(sa.func.count()).where(jobs.c.status == "succeeded")
                            return (await conn.execute(query)).scalar_one() == count

                    await wait_for(lambda: succeeded(250), within=60, interval=0.2)
                    # The queue is empty and the worker idle: a new job is picked up at
                    # once, well before its next poll.
                    started_at = time.monotonic()
                    last = await client.post("/api/jobs", json={"type": "noop"})
                    last_id = last.json()["job_id"]

                    async def done(job_id: str) -> bool:
                        answer = await client.get(f"/api/jobs/{job_id}")
                        return bool(answer.json()["status"] == "succeeded")

                    await wait_for(lambda: done(last_id), within=25)
                    picked_up_within = time.monotonic() - started_at
                await wait_for(lambda: succeeded(251), within=10, interval=0.2)
                async with db.read() as conn:
                    runs = (
                        await conn.execute(
                            sa.select(sa.func.count()).where(job_events.c.kind == "started")
                        )
                    ).scalar_one()
        finally:
            await db.close()
    assert runs == 251  # each job started once
    assert picked_up_within < 15  # (the idle poll would take up to 30 s)
    for log in (api_log, worker_log):
        said = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        bad = [e for e in said if e["level"] in ("warning", "error", "critical")]
        assert bad == [], bad


async def test_a_pgbouncer_restart_under_load_loses_no_job_and_runs_none_twice(
    postgres_url: str, tmp_path: Path
) -> None:
    """The proxy goes away and comes back while jobs are being created and worked: every
    job created ends succeeded exactly once, clients that got an error send again with
    their idempotency key and get one job, and the outage answers 503, never 500."""
    await truncate_all(postgres_url)
    direct = Database(postgres_url, sealer=KEYRING)
    _, key = await keys_store.create_key(
        direct, owner="alice", role=Role.MEMBER, now=datetime.now(UTC)
    )
    total = 600
    with restartable_pgbouncer() as bouncer:
        env = child_env(
            through(postgres_url, bouncer.port),
            database_transaction_pooler="true",
            database_listen_url=postgres_url,
        )
        api_port = free_port()
        base = f"http://127.0.0.1:{api_port}"
        api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
        try:
            with (
                started(
                    "serve", "--no-worker", "--port", str(api_port), env=env, log=api_log
                ) as api,
                started("worker", env=env, log=worker_log),
            ):
                await asyncio.to_thread(wait_until_serving, base, api, api_log)
                headers = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
                    created: dict[str, str] = {}
                    refused: list[int] = []
                    limit = asyncio.Semaphore(8)

                    async def create(index: int) -> None:
                        async with limit:
                            answer = await sent_until_taken(
                                client,
                                "/api/jobs",
                                {"type": "noop"},
                                {"Idempotency-Key": f"job-{index}"},
                                refused,
                            )
                            created[f"job-{index}"] = answer["job_id"]

                    producers = [asyncio.create_task(create(i)) for i in range(total)]
                    await wait_for(lambda: len(created) >= total // 3, within=60)
                    await asyncio.to_thread(bouncer.stop)
                    await asyncio.sleep(1)
                    await asyncio.to_thread(bouncer.start)
                    await asyncio.gather(*producers)

                stored, runs = await succeeded_once_each(direct, total, within=90)
        finally:
            await direct.close()
    assert len(set(created.values())) == total  # one job per idempotency key
    assert stored == total
    assert runs == [1] * total  # each succeeded, once
    assert refused, "no request met the proxy's absence"
    assert set(refused) <= {503}, refused  # the outage is a 503, never a 500
