"""Receivers on loopback for notification tests: a webhook endpoint whose answers can be
scripted (status codes, delays, redirects), and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.e2e.processes import free_port
from tests.servers import serve_on_loopback


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next scripted status (then 200), after `delay` s."""

    script: list[int] = field(default_factory=list)
    delay: float = 0.0
    redirect_to: str | None = None
    received: list[Received] = field(default_factory=list)
    base: str = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.received.append(
                Received(request.url.path, dict(request.headers), await request.body())
            )
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.redirect_to is not None:
                return Response(status_code=302, headers={"location": self.redirect_to})
            code = self.script.pop(0) if self.script else 200
            return JSONResponse({"ok": code < 300}, status_code=code)

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])

    def bodies(self) -> list[bytes]:
        return [r.body for r in self.received]


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver, *, port: int = 0) -> AsyncIterator[Receiver]:
    async with serve_on_loopback(receiver.app(), lifespan=False, port=port) as base:
        receiver.base = base
        yield receiver


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[int, list[EmailMessage]]]:
    """A real SMTP server on loopback (aiosmtpd); yields its port and what it received."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox.messages
    finally:
        controller.stop()
