"""One requests- and tokens-per-minute budget per provider+model, shared by every worker.

A token bucket per limit, kept in the database (`rate_limits`), so every worker process
and machine draws from the same budget. Before a model call a worker takes one request
and the call's estimated tokens; after it, the estimate is corrected from `usage`. The
budget breathes: a 429 halves it and blocks the model for the server's `retry-after`
(every worker sees the block at once); each success gives back 5% of the full budget, and
so does every 6 s that passes (additive increase, multiplicative decrease, as TCP does
with a congested link). It never holds less than one request, so a low limit cannot wedge
it, and it refills a little slower than the configured rate (97%), so the provider, whose
window started a moment after ours, is not asked a hair too soon.

The decisions are plain functions of a `Bucket`; `RateLimiter` does the I/O. (The design
places the limiter with the providers; its state lives in the store, which providers may
not import, so it sits here with the worker, which may import both.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from backburner.store import Database
from backburner.store import ratelimits as ratelimits_store
from backburner.store.ratelimits import Bucket

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_SCALE = 0.05
RECOVERY_STEP = 0.05
# The scale grows back with time too, without successes (a budget shrunk before a restart
# heals after it): RECOVERY_STEP every RECOVERY_SECONDS.
RECOVERY_SECONDS = 6.0
# The share of the configured rate the bucket refills at.
REFILL_SHARE = 0.97
# 429s within this many seconds of the last block are the same congestion: one halving.
SAME_CONGESTION_SECONDS = 10.0
# Rounding leaves a refilled bucket a hair short of what was waited for: close enough.
TOLERANCE = 1e-6
MIN_WAIT_SECONDS = 0.01
DEFAULT_BLOCK_SECONDS = 1.0
MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Limits:
    rpm: int | None
    tpm: int | None


def limits_for(configured: Mapping[str, Mapping[str, int]], model: str) -> Limits | None:
    """The model's configured limits (or the "*" entry's); None: the model is unlimited."""
    entry = configured.get(model) or configured.get("*")
    if not entry:
        return None
    return Limits(rpm=entry.get("rpm"), tpm=entry.get("tpm"))


def request_capacity(limits: Limits, scale: float) -> float:
    """Requests the bucket holds at this scale: never less than one, or a shrunk budget
    for a low limit could never admit a call again."""
    return max(1.0, (limits.rpm or 0) * scale)


def refilled(bucket: Bucket, limits: Limits, now: datetime) -> Bucket:
    """The bucket after the time since its last update has refilled it (and grown its
    scale back a little)."""
    elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
    # The rate used is the one `take` predicted its wait with: the grown-back scale.
    scale = min(1.0, bucket.scale + RECOVERY_STEP * elapsed / RECOVERY_SECONDS)
    requests, tokens = bucket.requests, bucket.tokens
    if limits.rpm is not None:
        full = request_capacity(limits, scale)
        requests = min(full, requests + elapsed * full * REFILL_SHARE / 60)
    if limits.tpm is not None:
        full = limits.tpm * scale
        tokens = min(full, tokens + elapsed * full * REFILL_SHARE / 60)
    return replace(bucket, requests=requests, tokens=tokens, scale=scale, updated_at=now)


def full_bucket(key: str, limits: Limits, now: datetime) -> Bucket:
    return Bucket(
        key=key,
        requests=float(limits.rpm or 0),
        tokens=float(limits.tpm or 0),
        scale=1.0,
        blocked_until=None,
        updated_at=now,
    )


def told_to_wait(bucket: Bucket, seconds: float) -> tuple[Bucket, float]:
    """(the bucket with the wait counted, the seconds to wait; at most MAX_WAIT_SECONDS
    before asking again)."""
    seconds = min(seconds, MAX_WAIT_SECONDS)
    counted = replace(
        bucket, waits=bucket.waits + 1, waited_seconds=bucket.waited_seconds + seconds
    )
    return counted, seconds


def take(bucket: Bucket, limits: Limits, tokens: int, now: datetime) -> tuple[Bucket, float]:
    """Take one request and `tokens` from a refilled bucket: (bucket after, 0.0), or
    (bucket with only the wait counted, seconds until the call would fit, at most
    MAX_WAIT_SECONDS)."""
    if bucket.blocked_until is not None and bucket.blocked_until > now:
        return told_to_wait(bucket, (bucket.blocked_until - now).total_seconds())
    wait = 0.0
    if limits.rpm is not None and bucket.requests < 1 - TOLERANCE:
        rate = request_capacity(limits, bucket.scale) * REFILL_SHARE
        wait = (1 - bucket.requests) * 60 / rate
    if limits.tpm is not None:
        # A call larger than the whole (shrunk) budget waits for a full bucket, not forever.
        needed = min(float(tokens), limits.tpm * bucket.scale)
        if bucket.tokens < needed - TOLERANCE:
            rate = limits.tpm * bucket.scale * REFILL_SHARE
            wait = max(wait, (needed - bucket.tokens) * 60 / rate)
    if wait > 0:
        # Never a wait so short that asking again is all the waiter does.
        return told_to_wait(bucket, max(wait, MIN_WAIT_SECONDS))
    return (
        replace(
            bucket,
            requests=bucket.requests - (1 if limits.rpm is not None else 0),
            tokens=bucket.tokens - (tokens if limits.tpm is not None else 0),
        ),
        0.0,
    )


def settled(bucket: Bucket, limits: Limits, extra_tokens: int) -> Bucket:
    """After a call succeeded: charge what it used beyond the estimate (or refund what it
    did not), and let the budget grow back a step toward its configured size."""
    scale = min(1.0, bucket.scale + RECOVERY_STEP)
    tokens = bucket.tokens
    if limits.tpm is not None:
        # A refund (the call used less than estimated) never fills past the budget.
        tokens = min(limits.tpm * scale, tokens - extra_tokens)
    return replace(bucket, tokens=tokens, scale=scale)


def throttled(bucket: Bucket, retry_after: float | None, now: datetime) -> Bucket:
    """After a 429: empty the budget and block until the server's retry-after; halve it,
    unless it was halved moments ago. The 429s of one burst (many calls that went out
    together) are one sign of congestion, not one each, as TCP cuts its window once per
    round trip."""
    block = retry_after if retry_after is not None else DEFAULT_BLOCK_SECONDS
    recently = bucket.blocked_until is not None and bucket.blocked_until > now - timedelta(
        seconds=SAME_CONGESTION_SECONDS
    )
    scale = bucket.scale if recently else max(MIN_SCALE, bucket.scale / 2)
    until = now + timedelta(seconds=block)
    if bucket.blocked_until is not None:
        until = max(until, bucket.blocked_until)
    return replace(
        bucket,
        requests=min(bucket.requests, 0.0),
        tokens=min(bucket.tokens, 0.0),
        scale=scale,
        blocked_until=until,
    )


class RateLimiter:
    """The worker's side of the shared budget."""

    def __init__(
        self,
        db: Database,
        configured: Mapping[str, Mapping[str, int]],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._configured = configured
        self._clock = clock

    def limits(self, model: str) -> Limits | None:
        return limits_for(self._configured, model)

    async def acquire(
        self,
        provider: str,
        model: str,
        tokens: int,
        *,
        waiting: Callable[[float], Awaitable[None]] | None = None,
    ) -> float:
        """Wait until the budget allows one call of `tokens`; returns seconds waited.
        `waiting(seconds)` does the waiting (e.g. with the worker slot given back)."""
        limits = self.limits(model)
        if limits is None:
            return 0.0
        key = f"{provider}:{model}"
        waited = 0.0
        while True:
            wait = await self._apply(key, limits, lambda b, now: take(b, limits, tokens, now))
            if wait <= 0:
                return waited
            log.info("rate limit: waiting", extra={"model": model, "seconds": round(wait, 3)})
            await (waiting or asyncio.sleep)(wait)
            waited += wait

    async def settle(self, provider: str, model: str, estimated: int, used: int) -> None:
        limits = self.limits(model)
        if limits is not None:
            await self._apply(
                f"{provider}:{model}",
                limits,
                lambda b, _now: (settled(b, limits, used - estimated), None),
            )

    async def throttle(self, provider: str, model: str, retry_after: float | None) -> None:
        limits = self.limits(model)
        if limits is None:
            return
        log.warning(
            "provider rate limit hit; shrinking the shared budget",
            extra={"model": model, "retry_after": retry_after},
        )
        await self._apply(
            f"{provider}:{model}",
            limits,
            lambda b, now: (throttled(b, retry_after, now), None),
        )

    async def _apply(
        self, key: str, limits: Limits, change: Callable[[Bucket, datetime], tuple[Bucket, T]]
    ) -> T:
        """Refill the bucket (creating it full), then change it, in one transaction."""
        now = self._clock()

        def refill_then_change(bucket: Bucket) -> tuple[Bucket, T]:
            return change(refilled(bucket, limits, now), now)

        return await ratelimits_store.update(
            self._db, key, full_bucket(key, limits, now), refill_then_change
        )
