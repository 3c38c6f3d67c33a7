"""Group commit of attempt outcomes: many jobs' endings written in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from backburner.store import Database, Outcome
from backburner.store import queue as queue_store

log = logging.getLogger(__name__)


# Batches written at once (PostgreSQL): while one is at the database the next fills up, and
# goes as soon as it is there instead of after it. Each statement locks its own jobs' rows
# in id order, as the heartbeat does, so two never wait on each other. Measured with
# bench/queue.py: one at a time, the writer's statement was at the database 90% of the
# time and the claims waited for slots held by outcomes not yet written; two, +4-6% no-op
# jobs a second.
POSTGRES_LANES = 2


class OutcomeWriter:
    """Callers await `write(outcome)`; whoever is waiting when a flush starts rides along.
    A failed flush is retried (outcomes are never dropped because the database blinked)."""

    def __init__(
        self,
        db: Database,
        worker_id: str,
        clock: Callable[[], datetime],
        max_batch: int = 500,
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._clock = clock
        self._max_batch = max_batch
        self._lanes = POSTGRES_LANES if db.dialect == "postgresql" else 1
        self._queue: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._writing = 0  # outcomes in batches at the database
        self._ready = asyncio.Event()

    @property
    def lanes(self) -> int:
        """How many batches may be at the database at once."""
        return self._lanes

    @property
    def unwritten(self) -> int:
        """Outcomes handed over and not yet written (those being written included)."""
        return len(self._queue) + self._writing

    async def write(self, outcome: Outcome) -> bool:
        """True once written; False if the job was no longer ours (lease lost)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((outcome, future))
        self._ready.set()
        return await future

    async def run(self) -> None:
        async with asyncio.TaskGroup() as lanes:
            for number in range(self._lanes):
                lanes.create_task(self._lane(), name=f"outcome-writer-{number}")

    async def _lane(self) -> None:
        retry_delay = 0.1
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
            self._writing += len(batch)
            try:
                applied = await queue_store.finish_jobs(
                    self._db,
                    worker_id=self._worker_id,
                    outcomes=[outcome for outcome, _ in batch],
                    now=self._clock(),
                )
            except BaseException as error:
                # Back at the head of the queue, for whichever lane is free first.
                self._queue[:0] = batch
                if not isinstance(error, Exception):  # cancelled: the worker is stopping
                    raise
                if not self._db.outages.absorbed(error, "write outcomes"):
                    log.exception(
                        "writing job outcomes failed; retrying", extra={"jobs": len(batch)}
                    )
                await asyncio.sleep(retry_delay)
                retry_delay = min(5.0, retry_delay * 2)
                continue
            finally:
                self._writing -= len(batch)
            retry_delay = 0.1
            for outcome, future in batch:
                if not future.done():
                    future.set_result(outcome.job_id in applied)
