"""The worker: claims jobs and supervises their attempts, its tracker, its outcome writer
and its lease keeper.

Everything it starts lives in task groups it owns. `stop()` (SIGTERM) stops claiming, lets
running jobs finish within the grace period, hands the rest back to the queue, and lets
the lease keeper finish the round it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable

from backburner.clock import Clock, utcnow
from backburner.config import Settings
from backburner.jobs.registry import JobRegistry
from backburner.providers.base import Provider
from backburner.storage import Objects, open_objects
from backburner.store import CHANNEL_CANCEL, CHANNEL_JOBS, CHANNEL_RESPONSES, Database, Job
from backburner.store import queue as queue_store
from backburner.store import workers as workers_store
from backburner.worker.attempt import Attempt, AttemptRunner, StopReason
from backburner.worker.context import SlotHolder
from backburner.worker.deadlines import Deadlines
from backburner.worker.evaluations import Evaluations
from backburner.worker.leases import LeaseKeeper
from backburner.worker.objects import sweep
from backburner.worker.schedules import Scheduler
from backburner.worker.slots import Slots
from backburner.worker.spending import Spending
from backburner.worker.tracker import ResponseTracker
from backburner.worker.writer import OutcomeWriter

log = logging.getLogger(__name__)

# Completions before new work. While jobs wait on the provider, a quarter of the slots is
# kept for those coming back (a burst of them otherwise waits for the jobs a claim just
# brought to submit, each slower on a busy machine), and a claim first waits until the
# responses webhooks announced so far are looked at: up to CALM_WAIT_SECONDS, so a
# provider slow to answer does not stall new work.
RETURNER_SHARE = 4
CALM_WAIT_SECONDS = 0.5


def first_poll_delay(settings: Settings) -> float:
    """With OpenAI webhooks configured they announce completions and polling is only the
    safety net, so a response is first polled after the longest gap, not the shortest:
    thousands of waiting responses then cost a trickle of polls, not a storm."""
    if settings.openai_webhook_secret is not None:
        return max(settings.poll_initial_seconds, settings.poll_max_seconds)
    return settings.poll_initial_seconds


class Worker:
    def __init__(
        self,
        db: Database,
        registry: JobRegistry,
        provider: Provider,
        settings: Settings,
        *,
        concurrency: int | None = None,
        clock: Clock = utcnow,
        objects: Objects | None = None,
    ) -> None:
        self.db = db
        self.objects = objects or open_objects(settings, db.sealer)
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.id = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.tracker = ResponseTracker(
            provider,
            initial_delay=first_poll_delay(settings),
            max_delay=settings.poll_max_seconds,
            polls_per_second=settings.poll_budget_per_second,
            max_retry_wait=settings.provider_retry_max_seconds,
        )
        capacity = concurrency or settings.worker_concurrency
        self.slots = Slots(
            capacity,
            kept=lambda: capacity // RETURNER_SHARE if self.tracker.outstanding else 0,
        )
        self.running: dict[str, Attempt] = {}
        self._writer = OutcomeWriter(db, self.id, clock)
        self.attempts = AttemptRunner(
            db=db,
            registry=registry,
            provider=provider,
            settings=settings,
            tracker=self.tracker,
            spending=Spending(db, settings, clock, provider.name),
            writer=self._writer,
            worker_id=self.id,
            clock=clock,
            objects=self.objects,
            deadlines=Deadlines(),
            capacity=capacity,
        )
        self.leases = LeaseKeeper(
            db, settings, worker_id=self.id, running=self.running, clock=clock
        )
        # Every worker looks for due schedules and runs to score; each slot and each run is
        # taken by one of them (see worker.schedules and worker.evaluations).
        self.evaluations = Evaluations(db, registry, settings, clock, self.objects)
        self.scheduler = Scheduler(db, registry, settings, clock, self.evaluations)
        self.leases.add_chore(settings.eval_check_seconds, self.evaluations.advance)
        self.leases.add_chore(settings.schedule_check_seconds, self.scheduler.fire_due)
        self.leases.add_chore(settings.object_sweep_seconds, self.sweep_objects)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()

    @property
    def unwritten_outcomes(self) -> int:
        """Attempts that ended and whose outcomes wait for the writer's next batch."""
        return self._writer.unwritten

    async def sweep_objects(self) -> None:
        """Delete objects no row names any more (deleted documents and jobs, writes cut
        off before their row): every worker may; deleting twice is harmless."""
        removed = await sweep(self.db, self.objects, self.clock())
        if removed:
            log.info("deleted objects no row names", extra={"objects": removed})

    # --- Lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from a signal handler)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Work until `stop()`; returns once every attempt has ended or been handed back."""
        await workers_store.register_worker(
            self.db,
            worker_id=self.id,
            # The name its neighbours look it up by, and it them (LeaseKeeper).
            hostname=self.leases.hostname,
            pid=os.getpid(),
            concurrency=self.slots.capacity,
            now=self.clock(),
        )
        await self.leases.refresh_owner_caps()
        try:
            await self.leases.take_over_dead_neighbours()
        except Exception as error:  # housekeeping: the lease expiry recovers them anyway
            if not self.db.outages.absorbed(error, "take over"):
                log.exception("taking over dead workers' jobs failed", extra={"worker_id": self.id})
        unsubscribe = [
            self.db.signals.subscribe(CHANNEL_JOBS, lambda _payload: self._wake.set()),
            self.db.signals.subscribe(CHANNEL_CANCEL, self.leases.cancel_running),
            # A provider webhook said this response changed: poll it now, not on backoff.
            self.db.signals.subscribe(CHANNEL_RESPONSES, self.tracker.nudge),
        ]
        log.info("worker started", extra={"worker_id": self.id, "concurrency": self.slots.capacity})
        try:
            async with asyncio.TaskGroup() as services:
                background = [
                    services.create_task(self.tracker.run(), name="tracker"),
                    services.create_task(self._writer.run(), name="outcome-writer"),
                ]
                housekeeping = services.create_task(self.leases.run(), name="leases")
                async with asyncio.TaskGroup() as attempts:
                    self.started.set()
                    await self._claim_until_stopped(attempts)
                    await self._drain()
                # The lease keeper ends its round; then the rest is cancelled.
                self.leases.stop()
                await asyncio.wait([housekeeping], timeout=self.settings.shutdown_grace_seconds)
                for task in [*background, housekeeping]:
                    task.cancel()
        finally:
            for undo in unsubscribe:
                undo()
            with contextlib.suppress(Exception):
                await workers_store.mark_worker_stopped(self.db, self.id, now=self.clock())
            log.info("worker stopped", extra={"worker_id": self.id})

    async def _drain(self) -> None:
        if not self.running:
            return
        grace = self.settings.shutdown_grace_seconds
        log.info(
            "waiting for running jobs", extra={"jobs": len(self.running), "grace_seconds": grace}
        )
        waits = [asyncio.create_task(a.done.wait()) for a in self.running.values()]
        try:
            await asyncio.wait(waits, timeout=grace)
        finally:
            for wait in waits:
                wait.cancel()
        for attempt in list(self.running.values()):
            attempt.stop(StopReason.SHUTDOWN)

    # --- Claiming -----------------------------------------------------------------------------

    async def _claim_until_stopped(self, attempts: asyncio.TaskGroup) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self.tracker.hurrying:
                await self._until_stop_or(self._completions_first())
            # Slots are reserved before the claim, so jobs coming back from a wait meanwhile
            # cannot be outnumbered by what the claim brings (see worker.slots).
            wanted = self.slots.reserve(self.settings.claim_batch_size)
            if wanted == 0:
                await self._until_stop_or(self.slots.wait_for_free())
                continue
            self._wake.clear()
            claimed = await self._claim(wanted)
            if claimed is None:
                failures += 1
                await self._until_stop_or(asyncio.sleep(min(10.0, 0.2 * 2**failures)))
                continue
            failures = 0
            for job in claimed:
                self._start(job, attempts)
            if len(claimed) < wanted:
                await self._idle()

    async def _completions_first(self) -> None:
        """Until the responses webhooks announced so far are looked at, or
        CALM_WAIT_SECONDS."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CALM_WAIT_SECONDS):
                await self.tracker.until_looked_at()

    async def _claim(self, wanted: int) -> list[Job] | None:
        """Up to `wanted` jobs for the slots reserved for them, the slots left over given
        back at once (whatever happens); None when the claim failed (logged, unless it is
        part of a database outage)."""
        claimed: list[Job] = []
        try:
            claimed = await queue_store.claim_jobs(
                self.db,
                worker_id=self.id,
                limit=wanted,
                lease_seconds=self.settings.lease_seconds,
                now=self.clock(),
                types=self.registry.names(),
                caps=self.leases.caps,
            )
            return claimed
        except Exception as error:
            if not self.db.outages.absorbed(error, "claim"):
                log.exception("claiming jobs failed", extra={"worker_id": self.id})
            return None
        finally:
            self.slots.give(wanted - len(claimed))

    async def _idle(self) -> None:
        """Sleep until woken by a new job, the next scheduled one falls due, or a while."""
        timeout = self.settings.idle_poll_seconds
        with contextlib.suppress(Exception):
            due = await queue_store.next_due_at(self.db)
            if due is not None:
                timeout = max(0.0, min(timeout, (due - self.clock()).total_seconds()))
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _until_stop_or(self, awaitable: Awaitable[object]) -> None:
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            stop.cancel()

    def _start(self, job: Job, attempts: asyncio.TaskGroup) -> None:
        """Run a claimed job in the slot reserved for it."""
        attempt = Attempt(job)
        self.running[job.id] = attempt
        attempt.task = attempts.create_task(self._run(attempt), name=f"job-{job.id}")

    async def _run(self, attempt: Attempt) -> None:
        slot = SlotHolder(self.slots.give, self.slots.take_when_free)
        try:
            await self.attempts.run(attempt, slot)
        finally:
            self.running.pop(attempt.job.id, None)
            if slot.held:
                self.slots.give()
            attempt.done.set()
