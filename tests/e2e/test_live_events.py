"""Server-Sent Events over real HTTP (uvicorn on loopback): live changes of one's own jobs,
resume with Last-Event-ID, one job's stream, and events written by another process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from backburner.config import Settings
from backburner.runtime import create_app
from tests.conftest import Keys, auth, wait_for
from tests.servers import serve_on_loopback


@contextlib.asynccontextmanager
async def service(settings: Settings, *, embed_worker: bool = True) -> AsyncIterator[str]:
    app = create_app(settings, embed_worker=embed_worker, migrate_on_start=False)
    async with serve_on_loopback(app) as base:
        yield base


class Stream:
    """An SSE client: collects parsed frames in the background."""

    def __init__(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.client, self.url, self.headers = client, url, headers
        self.frames: list[dict[str, Any]] = []
        self.opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Stream:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.opened.wait(), timeout=10)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _read(self) -> None:
        async with self.client.stream("GET", self.url, headers=self.headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            self.opened.set()
            frame: dict[str, Any] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in frame:
                        self.frames.append(frame)
                    frame = {}
                elif line.startswith("id: "):
                    frame["id"] = int(line[4:])
                elif line.startswith("data: "):
                    frame["data"] = json.loads(line[6:])

    def of(self, job_id: str) -> list[str]:
        return [f["data"]["kind"] for f in self.frames if f["data"]["job_id"] == job_id]

    async def until(self, job_id: str, kind: str) -> None:
        await wait_for(lambda: kind in self.of(job_id), within=15)


async def create(client: httpx.AsyncClient, base: str, key: str, body: dict[str, Any]) -> str:
    response = await client.post(f"{base}/api/jobs", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def done(client: httpx.AsyncClient, base: str, key: str, job_id: str) -> None:
    async def ended() -> bool:
        body = (await client.get(f"{base}/api/jobs/{job_id}", headers=auth(key))).json()
        return bool(body["status"] in ("succeeded", "failed", "canceled"))

    await wait_for(ended, within=15)


async def test_my_jobs_live_then_resume_without_missing_anything(
    settings: Settings, keys: Keys
) -> None:
    async with service(settings) as base, httpx.AsyncClient(timeout=30) as client:
        async with (
            Stream(client, f"{base}/api/events", auth(keys.alice)) as live,
            Stream(client, f"{base}/api/events", auth(keys.bob)) as bobs,
        ):
            first = await create(client, base, keys.alice, {"type": "noop"})
            await live.until(first, "succeeded")
        assert live.of(first) == ["created", "started", "succeeded"]
        assert bobs.frames == []  # bob never sees alice's jobs
        ids = [f["id"] for f in live.frames]
        assert ids == sorted(ids)
        last = ids[-1]
        # Disconnected: a job runs and ends meanwhile.
        missed = await create(client, base, keys.alice, {"type": "noop"})
        await done(client, base, keys.alice, missed)
        resumed_headers = {**auth(keys.alice), "Last-Event-ID": str(last)}
        async with Stream(client, f"{base}/api/events", resumed_headers) as resumed:
            await resumed.until(missed, "succeeded")
            later = await create(client, base, keys.alice, {"type": "noop"})
            await resumed.until(later, "succeeded")
    assert resumed.of(missed) == ["created", "started", "succeeded"]
    assert resumed.of(first) == []  # nothing it already had
    assert resumed.of(later) == ["created", "started", "succeeded"]
    seen = [f["id"] for f in resumed.frames]
    assert len(seen) == len(set(seen))
    final = next(f["data"] for f in resumed.frames if f["data"]["kind"] == "succeeded")
    assert final["status"] == "succeeded"
    assert final["type"] == "noop"


async def test_one_jobs_stream_and_progress(settings: Settings, keys: Keys) -> None:
    async with service(settings) as base, httpx.AsyncClient(timeout=30) as client:
        job_id = await create(
            client,
            base,
            keys.alice,
            {
                "type": "test_stepper",
                "payload": {"marker": "/dev/null", "steps": 3, "step_seconds": 0.2},
            },
        )
        other = await create(client, base, keys.alice, {"type": "noop"})
        url = f"{base}/api/jobs/{job_id}/events?stream=1&after=0"
        async with Stream(client, url, auth(keys.alice)) as live:
            await live.until(job_id, "succeeded")
        missing = await client.get(
            f"{base}/api/jobs/{job_id}/events?stream=1", headers=auth(keys.bob)
        )
    assert live.of(other) == []
    kinds = live.of(job_id)
    assert kinds[:2] == ["created", "started"]
    assert kinds.count("progress") >= 2
    progress = [f["data"]["progress"] for f in live.frames if f["data"]["kind"] == "progress"]
    assert progress == sorted(progress)
    assert missing.status_code == 404


async def test_events_written_by_another_process_reach_the_stream(
    settings: Settings, keys: Keys
) -> None:
    # Two services on one database, as two processes would be: the stream is served by the
    # API-only one, the job is created and run by the other.
    async with (
        service(settings, embed_worker=False) as api_only,
        service(settings) as with_worker,
        httpx.AsyncClient(timeout=30) as client,
        Stream(client, f"{api_only}/api/events", auth(keys.alice)) as live,
    ):
        job_id = await create(client, with_worker, keys.alice, {"type": "noop"})
        await live.until(job_id, "succeeded")
    assert live.of(job_id) == ["created", "started", "succeeded"]


async def test_a_stream_starts_after_what_it_asked_for(settings: Settings, keys: Keys) -> None:
    """Events from before the stream's start are not replayed to it, even those the
    process's live feed reads again to catch late commits (a page's toasts showed jobs
    that had ended before it loaded)."""
    async with service(settings) as base, httpx.AsyncClient(timeout=30) as client:
        earlier = await create(client, base, keys.alice, {"type": "noop"})
        await done(client, base, keys.alice, earlier)
    # A new process: its live feed starts at the newest event and looks a window behind.
    async with (
        service(settings) as base,
        httpx.AsyncClient(timeout=30) as client,
        Stream(client, f"{base}/api/events", auth(keys.alice)) as live,
    ):
        later = await create(client, base, keys.alice, {"type": "noop"})
        await live.until(later, "succeeded")
    assert live.of(earlier) == []
    assert live.of(later) == ["created", "started", "succeeded"]
