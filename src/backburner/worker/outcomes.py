"""Turning how an attempt ended into an Outcome: plain functions, no I/O."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime

from backburner.errors import ErrorInfo
from backburner.jobs.registry import RetryPolicy
from backburner.store import Event, Job, Outcome
from backburner.worker.retry import decide_after_failure


def succeeded(job: Job, result: object) -> Outcome:
    return Outcome(job.id, job.attempts, Event.SUCCEEDED, result=result)


def succeeded_as_object(job: Job, key: str, size: int) -> Outcome:
    """Succeeded, with a result too big for the row, stored as the object `key`."""
    return Outcome(job.id, job.attempts, Event.SUCCEEDED, result_object=key, result_bytes=size)


def canceled(job: Job) -> Outcome:
    return Outcome(
        job.id,
        job.attempts,
        Event.CANCELED,
        error_kind="canceled",
        error_message="canceled while running",
    )


def released(job: Job) -> Outcome:
    """The worker is shutting down: the job goes back to the queue, attempt not counted."""
    return Outcome(
        job.id,
        job.attempts,
        Event.RELEASED,
        error_message="worker shut down; job returned to the queue",
        give_back_attempt=True,
    )


def after_failure(
    job: Job, info: ErrorInfo, policy: RetryPolicy, now: datetime, rng: random.Random | None = None
) -> Outcome:
    """Retry later or fail for good, as the policy decides for this error and attempt."""
    # The job row carries max_attempts fixed at enqueue; it wins over a changed policy.
    effective = dataclasses.replace(policy, max_attempts=job.max_attempts)
    decision = decide_after_failure(info, job.attempts, effective, now, rng)
    if decision.retry:
        return Outcome(
            job.id,
            job.attempts,
            Event.RETRY_SCHEDULED,
            error_kind=info.kind,
            error_message=info.message,
            retryable=True,
            run_at=decision.run_at,
            count_as_retry=True,
        )
    return Outcome(
        job.id,
        job.attempts,
        Event.FAILED,
        error_kind=info.kind,
        error_message=f"{info.message} ({decision.reason})",
        retryable=info.retryable,
    )
