"""Deciding what happens after an attempt fails: plain functions, no I/O.

`classify_error` says what kind of failure an exception is; `decide_after_failure` says
whether to run again and when, from the type's policy and the attempt number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from backburner.errors import BackburnerError, ErrorInfo, JobTimeout, RateLimited, Retry
from backburner.jobs.registry import RetryPolicy


def classify_error(error: BaseException, policy: RetryPolicy) -> ErrorInfo:
    """What kind of failure `error` is, and whether it is worth another attempt."""
    message = str(error) or type(error).__name__
    if isinstance(error, Retry):
        return ErrorInfo(error.kind, message, True, retry_after=error.defer)
    if isinstance(error, RateLimited):
        return ErrorInfo(error.kind, message, True, retry_after=error.retry_after)
    if isinstance(error, JobTimeout):
        return ErrorInfo(error.kind, message, policy.retry_on_timeout)
    if isinstance(error, BackburnerError):
        return ErrorInfo(error.kind, message, error.retryable)
    if policy.retry_on and isinstance(error, policy.retry_on):
        return ErrorInfo("transient", f"{type(error).__name__}: {message}", True)
    if isinstance(error, TimeoutError | ConnectionError):
        return ErrorInfo("transient", f"{type(error).__name__}: {message}", True)
    if isinstance(error, ValueError | TypeError | KeyError | LookupError):
        # Programming or data errors rarely fix themselves, but a deploy may fix them.
        return ErrorInfo("error", f"{type(error).__name__}: {message}", policy.retry_unknown_errors)
    return ErrorInfo("error", f"{type(error).__name__}: {message}", policy.retry_unknown_errors)


def backoff_delay(attempt: int, policy: RetryPolicy, unit_random: float) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential from `base_delay`, capped
    at `max_delay`, with up to `jitter` of it taken off at random (`unit_random` in [0,1))."""
    raw = min(policy.max_delay, policy.base_delay * 2 ** max(0, attempt - 1))
    return float(raw * (1 - policy.jitter * unit_random))


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    run_at: datetime | None
    reason: str


def decide_after_failure(
    info: ErrorInfo,
    attempt: int,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Run the job again (and when), or let it fail for good."""
    if not info.retryable:
        return RetryDecision(False, None, f"{info.kind} is not retryable")
    if attempt >= policy.max_attempts:
        return RetryDecision(False, None, f"out of attempts ({attempt}/{policy.max_attempts})")
    delay = backoff_delay(attempt, policy, (rng or random).random())
    if info.retry_after is not None:
        # The provider (or the handler) named a wait; never retry sooner than that.
        delay = max(delay, info.retry_after)
    return RetryDecision(True, now + timedelta(seconds=delay), f"retry in {delay:.1f}s")
