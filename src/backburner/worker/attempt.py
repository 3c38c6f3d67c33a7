"""One attempt of one job: validate its payload, run its handler under the type's time
limit, and turn how it ended into an Outcome for the writer.

An attempt can be stopped from outside (a cancel, a shutdown, a lost lease): `Attempt.stop`
cancels the handler's task, and the runner records why it stopped instead of an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import ValidationError

from backburner.clock import Clock
from backburner.config import Settings
from backburner.errors import (
    ErrorInfo,
    InvalidInput,
    JobTimeout,
    PermanentError,
    RateLimited,
    StorageUnavailable,
    UnknownJobType,
)
from backburner.jobs.registry import JobRegistry, JobType, RetryPolicy
from backburner.logs import job_logging
from backburner.providers.base import Provider, ResponseSnapshot
from backburner.storage import Objects, result_key
from backburner.store import OUTSTANDING_CALL_STATUSES, Database, Job, Outcome
from backburner.store import objects as objects_store
from backburner.store import steps as steps_store
from backburner.store.sealed import EncodedJson
from backburner.worker import outcomes
from backburner.worker.context import RunningJob, SlotHolder
from backburner.worker.deadlines import Deadlines
from backburner.worker.retry import classify_error, is_throttled_or_unavailable, provider_wait
from backburner.worker.spending import CallTerms, Spending
from backburner.worker.tracker import ResponseTracker
from backburner.worker.writer import OutcomeWriter

log = logging.getLogger(__name__)

# Tries at cancelling a response at a throttled or failing provider before giving up (the
# job has ended either way; an uncancelled response runs to its end and is billed).
CANCEL_TRIES = 4


class StopReason(StrEnum):
    """Why an attempt was stopped from outside its handler."""

    CANCELED = "canceled"  # a client cancelled the job
    SHUTDOWN = "shutdown"  # the worker is stopping; the job goes back to the queue
    LEASE_LOST = "lease_lost"  # another worker owns the job now
    TIMED_OUT = "timed_out"  # the handler ran past its type's time limit


@dataclass
class Attempt:
    """A job this worker is running, and what may stop it."""

    job: Job
    task: asyncio.Task[None] | None = None
    in_handler: bool = False
    stop_reason: StopReason | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self, reason: StopReason) -> None:
        """Stop the handler; the attempt's task then records why it ended. Only the first
        stop counts: a cancel seen twice (its signal, then the periodic check) must not
        cancel the task again while it writes why it stopped, or the outcome is lost."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self.in_handler and self.task is not None:
            self.task.cancel()


class AttemptRunner:
    """Runs attempts for one worker and hands their outcomes to its writer."""

    def __init__(
        self,
        *,
        db: Database,
        registry: JobRegistry,
        provider: Provider,
        settings: Settings,
        tracker: ResponseTracker,
        spending: Spending,
        writer: OutcomeWriter,
        worker_id: str,
        clock: Clock,
        objects: Objects,
        deadlines: Deadlines,
        capacity: int,
    ) -> None:
        """`capacity`: the worker's slots; as many outcomes for each batch the writer may
        have at the database wait for their write without holding one."""
        self.db = db
        self.capacity = capacity
        self.deadlines = deadlines
        self.objects = objects
        self.registry = registry
        self.provider = provider
        self.settings = settings
        self.tracker = tracker
        self.spending = spending
        self.writer = writer
        self.worker_id = worker_id
        self.clock = clock

    async def run(self, attempt: Attempt, slot: SlotHolder) -> None:
        """Run the attempt to its outcome and write it; never raises for the job's sake."""
        job = attempt.job
        with job_logging(job_id=job.id, type=job.type, attempt=job.attempts):
            try:
                outcome = await self._execute(attempt, slot)
                # The handler is done: its slot goes to the next job while the outcome waits
                # for the writer's next batch (holding it through the write kept a claim
                # from overlapping the finish before it; README, "Benchmarks"), unless as
                # many outcomes wait already as the worker has slots for each batch the
                # writer may have at the database. Then the writes are what holds the
                # worker up, and new jobs wait with them. (Once per lane: with two batches
                # in flight, a bound of one worker's slots held claims back at full speed.)
                if self.writer.unwritten < self.capacity * self.writer.lanes:
                    slot.give_back()
                if outcome is not None:
                    applied = await self.writer.write(outcome)
                    log.info(
                        "job attempt ended",
                        extra={
                            "outcome": outcome.event.value,
                            "error_kind": outcome.error_kind,
                            "applied": applied,
                        },
                    )
            except Exception:
                # Nothing reaches here but our own bugs; the lease expiry will recover the job.
                log.exception("worker failed to run a job")

    async def _execute(self, attempt: Attempt, slot: SlotHolder) -> Outcome | None:
        job = attempt.job
        try:
            job_type = self.registry.get(job.type)
        except UnknownJobType as unknown:
            info = ErrorInfo(unknown.kind, f"this worker has {unknown}", False)
            return outcomes.after_failure(job, info, RetryPolicy(), self.clock())
        try:
            payload = job_type.input_model.model_validate(job.payload)
        except ValidationError as error:
            invalid = InvalidInput(f"payload does not fit {job.type}: {error}")
            return outcomes.after_failure(
                job, classify_error(invalid, job_type.retry), job_type.retry, self.clock()
            )
        context = RunningJob(
            job,
            db=self.db,
            provider=self.provider,
            tracker=self.tracker,
            settings=self.settings,
            worker_id=self.worker_id,
            slot=slot,
            clock=self.clock,
            spending=self.spending,
            sequential_calls=job_type.sequential_model_calls,
        )
        return await self._run_handler(attempt, job_type, context, payload)

    async def _run_handler(
        self, attempt: Attempt, job_type: JobType, context: RunningJob, payload: object
    ) -> Outcome | None:
        """Run the handler in this attempt's own task, under the type's time limit (kept by
        the worker's one timer, which stops the attempt when it passes)."""
        job = attempt.job
        if attempt.stop_reason is not None:  # stopped before the handler even started
            return await self._after_stop(attempt, job_type)
        deadline = self.deadlines.arm(
            job.timeout_seconds, lambda: attempt.stop(StopReason.TIMED_OUT)
        )
        attempt.in_handler = True
        try:
            try:
                value = await job_type.handler(context, payload)
            finally:
                deadline.disarm()
                context.close()
        except asyncio.CancelledError:
            if attempt.stop_reason is None:
                raise  # the worker itself is being torn down
            attempt.in_handler = False
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: we stopped the handler on purpose
            return await self._after_stop(attempt, job_type)
        except Exception as error:  # a TimeoutError of the handler's own is an error too
            return await self._after_error(job, job_type, error)
        finally:
            attempt.in_handler = False
        try:
            result = job_type.output_model.model_validate(value)
            # Compact UTF-8 JSON straight from pydantic's serializer (a dump to Python
            # values and json.dumps after it cost twice as much per job).
            encoded = result.model_dump_json().encode()
        except (ValidationError, ValueError) as invalid:  # ValueError: text JSON cannot
            # carry (a lone surrogate); NaN and infinities become null, as JSON has them
            info = classify_error(
                PermanentError(
                    f"handler returned a result that does not fit {job.type}: {invalid}"
                ),
                job_type.retry,
            )
            return outcomes.after_failure(job, info, job_type.retry, self.clock())
        return await self._succeeded(job, job_type, encoded)

    async def _succeeded(self, job: Job, job_type: JobType, encoded: bytes) -> Outcome:
        """The job's outcome with its result (as JSON); a result larger than
        RESULT_INLINE_BYTES goes to object storage first (a store that fails makes the
        attempt fail as retryable: the next one replays the memoised model calls, paying
        nothing again)."""
        if len(encoded) <= self.settings.result_inline_bytes:
            return outcomes.succeeded(job, EncodedJson(encoded))  # stored without a re-encode
        key = f"{result_key(job.id)}/{job.attempts}-{secrets.token_hex(4)}"
        try:
            await objects_store.expect(self.db, key, self.clock())
            await self.objects.put(key, encoded)
        except StorageUnavailable as error:
            return await self._after_error(job, job_type, error)
        return outcomes.succeeded_as_object(job, key, len(encoded))

    async def _after_error(self, job: Job, job_type: JobType, error: BaseException) -> Outcome:
        """Retry later or fail, as the policy says for this error; a job that ends here
        stops paying for its outstanding calls."""
        outcome = self._failed(job, job_type, error)
        if outcome.status.is_terminal:
            await self.cancel_model_calls(job)
        return outcome

    def _failed(self, job: Job, job_type: JobType, error: BaseException) -> Outcome:
        info = classify_error(error, job_type.retry)
        log.warning("job attempt failed", extra={"error_kind": info.kind, "error": info.message})
        return outcomes.after_failure(job, info, job_type.retry, self.clock())

    async def _after_stop(self, attempt: Attempt, job_type: JobType) -> Outcome | None:
        """The outcome of a handler we stopped on purpose (None: it is not ours to write)."""
        job = attempt.job
        if attempt.stop_reason == StopReason.TIMED_OUT:
            # Its model calls are abandoned, whether or not the job runs again.
            await self.cancel_model_calls(job)
            timeout = JobTimeout(f"attempt ran past its {job.timeout_seconds:g}s limit")
            return self._failed(job, job_type, timeout)
        if attempt.stop_reason == StopReason.CANCELED:
            await self.cancel_model_calls(job)
            return outcomes.canceled(job)
        if attempt.stop_reason == StopReason.SHUTDOWN:
            return outcomes.released(job)
        log.warning("lease lost; another worker owns the job now")
        return None

    async def cancel_model_calls(self, job: Job) -> None:
        """Stop paying for responses nobody will read."""
        try:
            calls = await steps_store.load_calls(self.db, job.id)
        except Exception:
            log.exception("listing outstanding responses failed")
            return
        for key, call in calls.items():
            if call.status not in OUTSTANDING_CALL_STATUSES:
                continue
            try:
                snapshot = await self._cancel_at_provider(call.response_id)
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
                    extra={"response_id": call.response_id, "error": str(error)},
                )

    async def _cancel_at_provider(self, response_id: str) -> ResponseSnapshot:
        """Cancel a response, riding out a throttled or failing provider for a few tries,
        and read what it was billed: the cancel's answer may not carry its usage yet, a
        retrieve after it does."""
        failures = 0
        while True:
            try:
                snapshot = await self.provider.cancel(response_id)
                break
            except Exception as error:
                failures += 1
                if not is_throttled_or_unavailable(error) or failures >= CANCEL_TRIES:
                    raise
                hint = error.retry_after if isinstance(error, RateLimited) else None
                await asyncio.sleep(
                    provider_wait(
                        failures, hint, random.random(), self.settings.provider_retry_max_seconds
                    )
                )
        if snapshot.usage is None:
            with contextlib.suppress(Exception):
                read = await self.provider.retrieve(response_id)
                if read.is_terminal:
                    snapshot = read
        return snapshot
