"""Real servers on loopback for tests: any ASGI app on an ephemeral port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from backburner.providers.embedded import GuestServer


@contextlib.asynccontextmanager
async def serve_on_loopback(app: ASGIApp, *, lifespan: bool = True) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 (port 0: the OS picks) and give its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on" if lifespan else "off"
    )
    server = GuestServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
