"""Stopping a running attempt: the first reason wins and the task is cancelled once, so a
cancel that arrives twice (its signal, then the periodic check) cannot interrupt the
attempt while it writes why it stopped."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from backburner.store import Job
from backburner.worker.attempt import Attempt, StopReason


async def test_a_second_stop_neither_cancels_again_nor_changes_the_reason() -> None:
    attempt = Attempt(cast(Job, object()))
    recorded: list[str] = []

    async def handler_then_record() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            attempt.stop(StopReason.CANCELED)  # the periodic check sees the same cancel
            await asyncio.sleep(0.01)  # writing the outcome: must not be interrupted
            recorded.append(cast(str, attempt.stop_reason))

    attempt.task = asyncio.create_task(handler_then_record())
    attempt.in_handler = True
    await asyncio.sleep(0)
    attempt.stop(StopReason.CANCELED)
    attempt.stop(StopReason.LEASE_LOST)
    await attempt.task
    assert recorded == ["canceled"]
    assert cast(Any, attempt.task).cancelling() == 0


async def test_a_stop_before_the_handler_runs_cancels_nothing() -> None:
    attempt = Attempt(cast(Job, object()))
    attempt.task = asyncio.create_task(asyncio.sleep(0.01))
    attempt.stop(StopReason.SHUTDOWN)
    await attempt.task  # not cancelled: the handler is not running yet
    assert attempt.stop_reason == StopReason.SHUTDOWN
