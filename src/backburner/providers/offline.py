"""The offline provider: the background-mode lifecycle of the Responses API, in process,
answered by the deterministic offline engine.

A response is `queued`, then `in_progress`, then `completed` once its latency has passed, so
the worker's submit → persist id → wait → fetch path is exercised exactly as with OpenAI.
Its memory is its process's: after a restart it no longer knows earlier response ids and
says so (ResponseLost), which the worker treats as "submit again".
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from backburner.errors import ResponseLost
from backburner.providers.base import ModelRequest, ResponseSnapshot, ResponseStatus
from backburner.providers.offline_engine import EngineAnswer, answer

# Past this many characters the engine's work moves off the event loop.
_THREAD_THRESHOLD_CHARS = 50_000
# How long a finished response is kept for late retrieves (like OpenAI's stored responses).
_RETENTION_SECONDS = 3600.0


@dataclass
class _Stored:
    created: float
    ready_at: float
    answer: EngineAnswer
    cancelled: bool = False


class OfflineProvider:
    name = "offline"

    def __init__(
        self, *, latency_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._latency_s = latency_s
        self._clock = clock
        self._responses: dict[str, _Stored] = {}
        self.submitted = 0
        self.cancelled = 0

    async def submit(self, request: ModelRequest) -> ResponseSnapshot:
        result = await self._answer(request)
        now = self._clock()
        self._forget_old(now)
        response_id = "resp_" + secrets.token_hex(16)
        self._responses[response_id] = _Stored(now, now + self._latency_s, result)
        self.submitted += 1
        return self._snapshot(response_id, self._responses[response_id], now)

    async def retrieve(self, response_id: str) -> ResponseSnapshot:
        stored = self._responses.get(response_id)
        if stored is None:
            raise ResponseLost(f"the offline engine does not know response {response_id}")
        return self._snapshot(response_id, stored, self._clock())

    async def delete(self, response_id: str) -> None:
        self._responses.pop(response_id, None)

    async def cancel(self, response_id: str) -> ResponseSnapshot:
        stored = self._responses.get(response_id)
        if stored is None:
            raise ResponseLost(f"the offline engine does not know response {response_id}")
        now = self._clock()
        if not self._snapshot(response_id, stored, now).is_terminal:
            stored.cancelled = True
            self.cancelled += 1
        return self._snapshot(response_id, stored, now)

    async def complete(self, request: ModelRequest) -> ResponseSnapshot:
        result = await self._answer(request)
        stored = _Stored(0.0, 0.0, result)
        return self._snapshot("resp_" + secrets.token_hex(16), stored, 0.0)

    async def aclose(self) -> None:
        self._responses.clear()

    async def _answer(self, request: ModelRequest) -> EngineAnswer:
        size = sum(len(getattr(i, "content", "")) for i in request.input_items())
        if size > _THREAD_THRESHOLD_CHARS:
            return await asyncio.to_thread(answer, request)
        return answer(request)

    def _snapshot(self, response_id: str, stored: _Stored, now: float) -> ResponseSnapshot:
        status = self._status(stored, now)
        done = status in ("completed", "incomplete")
        return ResponseSnapshot(
            id=response_id,
            status=status,
            output_text=stored.answer.output_text if done else "",
            function_calls=stored.answer.function_calls if done else [],
            usage=stored.answer.usage if done else None,
            incomplete_reason=stored.answer.incomplete_reason if status == "incomplete" else None,
        )

    def _status(self, stored: _Stored, now: float) -> ResponseStatus:
        if stored.cancelled:
            return "cancelled"
        if now < stored.ready_at:
            # A short queued phase first, as with the real service.
            return (
                "queued"
                if now < stored.created + min(0.05, self._latency_s / 4)
                else ("in_progress")
            )
        return "incomplete" if stored.answer.incomplete_reason else "completed"

    def _forget_old(self, now: float) -> None:
        if len(self._responses) < 10_000:
            return
        stale = [rid for rid, s in self._responses.items() if s.ready_at + _RETENTION_SECONDS < now]
        for rid in stale:
            del self._responses[rid]
