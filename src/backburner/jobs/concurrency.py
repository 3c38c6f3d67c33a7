"""Running a job's model calls side by side, so that one failure stops the rest.

`asyncio.gather` lets the other awaitables run on after one fails: in a job that means
siblings that keep placing (and paying for) model calls while the attempt has already
ended, and the next attempt places the same calls again. `gather_all` runs them in a task
group instead: when one fails, the rest are cancelled. A call already placed is not lost
by that: its response keeps running at the provider, its id persisted, and the next
attempt picks it up; a call not yet placed is never placed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from backburner.errors import leaf_errors

T = TypeVar("T")


async def gather_all(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Their results in order; the first failure (by itself, not in a group) if any."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failed:
        raise _first_failure(failed) from None
    return [task.result() for task in tasks]


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves = leaf_errors(group)
    return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])
