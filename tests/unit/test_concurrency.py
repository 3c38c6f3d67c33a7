"""gather_all: results in order, or the first failure by itself with the rest stopped."""

from __future__ import annotations

import asyncio

import pytest

from backburner import gather_all


async def test_results_come_in_order() -> None:
    async def twice(n: int) -> int:
        await asyncio.sleep(0.001 * (3 - n))
        return n * 2

    assert await gather_all(twice(n) for n in range(3)) == [0, 2, 4]


async def test_one_failure_stops_the_others_and_is_raised_by_itself() -> None:
    finished: list[int] = []

    async def slow(n: int) -> int:
        await asyncio.sleep(5)
        finished.append(n)
        return n

    async def broken() -> int:
        raise ValueError("call 0 broke")

    with pytest.raises(ValueError, match="call 0 broke"):
        await asyncio.wait_for(gather_all([broken(), slow(1), slow(2)]), timeout=2)
    assert finished == []  # not left running on, as asyncio.gather leaves them
