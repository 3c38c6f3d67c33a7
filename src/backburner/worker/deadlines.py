"""The time limits of running handlers, kept by one timer for the whole worker.

`asyncio.timeout` around each handler schedules a timer handle on the event loop and
cancels it when the handler returns: at thousands of short jobs a second that was a tenth
of the worker's time (py-spy: `Timeout.reschedule`, and the loop rebuilding its heap of
cancelled handles). Here a deadline is a heap entry: arming is a push, disarming marks it
dead, and one loop timer waits for the earliest live one. Dead entries are dropped as they
reach the top, and the heap is rebuilt when they outnumber the live ones, so it stays
bounded by the jobs running.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Rebuild the heap once this many entries are dead and they outnumber the live ones.
COMPACT_AFTER = 256


class Deadline:
    """One armed time limit; `disarm` it when the work ends in time."""

    __slots__ = ("_owner", "expire", "expired", "live", "when")

    def __init__(self, owner: Deadlines, when: float, expire: Callable[[], None]) -> None:
        self._owner = owner
        self.when = when
        self.expire = expire
        self.live = True
        self.expired = False

    def disarm(self) -> None:
        if self.live:
            self.live = False
            self._owner._dropped()


class Deadlines:
    """Calls each armed deadline's `expire` once its time has passed, unless disarmed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._live = 0
        self._dead = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __len__(self) -> int:
        """Deadlines armed and not yet disarmed or expired."""
        return self._live

    def arm(self, seconds: float, expire: Callable[[], None]) -> Deadline:
        """Call `expire` (on the event loop) `seconds` from now unless disarmed first."""
        loop = asyncio.get_running_loop()
        deadline = Deadline(self, loop.time() + seconds, expire)
        heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
        self._live += 1
        if deadline.when < self._timer_at:
            self._schedule(loop)
        return deadline

    def _dropped(self) -> None:
        self._live -= 1
        self._dead += 1
        if self._dead >= COMPACT_AFTER and self._dead > self._live:
            self._heap = [entry for entry in self._heap if entry[2].live]
            heapq.heapify(self._heap)
            self._dead = 0

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Point the one timer at the earliest live deadline (none: no timer)."""
        heap = self._heap
        while heap and not heap[0][2].live:
            heapq.heappop(heap)
            self._dead -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = heap[0][0] if heap else float("inf")
        if heap:
            self._timer = loop.call_at(self._timer_at, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        due: list[Deadline] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, deadline = heapq.heappop(heap)
            if deadline.live:
                deadline.live = False
                deadline.expired = True
                self._live -= 1
                due.append(deadline)
            else:
                self._dead -= 1
        self._schedule(loop)
        for deadline in due:
            try:
                deadline.expire()
            except Exception:  # one failing callback must not keep the others from firing
                log.exception("a time limit's callback failed")
