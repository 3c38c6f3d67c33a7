"""Keeping a worker's leases: heartbeats that renew them, orphans no longer renewed, the
reaper that hands on other workers' expired leases, owner caps, and cancel checks; and the
retention of old records.

Each chore runs on its own period until `stop()`; a round that has begun finishes (cut off
mid-transaction, it could leave SQLite's write lock held for the next process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from backburner.clock import Clock
from backburner.config import Settings
from backburner.errors import Conflict, NotFound
from backburner.store import Database, retention
from backburner.store import documents as documents_store
from backburner.store import jobs as jobs_store
from backburner.store import queue as queue_store
from backburner.store import workers as workers_store
from backburner.store.audit import Actor
from backburner.worker.attempt import Attempt, StopReason

log = logging.getLogger(__name__)

RETENTION = Actor("system", user_agent="retention")
# OpenAI retries a webhook for up to 72 hours with the same id; a receipt older than that
# guards against nothing (and a duplicate wake-up would only cause one extra poll).
RECEIPTS_KEPT = timedelta(hours=72)


def lost_leases(
    running_before: Mapping[str, object], running_now: Mapping[str, object], held: set[str]
) -> list[str]:
    """Jobs whose attempt this worker was running when it renewed its leases, still runs,
    and no longer holds. An attempt that ended meanwhile is not lost; nor is the next
    attempt of the same job (a quick retry claimed again while the renewal ran): its lease
    was taken after the renewal began, and stopping it would strand the job until reaped."""
    return [
        job_id
        for job_id, attempt in running_before.items()
        if job_id not in held and running_now.get(job_id) is attempt
    ]


def orphaned_leases(
    held: set[str], running: Mapping[str, object], suspects: set[str]
) -> tuple[set[str], set[str]]:
    """Jobs the database says this worker holds but that it does not run (an attempt that
    ended without writing its outcome). A claim that just committed explains one heartbeat,
    not two: a job seen so twice in a row is orphaned. Returns (orphaned, suspects for the
    next heartbeat)."""
    unknown = {job_id for job_id in held if job_id not in running}
    return unknown & suspects, unknown - suspects


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True


class LeaseKeeper:
    """The housekeeping of one worker, over the attempts it runs (`running`, shared with
    the claim loop: read here, never changed)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        worker_id: str,
        running: Mapping[str, Attempt],
        clock: Clock,
    ) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id
        self.running = running
        self.clock = clock
        self.hostname = socket.gethostname()
        self.caps = queue_store.OwnerCaps(default=settings.owner_max_running)
        # Held in the database but not running here: suspected at one heartbeat, orphaned
        # (and no longer renewed) at the next.
        self._suspects: set[str] = set()
        self._orphans: dict[str, datetime] = {}
        self._over = asyncio.Event()
        self._chores: list[tuple[float, Callable[[], Awaitable[None]]]] = []

    def add_chore(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        """Another chore on its own period (schedules, evaluation runs), run like these."""
        self._chores.append((seconds, action))

    async def run(self) -> None:
        """Heartbeat, reap and check cancels, each on its period, until `stop()`."""
        self._over.clear()
        settings = self.settings
        async with asyncio.TaskGroup() as chores:
            chores.create_task(self.every(settings.heartbeat_seconds, self.heartbeat))
            chores.create_task(self.every(settings.reap_interval_seconds, self.reap))
            chores.create_task(self.every(settings.cancel_check_seconds, self.check_cancels))
            chores.create_task(self.every(settings.retention_check_seconds, self.prune))
            for seconds, action in self._chores:
                chores.create_task(self.every(seconds, action))

    def stop(self) -> None:
        """End the chores once the rounds under way have finished."""
        self._over.set()

    async def every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` every `seconds` until `stop()`; a round that has begun finishes."""
        while not self._over.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._over.wait(), timeout=seconds)
            if self._over.is_set():
                return
            try:
                await action()
            except Exception as error:
                if not self.db.outages.absorbed(error, action.__name__):
                    log.exception("worker housekeeping failed", extra={"action": action.__name__})

    async def prune(self) -> None:
        """Retention, in small batches (every worker may do it; deleting what another just
        deleted is harmless): audit events past `audit_retention_days`, webhook receipts
        past the provider's retry window, and — when `retention_days` is set — finished
        jobs and documents older than that (each deletion audited, by the system)."""
        now = self.clock()
        settings = self.settings
        removed = {
            "audit_events": await retention.prune_audit(
                self.db, before=now - timedelta(days=settings.audit_retention_days)
            ),
            "webhook_receipts": await retention.prune_webhook_receipts(
                self.db, before=now - RECEIPTS_KEPT
            ),
        }
        if settings.retention_days is not None:
            cutoff = now - timedelta(days=settings.retention_days)
            removed["jobs"] = await self._expire(
                retention.expired_jobs, jobs_store.delete_job, cutoff
            )
            removed["documents"] = await self._expire(
                retention.expired_documents, documents_store.delete_document, cutoff
            )
        if any(removed.values()):
            log.info("pruned what is past retention", extra=removed)

    async def _expire(
        self,
        find: Callable[..., Awaitable[list[str]]],
        delete: Callable[..., Awaitable[object]],
        cutoff: datetime,
    ) -> int:
        count = 0
        while ids := await find(self.db, before=cutoff, limit=100):
            for found in ids:
                with contextlib.suppress(NotFound, Conflict):  # another worker was first
                    await delete(self.db, found, owner=None, now=self.clock(), actor=RETENTION)
                    count += 1
            if len(ids) < 100:
                break
        return count

    async def take_over_dead_neighbours(self) -> None:
        """At start: hand on at once the jobs of dead workers on this host (a supervisor
        has just started us in place of one killed or crashed); every reap round does the
        same (`reap`)."""
        if await self._release_dead_neighbours():
            await self._reap_expired()

    async def _release_dead_neighbours(self) -> int:
        """Workers on this host whose process is gone hold leases that would run out only
        later: let them run out now, for the reaper to hand their jobs on. Gone means both:
        no process of its PID here, and no heartbeat for two heartbeat intervals. A worker
        in another container that shares this host name (host networking, a set
        `hostname:`) has PIDs of its own namespace, so a PID missing here proves nothing
        while it heartbeats; taking its jobs would run them twice. A process that still
        runs, under any name, is left alone. Checked every reap round too, so a neighbour
        that went quiet just before we started is still taken over before its lease runs
        out. Returns how many jobs were released."""
        now = self.clock()
        silent_since = now - timedelta(seconds=2 * self.settings.heartbeat_seconds)
        suspects = await workers_store.silent_workers_on(
            self.db, self.hostname, besides=self.worker_id, silent_since=silent_since
        )
        dead = [worker_id for worker_id, pid in suspects if not process_alive(pid)]
        if not dead:
            return 0
        released = await workers_store.release_leases_of(self.db, dead, now=now)
        log.warning(
            "took over the jobs of workers on this host whose process is gone",
            extra={"workers": dead, "jobs": released},
        )
        return released

    async def refresh_owner_caps(self) -> None:
        """Notice owner caps set while we run (`backburner owners set`), every reap round."""
        self.caps = queue_store.OwnerCaps(
            default=self.settings.owner_max_running,
            per_owner=await queue_store.has_owner_caps(self.db),
        )

    async def heartbeat(self) -> None:
        # Judge only jobs claimed before this renewal began: a claim that commits while the
        # renewal runs is invisible to it, and its jobs are ours, not lost.
        running_before = dict(self.running)
        now = self.clock()
        held = await queue_store.extend_leases(
            self.db,
            worker_id=self.worker_id,
            lease_seconds=self.settings.lease_seconds,
            now=now,
            skip=self._orphans.keys(),
        )
        for job_id in lost_leases(running_before, self.running, held):
            attempt = self.running[job_id]
            if attempt.in_handler:
                attempt.stop(StopReason.LEASE_LOST)
        orphaned, self._suspects = orphaned_leases(held, self.running, self._suspects)
        for job_id in orphaned:
            log.error(
                "a job this worker holds is not running here; its lease will run out and "
                "the reaper will hand it on",
                extra={"job_id": job_id, "worker_id": self.worker_id},
            )
            self._orphans[job_id] = now
        # Long after its lease ran out the reaper has it; no need to keep skipping it.
        forget_before = now - timedelta(seconds=3 * self.settings.lease_seconds)
        self._orphans = {j: at for j, at in self._orphans.items() if at > forget_before}

    async def reap(self) -> None:
        await self.refresh_owner_caps()
        await self._release_dead_neighbours()
        await self._reap_expired()

    async def _reap_expired(self) -> None:
        reaped = await queue_store.reap_expired_leases(self.db, now=self.clock())
        for item in reaped:
            log.warning(
                "reaped a job from a lost worker",
                extra={
                    "job_id": item.job_id,
                    "type": item.type,
                    "attempt": item.attempt,
                    "worker": item.previous_worker,
                    "status": item.status.value,
                },
            )

    async def check_cancels(self) -> None:
        """The periodic safety net under the cancel signal."""
        for job_id in await queue_store.cancel_requested_ids(self.db, worker_id=self.worker_id):
            self.cancel_running(job_id)

    def cancel_running(self, job_id: str) -> None:
        """Stop the attempt of a job a client cancelled, if it runs here."""
        attempt = self.running.get(job_id)
        if attempt is not None:
            job = attempt.job
            log.info(
                "cancelling running job",
                extra={"job_id": job.id, "type": job.type, "attempt": job.attempts},
            )
            attempt.stop(StopReason.CANCELED)
