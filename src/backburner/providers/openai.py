"""The OpenAI provider: background responses through the official `openai` SDK.

The SDK's own retries are off (`max_retries=0`): the worker's retry policy is the one
layer that retries, so the two never multiply. Its errors become ours: 429 → RateLimited
(with the server's `retry-after`), timeouts, connection errors and 5xx →
ProviderUnavailable, other 4xx → ProviderRejected, an unknown response id → ResponseLost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import openai
from openai.types.responses import Response

from backburner.errors import (
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    ResponseLost,
)
from backburner.providers.base import (
    FunctionCall,
    FunctionCallOutput,
    ModelRequest,
    ResponseSnapshot,
    Usage,
)

T = TypeVar("T")


def request_kwargs(request: ModelRequest, *, background: bool = True) -> dict[str, Any]:
    """The `responses.create` arguments for one of our requests."""
    kwargs: dict[str, Any] = {
        "model": request.model,
        "input": request.input
        if isinstance(request.input, str)
        else [
            {"type": "function_call_output", "call_id": item.call_id, "output": item.output}
            if isinstance(item, FunctionCallOutput)
            else {"type": "message", "role": item.role, "content": item.content}
            for item in request.input
        ],
        "store": True,
        "background": background,
    }
    if background and request.completion_window is not None:
        kwargs["background_options"] = {"completion_window": request.completion_window}
    if request.service_tier is not None:
        kwargs["service_tier"] = request.service_tier
    if request.metadata:
        kwargs["metadata"] = request.metadata
    if request.instructions:
        kwargs["instructions"] = request.instructions
    if request.previous_response_id:
        kwargs["previous_response_id"] = request.previous_response_id
    if request.max_output_tokens:
        kwargs["max_output_tokens"] = request.max_output_tokens
    if request.tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": tool.strict,
            }
            for tool in request.tools
        ]
    if request.text_format is not None:
        fmt = request.text_format
        kwargs["text"] = {
            "format": {
                "type": "json_schema",
                "name": fmt.name,
                "schema": fmt.json_schema,
                "strict": fmt.strict,
            }
        }
    return kwargs


def snapshot_of(response: Response) -> ResponseSnapshot:
    """Our view of an SDK Response."""
    calls = [
        FunctionCall(call_id=item.call_id, name=item.name, arguments=item.arguments)
        for item in response.output
        if item.type == "function_call"
    ]
    usage = None
    if response.usage is not None:
        u = response.usage
        usage = Usage(
            input_tokens=u.input_tokens,
            cached_tokens=getattr(u.input_tokens_details, "cached_tokens", 0) or 0,
            output_tokens=u.output_tokens,
            reasoning_tokens=getattr(u.output_tokens_details, "reasoning_tokens", 0) or 0,
        )
    return ResponseSnapshot(
        id=response.id,
        status=response.status or "queued",
        output_text=response.output_text if response.output else "",
        function_calls=calls,
        usage=usage,
        error_code=response.error.code if response.error else None,
        error_message=response.error.message if response.error else None,
        incomplete_reason=response.incomplete_details.reason
        if response.incomplete_details
        else None,
    )


def retry_after_seconds(error: openai.APIStatusError) -> float | None:
    headers = error.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


def provider_error(error: openai.OpenAIError, *, retrieving: bool = False) -> ProviderError:
    """The domain error an SDK error means."""
    if isinstance(error, openai.RateLimitError):
        return RateLimited(
            f"OpenAI rate limit: {error.message}", retry_after=retry_after_seconds(error)
        )
    if isinstance(error, openai.APITimeoutError | openai.APIConnectionError):
        return ProviderUnavailable(f"OpenAI unreachable: {error}")
    if isinstance(error, openai.NotFoundError) and retrieving:
        return ResponseLost(f"OpenAI does not know the response: {error.message}")
    if isinstance(error, openai.APIStatusError):
        if error.status_code >= 500 or error.status_code in (408, 409):
            return ProviderUnavailable(f"OpenAI {error.status_code}: {error.message}")
        return ProviderRejected(f"OpenAI {error.status_code}: {error.message}")
    return ProviderUnavailable(f"OpenAI error: {error}")


class OpenAIProvider:
    name = "openai"

    def __init__(self, client: openai.AsyncOpenAI, *, max_in_flight: int = 16) -> None:
        self._client = client
        # Thousands of jobs may submit or poll at once; a bounded number of requests in
        # flight keeps the HTTP pool small (its cost per request grows with its size).
        self._in_flight = asyncio.Semaphore(max_in_flight)

    @classmethod
    def connect(
        cls,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_in_flight: int = 16,
    ) -> OpenAIProvider:
        client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )
        return cls(client, max_in_flight=max_in_flight)

    async def _call(self, call: Awaitable[T], *, retrieving: bool = False) -> T:
        async with self._in_flight:
            try:
                return await call
            except openai.OpenAIError as error:
                raise provider_error(error, retrieving=retrieving) from error

    async def submit(self, request: ModelRequest) -> ResponseSnapshot:
        response = await self._call(self._client.responses.create(**request_kwargs(request)))
        return snapshot_of(response)

    async def retrieve(self, response_id: str) -> ResponseSnapshot:
        response = await self._call(self._client.responses.retrieve(response_id), retrieving=True)
        return snapshot_of(response)

    async def cancel(self, response_id: str) -> ResponseSnapshot:
        response = await self._call(self._client.responses.cancel(response_id), retrieving=True)
        return snapshot_of(response)

    async def complete(self, request: ModelRequest) -> ResponseSnapshot:
        response = await self._call(
            self._client.responses.create(**request_kwargs(request, background=False))
        )
        return snapshot_of(response)

    async def aclose(self) -> None:
        await self._client.close()
