"""The tracker waits on many responses with one polling loop (real offline provider)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from backburner.errors import ResponseLost
from backburner.providers import ModelRequest, OfflineProvider, ResponseSnapshot
from backburner.worker.tracker import ResponseTracker, next_poll_delay
from tests.conftest import wait_for


def test_poll_delay_grows_then_caps() -> None:
    delays = [next_poll_delay(n, 0.25, 5.0) for n in range(12)]
    assert delays[0] == 0.25
    assert delays == sorted(delays)
    assert delays[-1] == 5.0


@contextlib.asynccontextmanager
async def running(tracker: ResponseTracker):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(tracker.run())
    try:
        yield tracker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def waited_on(
    provider: OfflineProvider, tracker: ResponseTracker, count: int
) -> tuple[list[ResponseSnapshot], list[asyncio.Task[ResponseSnapshot]]]:
    """`count` responses submitted, and a task waiting on each through the tracker."""
    submitted = [
        await provider.submit(ModelRequest(model="m", input=f"Text {i}.")) for i in range(count)
    ]
    return submitted, [asyncio.create_task(tracker.wait(s.id)) for s in submitted]


async def test_many_waiters_complete_with_few_polls() -> None:
    provider = OfflineProvider(latency_s=0.3)
    tracker = ResponseTracker(provider, initial_delay=0.05, max_delay=0.2)
    async with running(tracker):
        submitted = [
            await provider.submit(ModelRequest(model="m", input=f"Text {i}.")) for i in range(200)
        ]
        results = await asyncio.wait_for(
            asyncio.gather(*(tracker.wait(s.id) for s in submitted)), timeout=5
        )
    assert {r.status for r in results} == {"completed"}
    # Backoff keeps polling to a handful per response, not a busy loop.
    assert tracker.polls <= 200 * 6
    assert tracker.outstanding == 0


async def test_unknown_response_raises_to_the_waiter() -> None:
    tracker = ResponseTracker(OfflineProvider(latency_s=0.1), initial_delay=0.01)
    async with running(tracker):
        with pytest.raises(ResponseLost):
            await asyncio.wait_for(tracker.wait("resp_missing"), timeout=2)


async def test_a_cancelled_waiter_stops_the_polling() -> None:
    provider = OfflineProvider(latency_s=30)
    tracker = ResponseTracker(provider, initial_delay=0.01, max_delay=0.02)
    async with running(tracker):
        submitted = await provider.submit(ModelRequest(model="m", input="Text."))
        waiter = asyncio.create_task(tracker.wait(submitted.id))
        await asyncio.sleep(0.1)
        waiter.cancel()
        await asyncio.sleep(0.05)
        polls = tracker.polls
        await asyncio.sleep(0.1)
    assert tracker.outstanding == 0
    assert tracker.polls == polls


async def test_nudge_polls_at_once() -> None:
    provider_time = [0.0]
    provider = OfflineProvider(latency_s=1.0, clock=lambda: provider_time[0])
    tracker = ResponseTracker(provider, initial_delay=30, max_delay=60)
    async with running(tracker):
        submitted = await provider.submit(ModelRequest(model="m", input="Text."))
        waiter = asyncio.create_task(tracker.wait(submitted.id))
        provider_time[0] = 5.0  # the response is done, but its first poll is 30 s away
        await asyncio.sleep(0.1)
        assert not waiter.done()
        tracker.nudge(submitted.id)
        result = await asyncio.wait_for(waiter, timeout=1)
    assert result.status == "completed"
    assert tracker.polls == 1


async def test_scheduled_polls_keep_to_the_budget_but_nudges_do_not_wait() -> None:
    provider = OfflineProvider(latency_s=30)
    tracker = ResponseTracker(provider, initial_delay=0.01, max_delay=0.05, polls_per_second=20)
    async with running(tracker):
        submitted, waiters = await waited_on(provider, tracker, 50)
        await asyncio.sleep(1.0)
        paced = tracker.polls
        # A webhook-like nudge for a response that is in fact finished now.
        await provider.cancel(submitted[0].id)
        tracker.nudge(submitted[0].id)
        cancelled = await asyncio.wait_for(waiters[0], timeout=0.5)
        for waiter in waiters[1:]:
            waiter.cancel()
    # 50 responses due every 50 ms would be ~1,000 polls in a second; the budget is 20/s.
    assert 15 <= paced <= 25
    assert cancelled.status == "cancelled"


async def test_a_nudged_response_is_hurrying_until_it_has_been_looked_at() -> None:
    provider_time = [0.0]
    provider = OfflineProvider(latency_s=1.0, clock=lambda: provider_time[0])
    tracker = ResponseTracker(provider, initial_delay=30, max_delay=60)
    async with running(tracker):
        submitted = await provider.submit(ModelRequest(model="m", input="Text."))
        waiter = asyncio.create_task(tracker.wait(submitted.id))
        await wait_for(lambda: tracker.outstanding == 1, within=1, interval=0)
        assert tracker.hurrying == 0
        tracker.nudge("resp_of_another_process")  # nothing here waits on it
        assert tracker.hurrying == 0
        provider_time[0] = 5.0
        tracker.nudge(submitted.id)
        assert tracker.hurrying == 1  # the claim loop waits on this (worker.loop)
        await asyncio.wait_for(tracker.until_looked_at(), timeout=1)
        assert tracker.hurrying == 0
        assert (await asyncio.wait_for(waiter, timeout=1)).status == "completed"


async def test_a_nudged_response_whose_poll_fails_is_not_hurrying_any_more() -> None:
    tracker = ResponseTracker(OfflineProvider(latency_s=1.0), initial_delay=30, max_delay=60)
    async with running(tracker):
        waiter = asyncio.create_task(tracker.wait("resp_missing"))
        await wait_for(lambda: tracker.outstanding == 1, within=1, interval=0)
        tracker.nudge("resp_missing")
        await asyncio.wait_for(tracker.until_looked_at(), timeout=1)
        with pytest.raises(ResponseLost):
            await asyncio.wait_for(waiter, timeout=1)
    assert tracker.hurrying == 0


async def test_waiting_for_what_was_nudged_is_not_held_by_nudges_that_come_later() -> None:
    # A steady stream of webhooks must not keep the claim loop waiting: it waits for the
    # responses nudged before it began, not for those nudged meanwhile.
    provider = OfflineProvider(latency_s=30)
    tracker = ResponseTracker(provider, initial_delay=30, max_delay=60, max_concurrent_polls=1)
    async with running(tracker):
        submitted, waiters = await waited_on(provider, tracker, 40)
        await wait_for(lambda: tracker.outstanding == 40, within=1, interval=0)
        for s in submitted[:3]:
            tracker.nudge(s.id)
        waiting = asyncio.create_task(tracker.until_looked_at())
        later = iter(submitted[3:])
        while not waiting.done():  # one more nudge each time the tracker looks at one
            polled = tracker.polls
            await wait_for(
                lambda polled=polled: tracker.polls > polled or waiting.done(), within=2, interval=0
            )
            tracker.nudge(next(later).id)
        assert tracker.hurrying >= 1  # later nudges are still waiting, and did not hold it
        for waiter in waiters:
            waiter.cancel()
