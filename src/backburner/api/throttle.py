"""How fast one API key may call, and how often one address may fail to sign in.

**Per key**: a token bucket per key in the database (`rate_limits`, key `api:<key id>`), so
every API process draws from the same budget: a minute's worth of requests as the burst,
refilled at the rate (the settings' `api_requests_per_minute`, or the owner's own, set by
an admin). Writing the bucket on every request would cost a write transaction per request,
so each process takes a second's worth of requests at once and spends them locally; the
budget can be overdrawn by at most one second's worth per process. Over the limit: 429
with `Retry-After`.

**Failed sign-ins**: per client address, in each process's memory (bounded): after
`auth_failures_per_minute` unknown keys from one address, every request from it that
carries a key is answered 429 until the window has passed — including one that guesses
right, so throttled guessing learns nothing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime

from backburner.errors import TooManyRequests
from backburner.store import Database
from backburner.store import ratelimits as ratelimits_store
from backburner.store import usage as usage_store
from backburner.store.ratelimits import Bucket

# --- decisions ---------------------------------------------------------------------


def take(bucket: Bucket, want: int, per_minute: int, now: datetime) -> tuple[Bucket, int, float]:
    """Refill the bucket for the time passed, then take up to `want` requests from it.
    Returns the bucket after, the requests granted and, when none were, seconds to wait."""
    rate = per_minute / 60.0
    elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
    available = min(float(per_minute), bucket.requests + elapsed * rate)
    granted = min(want, math.floor(available))
    wait = 0.0 if granted else (1.0 - available) / rate
    return replace(bucket, requests=available - granted, updated_at=now), granted, wait


def lease_size(per_minute: int) -> int:
    """Requests a process takes from the shared bucket at once: a second's worth."""
    return max(1, per_minute // 60)


# --- the per-key limiter -----------------------------------------------------------


class KeyThrottle:
    def __init__(self, db: Database, default_per_minute: int, cache_seconds: float) -> None:
        self.db = db
        self.default_per_minute = default_per_minute
        # An admin's change to an owner's rate applies within this (as revoking a key does).
        self.cache_seconds = cache_seconds
        self._leased: dict[str, int] = {}
        self._owner_rates: dict[str, tuple[int, float]] = {}

    async def per_minute(self, owner: str) -> int:
        """The owner's own rate if an admin set one, else the default."""
        cached = self._owner_rates.get(owner)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        own = await usage_store.get_limits(self.db, owner)
        rate = self.default_per_minute
        if own is not None and own.requests_per_minute is not None:
            rate = own.requests_per_minute
        if len(self._owner_rates) > 10_000:
            self._owner_rates.clear()
        self._owner_rates[owner] = (rate, time.monotonic() + self.cache_seconds)
        return rate

    async def admit(self, key_id: str, owner: str, now: datetime) -> None:
        """Let one request of `key_id` through, or raise `TooManyRequests`."""
        per_minute = await self.per_minute(owner)
        if per_minute <= 0:
            return
        if self._leased.get(key_id, 0) > 0:
            self._leased[key_id] -= 1
            return
        full = Bucket(f"api:{key_id}", float(per_minute), 0.0, 1.0, None, now)

        def change(bucket: Bucket) -> tuple[Bucket, tuple[int, float]]:
            after, granted, wait = take(bucket, lease_size(per_minute), per_minute, now)
            return after, (granted, wait)

        granted, wait = await ratelimits_store.update(self.db, full.key, full, change)
        if not granted:
            raise TooManyRequests(
                f"this key may make {per_minute} requests a minute; try again shortly",
                retry_after=wait,
            )
        if len(self._leased) > 10_000:
            self._leased.clear()
        self._leased[key_id] = granted - 1


# --- failed sign-ins per address ---------------------------------------------------


class SignInGuard:
    MAX_ADDRESSES = 10_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        # address -> (window start, failures in it), oldest first
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise `TooManyRequests` while `address` has failed too often this minute."""
        if self.per_minute <= 0:
            return
        entry = self._failures.get(address)
        if entry is None:
            return
        started, count = entry
        left = started + 60.0 - time.monotonic()
        if left <= 0:
            del self._failures[address]
        elif count >= self.per_minute:
            raise TooManyRequests(
                "too many requests with unknown keys from this address; try again later",
                retry_after=left,
            )

    def failed(self, address: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        started, count = self._failures.pop(address, (now, 0))
        if now - started >= 60.0:
            started, count = now, 0
        self._failures[address] = (started, count + 1)
        while len(self._failures) > self.MAX_ADDRESSES:
            self._failures.popitem(last=False)
