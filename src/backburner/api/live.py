"""Live events (Server-Sent Events) for apps and the dashboard.

One `EventHub` per API process reads new rows of `job_events` (the timeline every state
change, progress report and model call already writes) a few times a second and hands each
to the streams that want it. Because the hub reads the database, events written by any
worker or API process reach every API process: nothing depends on which process the
client is connected to. A client that reconnects with `Last-Event-ID` first gets what it
missed from the database, then the live tail.

On PostgreSQL, ids are handed out before commit, so a row with a lower id can become
visible after a higher one was read; the hub re-reads a window behind its cursor and
remembers what it sent, so such a late row is still delivered (once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from backburner.store import Database, JobEvent
from backburner.store import events as events_store

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
LATE_WINDOW = 500  # ids behind the cursor read again, for rows committed out of order
SEEN_MEMORY = 20_000
KEEPALIVE_SECONDS = 15.0
QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class LiveEvent:
    id: int
    job_id: str
    owner: str
    data: dict[str, Any]

    def frame(self) -> str:
        return f"id: {self.id}\nevent: job\ndata: {json.dumps(self.data, default=str)}\n\n"


def live_event(
    event: JobEvent, owner: str, job_type: str, status: str, progress: float
) -> LiveEvent:
    return LiveEvent(
        id=event.id,
        job_id=event.job_id,
        owner=owner,
        data={
            "event_id": event.id,
            "job_id": event.job_id,
            "owner": owner,
            "type": job_type,
            "kind": event.kind,
            "status": event.to_status or status,
            "progress": (event.data or {}).get("progress", progress),
            "message": event.message,
            "attempt": event.attempt,
            "at": event.at.isoformat(),
            "data": event.data,
        },
    )


class _Subscriber:
    def __init__(self, wants: Callable[[LiveEvent], bool]) -> None:
        self.wants = wants
        self.queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(QUEUE_LIMIT)


class EventHub:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._subscribers: set[_Subscriber] = set()
        self._cursor: int | None = None
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        # No query here: the service starts (and answers 503) while the database is down.
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def ready(self) -> None:
        """Fix the hub's starting point before the first stream subscribes: from here on
        the hub reads every event, and a stream's backfill covers what came before."""
        async with self._starting:  # two first streams must not move the start twice
            if self._cursor is None:
                self._cursor = await events_store.latest_event_id(self.db)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for subscriber in self._subscribers:
            subscriber.queue.put_nowait(None)

    @contextlib.contextmanager
    def subscribe(self, wants: Callable[[LiveEvent], bool]) -> Any:
        subscriber = _Subscriber(wants)
        self._subscribers.add(subscriber)
        try:
            yield subscriber.queue
        finally:
            self._subscribers.discard(subscriber)

    async def _run(self) -> None:
        while True:
            try:
                if self._subscribers:
                    await self._read()
            except Exception as error:
                if not self.db.outages.absorbed(error, "live events"):
                    log.exception("reading live events failed; trying again")
            await asyncio.sleep(POLL_SECONDS)

    async def _read(self) -> None:
        if self._cursor is None:
            return
        while True:
            rows = await events_store.events_since(
                self.db, after_id=max(0, self._cursor - LATE_WINDOW), limit=2000
            )
            fresh = [row for row in rows if row[0].id not in self._seen]
            for event, owner, job_type, status, progress in fresh:
                self._remember(event.id)
                self._cursor = max(self._cursor, event.id)
                self._fan_out(live_event(event, owner, job_type, status, progress))
            if len(rows) < 2000:
                return

    def _remember(self, event_id: int) -> None:
        self._seen[event_id] = None
        while len(self._seen) > SEEN_MEMORY:
            self._seen.popitem(last=False)

    def _fan_out(self, event: LiveEvent) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.wants(event):
                try:
                    subscriber.queue.put_nowait(event)
                except asyncio.QueueFull:
                    # A client that stopped reading: end its stream; it resumes with
                    # Last-Event-ID and misses nothing.
                    self._subscribers.discard(subscriber)
                    with contextlib.suppress(asyncio.QueueFull):
                        subscriber.queue.get_nowait()
                    subscriber.queue.put_nowait(None)


async def stream(
    hub: EventHub,
    *,
    owner: str | None,
    job_id: str | None,
    last_event_id: int,
    is_disconnected: Callable[[], Any],
) -> AsyncIterator[str]:
    """The SSE frames for one client: what it missed since `last_event_id`, then live."""

    def wants(event: LiveEvent) -> bool:
        return (owner is None or event.owner == owner) and (
            job_id is None or event.job_id == job_id
        )

    await hub.ready()
    with hub.subscribe(wants) as queue:
        backfilled: set[int] = set()
        yield "retry: 2000\n\n"
        after = last_event_id
        while True:  # what was missed, from the database (the live queue buffers meanwhile)
            rows = await events_store.events_since(
                hub.db, after_id=after, owner=owner, job_id=job_id, limit=1000
            )
            for event, event_owner, job_type, status, progress in rows:
                backfilled.add(event.id)
                yield live_event(event, event_owner, job_type, status, progress).frame()
                after = event.id
            if len(rows) < 1000:
                break
        while True:
            try:
                live = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
            except TimeoutError:
                if await is_disconnected():
                    return
                yield ": keep-alive\n\n"
                continue
            if live is None:
                return
            # The hub sends each event once, but it re-reads a window behind its cursor
            # (late commits), which can reach before where this client asked to start.
            if live.id > last_event_id and live.id not in backfilled:
                yield live.frame()


def live_response(
    request: Request, *, owner: str | None, job_id: str | None, after: int
) -> StreamingResponse:
    frames = stream(
        request.app.state.event_hub,
        owner=owner,
        job_id=job_id,
        last_event_id=after,
        is_disconnected=request.is_disconnected,
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
