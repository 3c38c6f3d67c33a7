"""Deciding what happens after something fails: plain functions, no I/O.

`classify_error` says what kind of failure an exception is; `decide_after_failure` says
whether to run the job again and when, from the type's policy and the attempt number;
`provider_wait` says how long to wait out a throttled or failing provider *inside* an
attempt (429s, 5xx and timeouts never use up a job's attempts).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import httpx

from backburner.errors import (
    BackburnerError,
    ErrorInfo,
    JobTimeout,
    ProviderUnavailable,
    RateLimited,
    Retry,
    leaf_errors,
)
from backburner.jobs.registry import RetryPolicy

# Network trouble from a handler's own calls (a tool fetching data): transient.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    httpx.TransportError,
    aiohttp.ClientConnectionError,
)

PROVIDER_WAIT_BASE = 0.5
PROVIDER_WAIT_MAX = 30.0


def is_throttled_or_unavailable(error: BaseException) -> bool:
    """A provider answer to wait out inside the attempt: 429 rate_limit_exceeded, 5xx,
    timeouts and connection errors (never a permanent 4xx, quota or request too large)."""
    return isinstance(error, RateLimited | ProviderUnavailable)


def provider_wait(
    failures: int, hint: float | None, unit_random: float, ceiling: float = PROVIDER_WAIT_MAX
) -> float:
    """Seconds to wait before asking the provider again after `failures` transient answers
    in a row: exponential from 0.5 s to `ceiling` (30 s unless configured), up to half of it
    taken off at random (so many waiting calls do not return together), and never sooner
    than the provider's own hint (`retry-after`, or when its rate limit resets)."""
    raw = min(ceiling, PROVIDER_WAIT_BASE * 2 ** max(0, failures - 1))
    delay = raw * (1 - 0.5 * unit_random)
    if hint is not None:
        delay = max(delay, hint)
    return float(delay)


def classify_error(error: BaseException, policy: RetryPolicy) -> ErrorInfo:
    """What kind of failure `error` is, and whether it is worth another attempt.

    Errors of a handler's own code (ValueError, KeyError, TypeError, ...) are permanent
    unless the type's policy names them (`retry_on`) or asks for it
    (`retry_unknown_errors`); provider, network and timeout errors are transient. Of a
    group of errors (tasks run together), a permanent one decides: running again cannot
    succeed."""
    if isinstance(error, BaseExceptionGroup):
        infos = [
            classify_error(leaf, policy)
            for leaf in leaf_errors(error)
            if not isinstance(leaf, asyncio.CancelledError)
        ]
        if not infos:
            return ErrorInfo("error", "every task was cancelled", False)
        permanent = [info for info in infos if not info.retryable]
        return (permanent or infos)[0]
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
    if isinstance(error, NETWORK_ERRORS):
        return ErrorInfo("transient", f"{type(error).__name__}: {message}", True)
    # A bug or bad data in the handler's own code: running it again does the same.
    return ErrorInfo(
        "handler_error", f"{type(error).__name__}: {message}", policy.retry_unknown_errors
    )


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
