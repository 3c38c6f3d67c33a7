"""Workers die and are stopped; no job is lost and no finished step runs again."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from backburner.store import Database, Job, JobStatus, NewJob
from backburner.store import events as events_store
from backburner.store import jobs as jobs_store
from backburner.store.schema import jobs as jobs_table
from backburner.store.schema import provider_calls
from tests.conftest import wait_for
from tests.e2e.processes import child_env, free_port, started

pytestmark = pytest.mark.slow


async def enqueue(db: Database, job_type: str, payload: dict[str, object]) -> Job:
    job, _ = await jobs_store.insert_job(
        db,
        NewJob(owner="alice", type=job_type, payload=payload, max_attempts=3, timeout_seconds=120),
        now=datetime.now(UTC),
    )
    return job


async def status_is(db: Database, job_id: str, status: JobStatus) -> Job | None:
    job = await jobs_store.get_job(db, job_id)
    return job if job is not None and job.status == status else None


async def test_sigkill_mid_job_another_worker_finishes_without_rerunning_steps(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "steps.log"
    job = await enqueue(
        db, "test_stepper", {"marker": str(marker), "steps": 3, "step_seconds": 1.0}
    )
    env = child_env(db_url)
    with started("worker", env=env, log=tmp_path / "a.log") as first:
        # Kill it in the middle of step 2, after step 1 was memoised.
        await wait_for(lambda: marker.exists() and "start 2" in marker.read_text(), within=20)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    with started("worker", env=env, log=tmp_path / "b.log"):
        done = await wait_for(lambda: status_is(db, job.id, JobStatus.SUCCEEDED), within=30)
    lines = marker.read_text().splitlines()
    assert lines.count("start 1") == lines.count("end 1") == 1  # memoised, not re-run
    assert lines.count("start 2") == 2  # interrupted once, then run to the end
    assert lines.count("end 2") == 1
    assert lines.count("start 3") == lines.count("end 3") == 1
    assert done.attempts == 2
    assert done.result == {"ok": True, "attempt": 2, "data": {"total": 6}}
    kinds = [e.kind for e in await events_store.list_events(db, job.id)]
    assert kinds.count("started") == 2
    assert "lease_expired" in kinds


async def test_sigterm_drains_then_hands_back_long_jobs(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    long = await enqueue(db, "test_slow_no_timeout", {"seconds": 60})
    short = await enqueue(db, "test_slow_no_timeout", {"seconds": 0.5})
    env = child_env(db_url, shutdown_grace_seconds="1.5")
    with started("worker", env=env, log=tmp_path / "w.log") as worker:
        await wait_for(lambda: status_is(db, long.id, JobStatus.RUNNING), within=20)
        await wait_for(lambda: status_is(db, short.id, JobStatus.RUNNING), within=20)
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(worker.wait, 20)
        took = time.monotonic() - stopped_at
    assert exit_code == 0, (tmp_path / "w.log").read_text()
    assert took < 10
    finished = await jobs_store.get_job(db, short.id)
    handed_back = await jobs_store.get_job(db, long.id)
    assert finished is not None
    assert handed_back is not None
    assert finished.status == JobStatus.SUCCEEDED  # finished within the grace period
    assert (handed_back.status, handed_back.attempts) == (JobStatus.PENDING, 0)
    assert handed_back.lease_owner is None
    kinds = [e.kind for e in await events_store.list_events(db, long.id)]
    assert kinds[-1] == "released"


async def test_sigkill_while_200_jobs_wait_on_the_model_pays_for_nothing_twice(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    env = {
        **child_env(db_url),
        "OPENAI_BASE_URL": f"{emulator_url}/v1",
        "OPENAI_API_KEY": "sk-test",
    }
    with started(
        "emulator", "--port", str(port), "--latency", "6", env=env, log=tmp_path / "emulator.log"
    ) as emulator:
        await wait_for(lambda: _emulator_stats(emulator_url), within=20)
        jobs = [
            await enqueue(db, "test_ask_model", {"text": f"Fact number {i}. It is true."})
            for i in range(200)
        ]
        with started("worker", env=env, log=tmp_path / "a.log") as first:
            # Every job has submitted its call and persisted the response id.
            await wait_for(lambda: _persisted_calls(db, 200), within=30)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        killed_at = await _emulator_stats(emulator_url)
        # On a busy machine the first calls may have ended, and their jobs with them, before
        # the last was submitted: those the kill left waiting are the restarted worker's.
        left_waiting = [job for job in jobs if not await status_is(db, job.id, JobStatus.SUCCEEDED)]
        assert left_waiting
        with started("worker", env=env, log=tmp_path / "b.log"):
            await wait_for(lambda: _count_status(db, JobStatus.SUCCEEDED, 200), within=60)
        after = await _emulator_stats(emulator_url)
        assert emulator.poll() is None
    assert killed_at is not None
    assert after is not None
    # The restarted worker waited on the persisted ids: not one response created again.
    assert killed_at["responses_created"] == after["responses_created"] == 200
    for job in left_waiting[:3]:
        done = await jobs_store.get_job(db, job.id)
        assert done is not None
        assert done.attempts == 2
        assert "Fact number" in str(done.result)


async def _emulator_stats(base: str) -> dict[str, int] | None:
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{base}/_emulator/stats", timeout=2)
    except httpx.HTTPError:
        return None
    found: dict[str, int] = response.json()
    return found


async def _persisted_calls(db: Database, count: int) -> bool:
    async with db.read() as conn:
        found = (
            await conn.execute(sa.select(sa.func.count()).select_from(provider_calls))
        ).scalar()
    return found == count


async def _count_status(db: Database, status: JobStatus, count: int) -> bool:
    query = sa.select(sa.func.count()).where(jobs_table.c.status == status.value)
    async with db.read() as conn:
        return (await conn.execute(query)).scalar() == count
