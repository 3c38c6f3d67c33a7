"""Group commit of attempt outcomes: many jobs' endings written in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from backburner.store import Database, Outcome
from backburner.store import queue as queue_store

log = logging.getLogger(__name__)


class OutcomeWriter:
    """Callers await `write(outcome)`; whoever is waiting when a flush starts rides along.
    A failed flush is retried (outcomes are never dropped because the database blinked)."""

    def __init__(
        self, db: Database, worker_id: str, clock: Callable[[], datetime], max_batch: int = 500
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._clock = clock
        self._max_batch = max_batch
        self._queue: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._ready = asyncio.Event()

    @property
    def unwritten(self) -> int:
        """Outcomes handed over and not yet written (the batch being written included)."""
        return len(self._queue)

    async def write(self, outcome: Outcome) -> bool:
        """True once written; False if the job was no longer ours (lease lost)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((outcome, future))
        self._ready.set()
        return await future

    async def run(self) -> None:
        retry_delay = 0.1
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                try:
                    applied = await queue_store.finish_jobs(
                        self._db,
                        worker_id=self._worker_id,
                        outcomes=[outcome for outcome, _ in batch],
                        now=self._clock(),
                    )
                except Exception as error:
                    if not self._db.outages.absorbed(error, "write outcomes"):
                        log.exception(
                            "writing job outcomes failed; retrying", extra={"jobs": len(batch)}
                        )
                    await asyncio.sleep(retry_delay)
                    retry_delay = min(5.0, retry_delay * 2)
                    continue
                retry_delay = 0.1
                del self._queue[: len(batch)]
                for outcome, future in batch:
                    if not future.done():
                        future.set_result(outcome.job_id in applied)
