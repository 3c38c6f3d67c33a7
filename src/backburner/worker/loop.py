"""The worker: claims jobs, runs their handlers, keeps their leases, and shuts down cleanly.

Everything it starts lives in task groups it owns: the claim loop, one task per running
attempt, the response tracker, heartbeats, the reaper, the cancel watcher and the outcome
writer. `stop()` (SIGTERM) stops claiming, lets running jobs finish within the grace period,
and hands the rest back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from backburner.config import Settings
from backburner.errors import ErrorInfo, PermanentError
from backburner.jobs.registry import JobRegistry, JobType, RetryPolicy, UnknownJobTypeError
from backburner.logs import job_logging
from backburner.notify import Dispatcher
from backburner.providers.base import Provider
from backburner.store import CHANNEL_CANCEL, CHANNEL_JOBS, CHANNEL_RESPONSES, Database, Job, Outcome
from backburner.store import jobs as jobs_store
from backburner.store import steps as steps_store
from backburner.store import workers as workers_store
from backburner.worker import outcomes
from backburner.worker.context import RunningJob, SlotHolder
from backburner.worker.retry import classify_error
from backburner.worker.slots import Slots
from backburner.worker.spending import CallTerms, Spending
from backburner.worker.tracker import ResponseTracker
from backburner.worker.writer import OutcomeWriter

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def lost_leases(running_before: Mapping[str, object], held: set[str]) -> list[str]:
    """Jobs this worker was running when it renewed its leases but no longer holds."""
    return [job_id for job_id in running_before if job_id not in held]


def orphaned_leases(
    held: set[str], running: Mapping[str, object], suspects: set[str]
) -> tuple[set[str], set[str]]:
    """Jobs the database says this worker holds but that it does not run (an attempt that
    ended without writing its outcome). A claim that just committed explains one heartbeat,
    not two: a job seen so twice in a row is orphaned. Returns (orphaned, suspects for the
    next heartbeat)."""
    unknown = {job_id for job_id in held if job_id not in running}
    return unknown & suspects, unknown - suspects


@dataclass
class _Attempt:
    job: Job
    task: asyncio.Task[None] | None = None
    in_handler: bool = False
    stop_reason: str | None = None  # "canceled" | "shutdown" | "lease_lost"
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self, reason: str) -> None:
        """Stop the handler; the attempt's task then records why it ended. Only the first
        stop counts: a cancel seen twice (its signal, then the periodic check) must not
        cancel the task again while it writes why it stopped, or the outcome is lost."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self.in_handler and self.task is not None:
            self.task.cancel()


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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.registry = registry
        self.provider = provider
        self.settings = settings
        self.clock = clock
        self.id = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.tracker = ResponseTracker(
            provider,
            initial_delay=first_poll_delay(settings),
            max_delay=settings.poll_max_seconds,
            polls_per_second=settings.poll_budget_per_second,
        )
        self.spending = Spending(db, settings, clock, provider.name)
        # Notifications owed by finished jobs go out from every worker process.
        self.dispatcher = Dispatcher(db, settings) if settings.notify_dispatcher else None
        self._caps = jobs_store.OwnerCaps(default=settings.owner_max_running)
        self.slots = Slots(concurrency or settings.worker_concurrency)
        self.running: dict[str, _Attempt] = {}
        # Held in the database but not running here: suspected at one heartbeat, orphaned
        # (and no longer renewed) at the next.
        self._lease_suspects: set[str] = set()
        self._housekeeping_over = asyncio.Event()
        self._orphans: dict[str, datetime] = {}
        self._writer = OutcomeWriter(db, self.id, clock)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()

    # --- Lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from a signal handler)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Work until `stop()`; returns once every attempt has ended or been handed back."""
        self._housekeeping_over.clear()
        await workers_store.register_worker(
            self.db,
            worker_id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.slots.capacity,
            now=self.clock(),
        )
        await self._refresh_owner_caps()
        unsubscribe = [
            self.db.signals.subscribe(CHANNEL_JOBS, lambda _payload: self._wake.set()),
            self.db.signals.subscribe(CHANNEL_CANCEL, self._on_cancel_signal),
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
                housekeeping = [
                    services.create_task(
                        self._every(self.settings.heartbeat_seconds, self._heartbeat),
                        name="heartbeat",
                    ),
                    services.create_task(
                        self._every(self.settings.reap_interval_seconds, self._reap), name="reaper"
                    ),
                    services.create_task(
                        self._every(self.settings.cancel_check_seconds, self._check_cancels),
                        name="cancels",
                    ),
                ]
                notifying = (
                    services.create_task(self.dispatcher.run(), name="notifications")
                    if self.dispatcher is not None
                    else None
                )
                async with asyncio.TaskGroup() as attempts:
                    self.started.set()
                    await self._claim_until_stopped(attempts)
                    await self._drain()
                # Housekeeping ends its round; then the rest is cancelled.
                self._housekeeping_over.set()
                await asyncio.wait(housekeeping, timeout=self.settings.shutdown_grace_seconds)
                for task in background + housekeeping:
                    task.cancel()
                if notifying is not None and self.dispatcher is not None:
                    # Stopped, not cancelled: a transaction cut off mid-way could leave
                    # SQLite's write lock held; the dispatcher ends its round and returns.
                    self.dispatcher.stop()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            asyncio.shield(notifying), self.settings.shutdown_grace_seconds
                        )
                    notifying.cancel()
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
            attempt.stop("shutdown")

    # --- Claiming -----------------------------------------------------------------------------

    async def _claim_until_stopped(self, attempts: asyncio.TaskGroup) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self.slots.free == 0:
                await self._until_stop_or(self.slots.wait_for_free())
                continue
            self._wake.clear()
            wanted = min(self.slots.free, self.settings.claim_batch_size)
            try:
                claimed = await jobs_store.claim_jobs(
                    self.db,
                    worker_id=self.id,
                    limit=wanted,
                    lease_seconds=self.settings.lease_seconds,
                    now=self.clock(),
                    types=self.registry.names(),
                    caps=self._caps,
                )
                failures = 0
            except Exception:
                failures += 1
                log.exception("claiming jobs failed", extra={"worker_id": self.id})
                await self._until_stop_or(asyncio.sleep(min(10.0, 0.2 * 2**failures)))
                continue
            for job in claimed:
                self._start(job, attempts)
            if len(claimed) < wanted:
                await self._idle()

    async def _idle(self) -> None:
        """Sleep until woken by a new job, the next scheduled one falls due, or a while."""
        timeout = self.settings.idle_poll_seconds
        with contextlib.suppress(Exception):
            due = await jobs_store.next_due_at(self.db)
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
        self.slots.take()
        attempt = _Attempt(job)
        self.running[job.id] = attempt
        attempt.task = attempts.create_task(self._run_attempt(attempt), name=f"job-{job.id}")

    # --- Running one attempt ---------------------------------------------------------------

    async def _run_attempt(self, attempt: _Attempt) -> None:
        job = attempt.job
        with job_logging(job_id=job.id, type=job.type, attempt=job.attempts):
            await self._run_logged_attempt(attempt)

    async def _run_logged_attempt(self, attempt: _Attempt) -> None:
        job = attempt.job
        slot = SlotHolder(self.slots.give, self.slots.take_when_free)
        try:
            outcome = await self._execute(attempt, slot)
            if outcome is not None:
                applied = await self._writer.write(outcome)
                log.info(
                    "job attempt ended",
                    extra={
                        "job_id": job.id,
                        "type": job.type,
                        "attempt": job.attempts,
                        "outcome": outcome.event,
                        "error_kind": outcome.error_kind,
                        "applied": applied,
                    },
                )
        except Exception:
            # Nothing reaches here but our own bugs; the lease expiry will recover the job.
            log.exception("worker failed to run a job", extra={"job_id": job.id})
        finally:
            self.running.pop(job.id, None)
            if slot.held:
                self.slots.give()
            attempt.done.set()

    async def _execute(self, attempt: _Attempt, slot: SlotHolder) -> Outcome | None:
        job = attempt.job
        try:
            job_type = self.registry.get(job.type)
        except UnknownJobTypeError:
            info = ErrorInfo("unknown_type", f"this worker has no job type {job.type!r}", False)
            return outcomes.after_failure(job, info, RetryPolicy(), self.clock())
        try:
            payload = job_type.input_model.model_validate(job.payload)
        except ValidationError as error:
            info = ErrorInfo("invalid_input", f"payload does not fit {job.type}: {error}", False)
            return outcomes.after_failure(job, info, job_type.retry, self.clock())
        context = RunningJob(
            job,
            db=self.db,
            provider=self.provider,
            tracker=self.tracker,
            settings=self.settings,
            worker_id=self.id,
            slot=slot,
            clock=self.clock,
            spending=self.spending,
            sequential_calls=job_type.sequential_model_calls,
        )
        return await self._run_handler(attempt, job_type, context, payload)

    async def _run_handler(
        self, attempt: _Attempt, job_type: JobType, context: RunningJob, payload: object
    ) -> Outcome | None:
        """Run the handler in this attempt's own task, under the type's time limit."""
        job = attempt.job
        if attempt.stop_reason is not None:  # stopped before the handler even started
            return await self._after_stop(attempt)
        deadline = asyncio.timeout(job.timeout_seconds)
        attempt.in_handler = True
        try:
            async with deadline:
                value = await job_type.handler(context, payload)
        except asyncio.CancelledError:
            if attempt.stop_reason is None:
                raise  # the worker itself is being torn down
            attempt.in_handler = False
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: we stopped the handler on purpose
            return await self._after_stop(attempt)
        except TimeoutError as error:
            if not deadline.expired():
                return await self._after_error(job, job_type, error)
            await self._cancel_model_calls(job)
            info = ErrorInfo(
                "timeout",
                f"attempt ran past its {job.timeout_seconds:g}s limit",
                job_type.retry.retry_on_timeout,
            )
            return outcomes.after_failure(job, info, job_type.retry, self.clock())
        except Exception as error:
            return await self._after_error(job, job_type, error)
        finally:
            attempt.in_handler = False
        try:
            result = job_type.output_model.model_validate(value)
        except ValidationError as invalid:
            info = classify_error(
                PermanentError(
                    f"handler returned a result that does not fit {job.type}: {invalid}"
                ),
                job_type.retry,
            )
            return outcomes.after_failure(job, info, job_type.retry, self.clock())
        return outcomes.succeeded(job, result.model_dump(mode="json"))

    async def _after_error(self, job: Job, job_type: JobType, error: BaseException) -> Outcome:
        """Retry later or fail, as the policy says for this error."""
        info = classify_error(error, job_type.retry)
        outcome = outcomes.after_failure(job, info, job_type.retry, self.clock())
        if outcome.status.is_terminal:
            await self._cancel_model_calls(job)
        log.warning(
            "job attempt failed",
            extra={
                "job_id": job.id,
                "type": job.type,
                "attempt": job.attempts,
                "error_kind": info.kind,
                "error": info.message,
            },
        )
        return outcome

    async def _after_stop(self, attempt: _Attempt) -> Outcome | None:
        """The outcome of a handler we stopped on purpose (None: it is not ours to write)."""
        job = attempt.job
        if attempt.stop_reason == "canceled":
            await self._cancel_model_calls(job)
            return outcomes.canceled(job)
        if attempt.stop_reason == "shutdown":
            return outcomes.released(job)
        log.warning("lease lost; another worker owns the job now", extra={"job_id": job.id})
        return None

    async def _cancel_model_calls(self, job: Job) -> None:
        """Stop paying for responses nobody will read."""
        try:
            calls = await steps_store.load_calls(self.db, job.id)
        except Exception:
            log.exception("listing outstanding responses failed", extra={"job_id": job.id})
            return
        for key, call in calls.items():
            if call.status not in steps_store.OUTSTANDING_STATUSES:
                continue
            try:
                snapshot = await self.provider.cancel(call.response_id)
                terms = CallTerms(call.model, call.completion_window, call.service_tier)
                await steps_store.record_finished(
                    self.db,
                    job_id=job.id,
                    key=key,
                    status=snapshot.status,
                    output=None,
                    error_message="job ended",
                    usage=(snapshot.usage.as_counts() if snapshot.usage else {}),
                    attempt=job.attempts,
                    now=self.clock(),
                    owner=job.owner,
                    # A cancelled response is billed for what it produced before it stopped.
                    cost=self.spending.cost(terms, snapshot.usage),
                )
            except Exception as error:
                log.warning(
                    "cancelling a response failed",
                    extra={"job_id": job.id, "response_id": call.response_id, "error": str(error)},
                )

    # --- Housekeeping -------------------------------------------------------------------------

    async def _refresh_owner_caps(self) -> None:
        """Notice owner caps set while we run (`backburner owners set`), every reap round."""
        self._caps = jobs_store.OwnerCaps(
            default=self.settings.owner_max_running,
            per_owner=await jobs_store.has_owner_caps(self.db),
        )

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` every `seconds` until housekeeping ends; a round that has begun
        finishes (cut off mid-transaction, it could leave SQLite's write lock held)."""
        while not self._housekeeping_over.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._housekeeping_over.wait(), timeout=seconds)
            if self._housekeeping_over.is_set():
                return
            try:
                await action()
            except Exception:
                log.exception("worker housekeeping failed", extra={"action": action.__name__})

    async def _heartbeat(self) -> None:
        # Judge only jobs claimed before this renewal began: a claim that commits while the
        # renewal runs is invisible to it, and its jobs are ours, not lost.
        running_before = dict(self.running)
        now = self.clock()
        held = await jobs_store.extend_leases(
            self.db,
            worker_id=self.id,
            lease_seconds=self.settings.lease_seconds,
            now=now,
            skip=self._orphans.keys(),
        )
        for job_id in lost_leases(running_before, held):
            attempt = self.running.get(job_id)
            if attempt is not None and attempt.in_handler:
                attempt.stop("lease_lost")
        orphaned, self._lease_suspects = orphaned_leases(held, self.running, self._lease_suspects)
        for job_id in orphaned:
            log.error(
                "a job this worker holds is not running here; its lease will run out and "
                "the reaper will hand it on",
                extra={"job_id": job_id, "worker_id": self.id},
            )
            self._orphans[job_id] = now
        # Long after its lease ran out the reaper has it; no need to keep skipping it.
        forget_before = now - timedelta(seconds=3 * self.settings.lease_seconds)
        self._orphans = {j: at for j, at in self._orphans.items() if at > forget_before}

    async def _reap(self) -> None:
        await self._refresh_owner_caps()
        reaped = await jobs_store.reap_expired_leases(self.db, now=self.clock())
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

    async def _check_cancels(self) -> None:
        for job_id in await jobs_store.cancel_requested_ids(self.db, worker_id=self.id):
            self._cancel_running(job_id)

    def _on_cancel_signal(self, job_id: str) -> None:
        self._cancel_running(job_id)

    def _cancel_running(self, job_id: str) -> None:
        attempt = self.running.get(job_id)
        if attempt is not None:
            job = attempt.job
            log.info(
                "cancelling running job",
                extra={"job_id": job.id, "type": job.type, "attempt": job.attempts},
            )
            attempt.stop("canceled")
