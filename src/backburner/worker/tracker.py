"""Waiting on model calls without holding anything: one tracker per worker process.

Handlers await `wait(response_id)`; the tracker polls every outstanding response of the
process in one loop, each on its own backoff (soon at first, then less often), and wakes
the waiter when the response ends. `nudge(response_id)` (e.g. from a webhook) makes the
next poll of that response happen at once; both paths end in the same code.

A poll the provider answers with a 429, a 5xx or a timeout is not the response's fate:
the response is polled again after a backoff (honouring `retry-after`), however long the
waiter waits. Only an answer about the response itself (it is lost, or refused) ends the
wait with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from backburner.errors import RateLimited
from backburner.providers.base import Provider, ResponseSnapshot
from backburner.worker.retry import PROVIDER_WAIT_MAX, is_throttled_or_unavailable, provider_wait

log = logging.getLogger(__name__)


def next_poll_delay(polls_so_far: int, initial: float, maximum: float) -> float:
    """Seconds until the next poll of a response polled `polls_so_far` times already."""
    return float(min(maximum, initial * 1.6**polls_so_far))


@dataclass
class _Waiting:
    response_id: str
    future: asyncio.Future[ResponseSnapshot]
    polls: int = 0
    due: float = 0.0
    waiters: int = 1
    nudged: bool = False
    failures: int = 0  # polls in a row the provider could not answer


@dataclass(order=True)
class _Due:
    at: float
    response_id: str = field(compare=False)


class ResponseTracker:
    def __init__(
        self,
        provider: Provider,
        *,
        initial_delay: float = 0.25,
        max_delay: float = 5.0,
        max_concurrent_polls: int = 32,
        polls_per_second: float | None = 100.0,
        max_retry_wait: float = PROVIDER_WAIT_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_retry_wait = max_retry_wait
        self._provider = provider
        self._initial = initial_delay
        self._max = max_delay
        self._clock = clock
        self._waiting: dict[str, _Waiting] = {}
        self._schedule: list[_Due] = []
        # Nudged responses (a webhook said they changed) are polled before anything due.
        # Each with the number of its nudge (see `until_looked_at`).
        self._urgent: deque[tuple[int, str]] = deque()
        self._wake = asyncio.Event()
        self._poll_slots = asyncio.Semaphore(max_concurrent_polls)
        # Scheduled polls are paced to this budget: with thousands of responses waiting,
        # each is polled less often instead of the provider being flooded.
        self._poll_interval = 1.0 / polls_per_second if polls_per_second else 0.0
        self._next_launch = 0.0
        self.polls = 0
        self.poll_failures = 0
        # Nudges numbered in order, those whose response is not looked at yet (queued or
        # its poll out; oldest first), and an event set each time one is.
        self._nudges = 0
        self._unlooked: dict[int, None] = {}
        self._looked = asyncio.Event()

    @property
    def outstanding(self) -> int:
        return len(self._waiting)

    async def wait(self, response_id: str) -> ResponseSnapshot:
        """The response once it has ended (completed, failed, cancelled or incomplete)."""
        entry = self._waiting.get(response_id)
        if entry is None:
            future: asyncio.Future[ResponseSnapshot] = asyncio.get_running_loop().create_future()
            entry = _Waiting(response_id, future, due=self._clock() + self._initial)
            self._waiting[response_id] = entry
            self._push(entry)
        else:
            entry.waiters += 1
        try:
            return await asyncio.shield(entry.future)
        finally:
            entry.waiters -= 1
            if entry.waiters == 0 and not entry.future.done():
                # Nobody waits any more (the job was cancelled): stop polling it.
                entry.future.cancel()
                self._waiting.pop(response_id, None)

    def nudge(self, response_id: str) -> None:
        """Poll this response at once, ahead of the paced schedule (a webhook or the
        provider said it changed)."""
        entry = self._waiting.get(response_id)
        if entry is None:
            return
        if entry.due == float("inf"):
            entry.nudged = True  # a poll is in flight; it may predate the change
            return
        self._hurry(response_id)

    def _hurry(self, response_id: str) -> None:
        self._nudges += 1
        self._unlooked[self._nudges] = None
        self._urgent.append((self._nudges, response_id))
        self._wake.set()

    async def run(self) -> None:
        """Poll due responses until cancelled."""
        async with asyncio.TaskGroup() as group:
            while True:
                nudge, entry = self._next_urgent()
                if entry is None:
                    entry = await self._next_scheduled()
                if entry is None:
                    continue
                entry.due = float("inf")
                entry.nudged = False
                await self._poll_slots.acquire()
                group.create_task(self._poll(entry, nudge))

    def _next_urgent(self) -> tuple[int | None, _Waiting | None]:
        """The next nudged response to poll, with its nudge's number."""
        while self._urgent:
            nudge, response_id = self._urgent.popleft()
            entry = self._waiting.get(response_id)
            if entry is not None and entry.due != float("inf"):
                return nudge, entry
            self._looked_at(nudge)  # it ended, or a poll of it is out and will look again
        return None, None

    async def _next_scheduled(self) -> _Waiting | None:
        """The next due response once the budget allows, or None after a wake-up."""
        now = self._clock()
        wait = max(self._until_next_due(), self._next_launch - now)
        if wait > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            return None
        due = heapq.heappop(self._schedule)
        entry = self._waiting.get(due.response_id)
        if entry is None or entry.due != due.at:
            return None  # finished, or rescheduled since this slot was queued
        self._next_launch = max(now, self._next_launch) + self._poll_interval
        return entry

    def _until_next_due(self) -> float:
        if not self._schedule:
            return 3600.0
        return self._schedule[0].at - self._clock()

    def _push(self, entry: _Waiting) -> None:
        heapq.heappush(self._schedule, _Due(entry.due, entry.response_id))
        self._wake.set()

    @property
    def hurrying(self) -> int:
        """Nudged responses (a webhook said they ended) not looked at again yet."""
        return len(self._unlooked)

    async def until_looked_at(self) -> None:
        """Until every response nudged so far has been looked at again (those nudged
        meanwhile are not waited for, so a steady stream of webhooks cannot hold a waiter
        forever). The claim loop waits here: completions before new work."""
        last = self._nudges
        while self._unlooked and next(iter(self._unlooked)) <= last:
            self._looked.clear()
            await self._looked.wait()

    def _looked_at(self, nudge: int | None) -> None:
        if nudge is not None:
            del self._unlooked[nudge]
            self._looked.set()

    async def _poll(self, entry: _Waiting, nudge: int | None) -> None:
        try:
            await self._look(entry)
        finally:
            self._looked_at(nudge)

    async def _look(self, entry: _Waiting) -> None:
        try:
            snapshot = await self._provider.retrieve(entry.response_id)
        except Exception as error:
            if is_throttled_or_unavailable(error) and entry.response_id in self._waiting:
                self._poll_later(entry, error)
            else:  # the waiter decides what the failure means
                self._finish(entry, error=error)
            return
        finally:
            self._poll_slots.release()
            self.polls += 1
        entry.failures = 0
        if snapshot.is_terminal:
            self._finish(entry, snapshot=snapshot)
            return
        entry.polls += 1
        if entry.response_id not in self._waiting:
            return
        if entry.nudged:  # the change came while this poll was out: look again now
            entry.due = self._clock()
            self._hurry(entry.response_id)
            return
        entry.due = self._clock() + next_poll_delay(entry.polls, self._initial, self._max)
        self._push(entry)

    def _poll_later(self, entry: _Waiting, error: BaseException) -> None:
        """The provider could not answer this poll: ask again after a backoff."""
        entry.failures += 1
        hint = error.retry_after if isinstance(error, RateLimited) else None
        delay = provider_wait(entry.failures, hint, random.random(), self._max_retry_wait)
        self.poll_failures += 1
        log.warning(
            "polling a response failed; polling again later",
            extra={
                "response_id": entry.response_id,
                "error": str(error),
                "failures": entry.failures,
                "seconds": round(delay, 3),
            },
        )
        entry.due = self._clock() + delay
        self._push(entry)

    def _finish(
        self,
        entry: _Waiting,
        *,
        snapshot: ResponseSnapshot | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._waiting.pop(entry.response_id, None)
        if entry.future.done():
            return
        if error is not None:
            entry.future.set_exception(error)
        else:
            assert snapshot is not None
            entry.future.set_result(snapshot)
