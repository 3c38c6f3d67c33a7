"""Deleting a job everywhere it is kept: cancelled first if it has not ended, then its
rows (one transaction, in the store), its objects, then its stored responses at the
provider. The API
and the dashboard both delete this way."""

from __future__ import annotations

import asyncio
import logging

from backburner.api.state import Services
from backburner.errors import Conflict, NotFound, ProviderError, StorageUnavailable
from backburner.providers.base import Provider
from backburner.store import jobs as jobs_store
from backburner.store.audit import Actor
from backburner.worker.objects import sweep

log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 10.0


async def delete_job_everywhere(
    svc: Services, job_id: str, *, owner: str | None, actor: Actor
) -> None:
    """NotFound for another owner's job; Conflict if it is still ending after a cancel."""
    job = await jobs_store.get_job(svc.db, job_id, owner=owner)
    if job is None:
        raise NotFound(f"no job {job_id}")
    if not job.status.is_terminal:
        await jobs_store.request_cancel(svc.db, job_id, owner=owner, now=svc.clock(), actor=actor)
        if not await ended_within(svc, job_id, seconds=CANCEL_WAIT_SECONDS):
            raise Conflict(f"job {job_id} is being cancelled; delete it once it has ended")
    response_ids = await jobs_store.delete_job(
        svc.db, job_id, owner=owner, now=svc.clock(), actor=actor
    )
    await delete_objects_now(svc)
    await delete_at_provider(svc.provider, job_id, response_ids)


async def delete_objects_now(svc: Services) -> None:
    """Delete the objects of what was just deleted (a large result, an original) now
    rather than at the workers' next sweep; a store that fails leaves them to that sweep."""
    try:
        await sweep(svc.db, svc.objects, svc.clock())
    except StorageUnavailable as error:
        log.warning("objects left for the next sweep", extra={"error": str(error)})


async def ended_within(svc: Services, job_id: str, *, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        job = await jobs_store.get_job(svc.db, job_id)
        if job is None or job.status.is_terminal:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)


async def delete_at_provider(provider: Provider, job_id: str, response_ids: list[str]) -> int:
    """Best effort: the job is gone here whatever the provider says; what it could not
    delete it keeps until its own retention ends (logged, so an operator can follow up).
    Returns how many could not be deleted."""
    slots = asyncio.Semaphore(8)

    async def one(response_id: str) -> bool:
        async with slots:
            try:
                await provider.delete(response_id)
                return True
            except ProviderError:
                return False

    outcomes = await asyncio.gather(*(one(rid) for rid in response_ids))
    if not all(outcomes):
        log.warning(
            "stored responses could not be deleted at the provider",
            extra={"job_id": job_id, "failed": outcomes.count(False), "of": len(outcomes)},
        )
    return outcomes.count(False)
