"""A real worker on a real database, and jobs put on it: what integration tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from backburner.config import Settings
from backburner.jobs import build_registry
from backburner.providers.base import Provider
from backburner.store import Database, Job, NewJob
from backburner.store import jobs as jobs_store
from backburner.worker import Worker
from tests.conftest import wait_for


@contextlib.asynccontextmanager
async def worker_on(db: Database, settings: Settings, provider: Provider) -> AsyncIterator[Worker]:
    worker = Worker(db, build_registry(settings.plugins), provider, settings)
    task = asyncio.create_task(worker.run())
    await worker.started.wait()
    try:
        yield worker
    finally:
        worker.stop()
        await task


async def submit(
    db: Database,
    job_type: str = "test_ask_model",
    payload: dict[str, Any] | None = None,
    *,
    owner: str = "alice",
    deadline_hours: float | None = None,
    timeout_seconds: float | None = None,
) -> Job:
    now = datetime.now(UTC)
    deadline = now + timedelta(hours=deadline_hours) if deadline_hours else None
    job, _ = await jobs_store.insert_job(
        db,
        NewJob(
            owner=owner,
            type=job_type,
            payload=payload or {},
            max_attempts=3,
            timeout_seconds=timeout_seconds or max(120.0, (deadline_hours or 0) * 3600),
            deadline_at=deadline,
        ),
        now=now,
    )
    return job


async def finished(db: Database, job_id: str, within: float = 20) -> Job:
    async def ended() -> Job | None:
        job = await jobs_store.get_job(db, job_id)
        return job if job is not None and job.status.is_terminal else None

    result: Job = await wait_for(ended, within=within)
    return result


def new_job(**overrides: object) -> NewJob:
    """A no-op job of alice's, as the store takes it, with `overrides`."""
    values: dict[str, object] = {
        "owner": "alice",
        "type": "noop",
        "payload": {},
        "max_attempts": 3,
        "timeout_seconds": 60,
    }
    values.update(overrides)
    return NewJob(**values)  # type: ignore[arg-type]
