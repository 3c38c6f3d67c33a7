"""The default without an OpenAI key: the emulator, started in this process on a loopback
port, reached through the same OpenAI provider (and SDK) as the real service.

So the offline default exercises the whole background lifecycle over HTTP: create with
`background=true`, persist the id, poll, cancel. The emulator only accepts a random key
made for this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator

import uvicorn

from backburner.providers.emulator import EmulatorConfig, create_emulator_app
from backburner.providers.openai import OpenAIProvider


class GuestServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host process (the worker's graceful
    shutdown, or `serve`'s own server); the host stops it through `aclose()`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedEmulatorProvider(OpenAIProvider):
    """An OpenAIProvider whose API is an emulator this provider runs and stops."""

    name = "emulator"

    def __init__(
        self, server: uvicorn.Server, task: asyncio.Task[None], base_url: str, api_key: str
    ) -> None:
        provider = OpenAIProvider.connect(api_key=api_key, base_url=base_url, timeout=30)
        super().__init__(provider._client)
        self._server = server
        self._task = task
        self.base_url = base_url

    @classmethod
    async def start(cls, *, latency_s: float) -> EmbeddedEmulatorProvider:
        api_key = "sk-embedded-" + secrets.token_urlsafe(24)
        app = create_emulator_app(EmulatorConfig(latency_s=latency_s, api_key=api_key))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            log_config=None,
            lifespan="on",
            access_log=False,
        )
        server = GuestServer(config)
        task = asyncio.create_task(server.serve(), name="embedded-emulator")
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the embedded emulator stopped while starting")
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        return cls(server, task, f"http://127.0.0.1:{port}/v1", api_key)

    async def aclose(self) -> None:
        await super().aclose()
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout=5)
