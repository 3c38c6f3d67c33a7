"""A worker's execution slots, and who gets the next free one.

Two kinds of taker: the claim loop, which reserves free slots for the jobs it is about to
claim, and jobs coming back from a wait (their model call ended), which need a slot again
to finish. Coming back goes first: a freed slot is handed straight to the longest-waiting
returner, and the claim loop sees only what no returner wants. Otherwise, with a backlog,
every slot freed would go to a new job's submission while completions queue behind them,
and a job the provider finished long ago waits on work that has not started.

The owner may also keep some slots for returners before any comes back (`kept`, asked
each time): a burst of jobs coming back then finds them free instead of waiting for the
jobs a claim just brought.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Slots:
    def __init__(self, capacity: int, *, kept: Callable[[], int] = lambda: 0) -> None:
        self.capacity = capacity
        self._kept = kept
        self.used = 0
        self._returning: deque[asyncio.Future[None]] = deque()
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)

    @property
    def returning(self) -> int:
        """Jobs waiting for a slot to finish in."""
        return len(self._returning)

    @property
    def free_for_new(self) -> int:
        """Free slots a claim may take: none while a returner waits (it had them first),
        and never those kept for returners."""
        return 0 if self._returning else max(0, self.free - self._kept())

    def reserve(self, wanted: int) -> int:
        """Take up to `wanted` of the slots free for new jobs; how many were taken."""
        taken = min(wanted, self.free_for_new)
        self.used += taken
        return taken

    def give(self, count: int = 1) -> None:
        """Free `count` slots: each to the longest-waiting returner, else to the pool."""
        for _ in range(count):
            while self._returning:
                waiter = self._returning.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the slot changes hands; `used` stays
                    break
            else:
                self.used -= 1
                self._freed.set()

    async def take_when_free(self) -> None:
        """A slot for a job coming back from a wait: at once if one is free and no one is
        ahead, else the next one freed, in the order they came back."""
        if self.used < self.capacity and not self._returning:
            self.used += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._returning.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot in the same instant it was cancelled
            elif waiter in self._returning:  # (a give() may have dropped it already)
                self._returning.remove(waiter)
            if not self._returning and self.free:
                self._freed.set()
            raise

    async def wait_for_free(self) -> None:
        """Until a slot is free for new jobs (the claim loop's wait; one waiter). What is
        kept for returners is asked again each time a slot is freed."""
        while self.free_for_new == 0:
            self._freed.clear()
            await self._freed.wait()
