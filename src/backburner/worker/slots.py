"""A counter of execution slots that the claim loop can read and wait on."""

from __future__ import annotations

import asyncio


class Slots:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Event()

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)

    def take(self) -> None:
        self.used += 1

    def give(self) -> None:
        self.used -= 1
        self._changed.set()

    async def take_when_free(self) -> None:
        while self.used >= self.capacity:
            self._changed.clear()
            await self._changed.wait()
        self.used += 1

    async def wait_for_free(self) -> None:
        while self.free == 0:
            self._changed.clear()
            await self._changed.wait()
