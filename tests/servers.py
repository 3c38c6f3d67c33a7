"""Real servers on loopback for tests: any ASGI app on an ephemeral port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from backburner.providers.embedded import GuestServer
from backburner.providers.emulator import EmulatorConfig, create_emulator_app
from backburner.providers.openai import OpenAIProvider


@contextlib.asynccontextmanager
async def serve_on_loopback(
    app: ASGIApp, *, lifespan: bool = True, port: int = 0
) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 (port 0: the OS picks) and give its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on" if lifespan else "off"
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


@contextlib.asynccontextmanager
async def emulated(**config: Any) -> AsyncIterator[tuple[OpenAIProvider, str]]:
    """An emulator on loopback and a provider (the real SDK) pointed at it."""
    app = create_emulator_app(EmulatorConfig(**{"latency_s": 0.1, "seed": 7, **config}))
    async with serve_on_loopback(app) as base:
        provider = OpenAIProvider.connect(api_key="sk-test", base_url=f"{base}/v1", timeout=10)
        try:
            yield provider, base
        finally:
            await provider.aclose()


async def emulator_stats(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        body: dict[str, Any] = (await client.get(f"{base}/_emulator/stats")).json()
        return body


async def set_faults(base: str, **knobs: Any) -> dict[str, Any]:
    """Change a running emulator's fault knobs (share_429=0.5, share_500=0, ...)."""
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{base}/_emulator/faults", json=knobs)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body
