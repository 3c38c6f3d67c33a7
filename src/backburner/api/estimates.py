"""ETAs for the API: history from the store (cached briefly), the arithmetic in jobs.eta."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from fastapi import Request

from backburner.api.state import Services
from backburner.jobs.eta import Prior, estimate_completion_seconds, estimate_remaining_seconds
from backburner.jobs.registry import JobType
from backburner.store import Database, Job, JobStatus, TypeHistory
from backburner.store import positions as positions_store

DEFAULT_EXPECTED_SECONDS = 60.0


class EtaEstimator:
    """Run-time history and worker capacity change slowly, so they are cached for a few
    seconds; the count of jobs ahead is read fresh for every estimate."""

    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self._db = db
        self._ttl = ttl
        self._runs: dict[str, tuple[list[tuple[float, float | None]], float]] = {}
        self._capacity: tuple[int, float] = (1, 0.0)
        self._due: tuple[dict[int, int], float] = ({}, 0.0)

    async def for_page(
        self, listed: Sequence[Job], type_of: Callable[[str], JobType | None], now: datetime
    ) -> dict[str, float | None]:
        """Estimates for a page of jobs, with one query for where the queued ones stand."""
        queued = [job.id for job in listed if job.status == JobStatus.PENDING]
        positions = await positions_store.queue_positions(self._db, queued, now=now)
        return {
            job.id: await self.seconds_until_done(
                job, type_of(job.type), now, ahead=positions.get(job.id)
            )
            for job in listed
        }

    async def seconds_until_done(
        self,
        job: Job,
        job_type: JobType | None,
        now: datetime,
        *,
        ahead: int | None = None,
        just_created: bool = False,
    ) -> float | None:
        """Estimated seconds until `job` ends, or None once it has. `ahead`: the jobs
        before it in the queue, when already known; `just_created`: it is at the back of
        its priority, so the queue's shape (cached for a second) says where it stands."""
        if job.status.is_terminal:
            return None
        prior = (
            Prior(job_type.expected_duration, job_type.seconds_per_unit)
            if job_type
            else Prior(DEFAULT_EXPECTED_SECONDS)
        )
        runs = await self._recent_runs(job.type)
        if job.status == JobStatus.RUNNING and job.started_at is not None:
            elapsed = max(0.0, (now - job.started_at).total_seconds())
            return estimate_remaining_seconds(
                TypeHistory(runs), prior, elapsed=elapsed, progress=job.progress, size=job.size
            )
        if ahead is None and just_created and job.run_at <= now:
            ahead = await self._ahead_of_new(job.priority, now)
        if ahead is None:
            ahead = await positions_store.count_ahead(
                self._db, job_id=job.id, priority=job.priority, now=now
            )
        history = TypeHistory(runs, ahead, await self._live_capacity(now))
        wait_until_due = max(0.0, (job.run_at - now).total_seconds())
        return round(wait_until_due + estimate_completion_seconds(history, prior, job.size), 3)

    async def _recent_runs(self, job_type: str) -> list[tuple[float, float | None]]:
        cached = self._runs.get(job_type)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        runs = await positions_store.recent_runs(self._db, job_type)
        self._runs[job_type] = (runs, time.monotonic() + self._ttl)
        return runs

    async def _ahead_of_new(self, priority: int, now: datetime) -> int:
        # Every create would otherwise count the queue: at a thousand creates a second, a
        # count of up to 10,000 rows each. The queue's shape is read at most once a second
        # (after this job went in: it counts itself once), and each job created here since
        # joins it, so jobs created one after another get growing ETAs.
        due, expires = self._due
        if expires <= time.monotonic():
            due = await positions_store.due_by_priority(self._db, now=now)
            self._due = (due, time.monotonic() + min(self._ttl, 1.0))
            return max(0, sum(count for level, count in due.items() if level >= priority) - 1)
        ahead = sum(count for level, count in due.items() if level >= priority)
        due[priority] = due.get(priority, 0) + 1
        return ahead

    async def _live_capacity(self, now: datetime) -> int:
        value, expires = self._capacity
        if expires > time.monotonic():
            return value
        value = await positions_store.live_capacity(self._db, now=now)
        self._capacity = (value, time.monotonic() + self._ttl)
        return value


def estimator(request: Request) -> EtaEstimator:
    """The API process's estimator (it caches history between requests)."""
    found: EtaEstimator = request.app.state.eta
    return found


async def eta_of(
    request: Request, svc: Services, job: Job, *, just_created: bool = False
) -> float | None:
    """Seconds until `job` is done, as well as we can tell (None: no idea)."""
    return await estimator(request).seconds_until_done(
        job, svc.registry.find(job.type), svc.clock(), just_created=just_created
    )
