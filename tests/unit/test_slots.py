"""Slots: a job coming back from a wait gets the next freed slot before any new job, in the
order they came back; cancelled waits leak nothing."""

from __future__ import annotations

import asyncio

import pytest

from backburner.worker.slots import Slots
from tests.conftest import wait_for


async def until(condition: object) -> None:
    await wait_for(condition, within=5, interval=0)


async def full_with_returners(capacity: int, count: int) -> tuple[Slots, list[asyncio.Task[None]]]:
    """Every slot in use, and `count` jobs waiting to come back, in that order."""
    slots = Slots(capacity)
    slots.reserve(capacity)
    waiting = [asyncio.create_task(slots.take_when_free()) for _ in range(count)]
    await until(lambda: slots.returning == count)
    return slots, waiting


async def test_new_jobs_reserve_only_free_slots() -> None:
    slots = Slots(3)
    assert slots.reserve(5) == 3
    assert slots.reserve(1) == 0
    slots.give(2)
    assert slots.free == 2
    assert slots.reserve(10) == 2


async def test_slots_kept_for_returners_are_never_reserved_but_a_returner_takes_one() -> None:
    kept = [2]
    slots = Slots(8, kept=lambda: kept[0])
    assert slots.reserve(100) == 6
    assert slots.reserve(1) == 0
    await asyncio.wait_for(slots.take_when_free(), timeout=1)  # a kept slot, at once
    assert slots.used == 7
    kept[0] = 0  # nothing waits on the provider any more: all may go to new jobs
    assert slots.reserve(100) == 1


async def test_the_claim_loop_asks_again_what_is_kept_each_time_a_slot_is_freed() -> None:
    kept = [2]
    slots = Slots(4, kept=lambda: kept[0])
    assert slots.reserve(4) == 2
    await slots.take_when_free()  # a job comes back into a kept slot
    claim_loop = asyncio.create_task(slots.wait_for_free())
    await asyncio.sleep(0)
    assert not claim_loop.done()  # one free, but it is kept
    kept[0] = 0  # the job that came back was the last one waiting on the provider...
    slots.give()  # ...and it ends: the claim loop may take what is free
    await asyncio.wait_for(claim_loop, timeout=1)
    assert slots.reserve(4) == 2


async def test_a_returning_job_takes_a_free_slot_at_once() -> None:
    slots = Slots(2)
    slots.reserve(1)
    await asyncio.wait_for(slots.take_when_free(), timeout=1)
    assert slots.used == 2


async def test_freed_slots_go_to_returning_jobs_first_in_the_order_they_came() -> None:
    slots = Slots(2)
    assert slots.reserve(2) == 2
    served: list[int] = []

    async def come_back(n: int) -> None:
        await slots.take_when_free()
        served.append(n)

    waiting = [asyncio.create_task(come_back(n)) for n in range(3)]
    await until(lambda: slots.returning == 3)
    assert slots.reserve(1) == 0  # a new job waits while anyone comes back

    slots.give()
    await until(lambda: served == [0])
    assert slots.used == 2  # the slot changed hands; none went free
    slots.give(2)
    await until(lambda: served == [0, 1, 2])
    await asyncio.gather(*waiting)
    assert slots.used == 2
    assert slots.returning == 0


async def test_the_claim_loop_is_woken_only_for_what_no_returning_job_wants() -> None:
    slots, (back,) = await full_with_returners(1, 1)
    claim_loop = asyncio.create_task(slots.wait_for_free())

    slots.give()  # to the returning job
    await back
    await asyncio.sleep(0)
    assert not claim_loop.done()
    slots.give()  # now nobody comes back: a new job may have it
    await asyncio.wait_for(claim_loop, timeout=1)
    assert slots.reserve(1) == 1


async def test_a_cancelled_wait_leaves_the_queue_and_leaks_no_slot() -> None:
    slots, (gone, stays) = await full_with_returners(1, 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert slots.returning == 1
    slots.give()
    await asyncio.wait_for(stays, timeout=1)
    slots.give()
    assert slots.used == 0
    assert slots.free == 1


async def test_a_wait_cancelled_then_passed_over_by_a_give_ends_cleanly() -> None:
    slots, (gone, stays) = await full_with_returners(1, 2)
    gone.cancel()  # its wait is cancelled at once; the task itself has not run yet...
    slots.give()  # ...when the slot is freed: it passes over `gone`, to `stays`
    with pytest.raises(asyncio.CancelledError):
        await gone
    await asyncio.wait_for(stays, timeout=1)
    assert slots.used == 1
    assert slots.returning == 0


async def test_a_slot_handed_over_as_the_wait_is_cancelled_is_given_on() -> None:
    slots, (first, second) = await full_with_returners(1, 2)
    slots.give()  # handed to `first`, which has not run yet...
    first.cancel()  # ...and is cancelled in the same instant
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=1)  # the slot went on, not lost
    assert slots.used == 1
    assert slots.returning == 0


async def test_ten_thousand_returning_jobs_holding_their_slot_a_while_are_all_served() -> None:
    # Every give() used to wake every waiter (each re-checked and slept again): with each
    # job holding its slot across a few awaits, 3,000 coming back at once took 1.2 s of the
    # event loop, 1,000 0.13 s -- quadratic, exactly when thousands of completions arrive
    # together. Now each waiter is woken once, when its slot is handed to it.
    slots = Slots(10)
    slots.reserve(10)
    served: list[int] = []

    async def come_back(n: int) -> None:
        await slots.take_when_free()
        served.append(n)
        for _ in range(3):  # finishing: a few awaits holding the slot
            await asyncio.sleep(0)
        slots.give()

    waiting = [asyncio.create_task(come_back(n)) for n in range(10_000)]
    await until(lambda: slots.returning == 10_000)
    slots.give(10)
    await asyncio.wait_for(asyncio.gather(*waiting), timeout=60)
    assert served == list(range(10_000))
    assert slots.used == 0
    assert slots.returning == 0
