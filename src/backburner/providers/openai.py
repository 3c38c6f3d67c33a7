"""The OpenAI provider: background responses through the official `openai` SDK.

The SDK's own retries are off (`max_retries=0`): the worker's retry policy is the one
layer that retries, so the two never multiply. Its errors become ours: 429 → RateLimited
(with the server's `retry-after`), timeouts, connection errors and 5xx →
ProviderUnavailable, other 4xx → ProviderRejected, an unknown response id → ResponseLost.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import httpx
import openai

from backburner.errors import (
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    RequestTooLarge,
    ResponseLost,
)
from backburner.providers.base import (
    FunctionCall,
    FunctionCallOutput,
    ModelRequest,
    ResponseSnapshot,
    Usage,
)


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
        options: dict[str, str] = {"completion_window": request.completion_window}
        if request.continuation_id is not None:
            options["continuation_id"] = request.continuation_id
        kwargs["background_options"] = options
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


def snapshot_of(body: dict[str, Any]) -> ResponseSnapshot:
    """Our view of a Responses API object, read from its JSON. We read the raw body rather
    than the SDK's typed `Response`: building that model costs more CPU than the rest of a
    poll, and a worker with thousands of responses waiting polls a lot."""
    output = body.get("output") or []
    calls = [
        FunctionCall(call_id=item["call_id"], name=item["name"], arguments=item["arguments"])
        for item in output
        if item.get("type") == "function_call"
    ]
    # What the SDK's `response.output_text` joins: the text parts of message items.
    text = "".join(
        part.get("text", "")
        for item in output
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )
    usage = None
    if body.get("usage"):
        u = body["usage"]
        usage = Usage(
            input_tokens=u.get("input_tokens") or 0,
            cached_tokens=(u.get("input_tokens_details") or {}).get("cached_tokens") or 0,
            output_tokens=u.get("output_tokens") or 0,
            reasoning_tokens=(u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
        )
    error = body.get("error") or {}
    incomplete = body.get("incomplete_details") or {}
    return ResponseSnapshot(
        id=body["id"],
        status=body.get("status") or "queued",
        output_text=text,
        function_calls=calls,
        usage=usage,
        error_code=error.get("code"),
        error_message=error.get("message"),
        incomplete_reason=incomplete.get("reason"),
    )


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(value: str) -> float | None:
    """Seconds in an `x-ratelimit-reset-*` value, which reads like `1s`, `6m0s`, `12ms`
    or `1h2m3.5s`; None if it reads like nothing."""
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long a 429 asks us to wait: `retry-after-ms`, else `retry-after` (seconds),
    else the longer of `x-ratelimit-reset-requests` and `-tokens` (a real 429 may carry
    only those). None when the answer names no wait."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    resets = [
        parse_reset(value)
        for value in (
            headers.get("x-ratelimit-reset-requests"),
            headers.get("x-ratelimit-reset-tokens"),
        )
        if value is not None
    ]
    known = [seconds for seconds in resets if seconds is not None]
    return max(known) if known else None


def rate_limit_error(error: openai.RateLimitError) -> ProviderError:
    """A 429 is not one thing: `insufficient_quota` (no credit left) and a request larger
    than the whole limit never clear by waiting; `rate_limit_exceeded` does."""
    body = error.body if isinstance(error.body, dict) else {}
    code = body.get("code") or getattr(error, "code", None)
    message = error.message or ""
    if code == "insufficient_quota":
        return QuotaExhausted(f"OpenAI: the account is out of quota: {message}")
    if "request too large" in message.lower():
        return RequestTooLarge(f"OpenAI: the request is larger than the limit: {message}")
    return RateLimited(
        f"OpenAI rate limit: {message}", retry_after=retry_after_seconds(error.response.headers)
    )


def provider_error(error: openai.OpenAIError, *, retrieving: bool = False) -> ProviderError:
    """The domain error an SDK error means."""
    if isinstance(error, openai.RateLimitError):
        return rate_limit_error(error)
    if isinstance(error, openai.APITimeoutError | openai.APIConnectionError):
        return ProviderUnavailable(f"OpenAI unreachable: {error}")
    if isinstance(error, openai.NotFoundError) and retrieving:
        return ResponseLost(f"OpenAI does not know the response: {error.message}")
    if isinstance(error, openai.APIStatusError):
        if error.status_code >= 500 or error.status_code in (408, 409):
            return ProviderUnavailable(f"OpenAI {error.status_code}: {error.message}")
        return ProviderRejected(f"OpenAI {error.status_code}: {error.message}")
    return ProviderUnavailable(f"OpenAI error: {error}")


class _Answer(Protocol):
    """What a request answers, read as raw JSON: the SDK's `with_raw_response` answers
    and the client's own `post` (an httpx response) both have its bytes."""

    @property
    def content(self) -> bytes: ...


class OpenAIProvider:
    name = "openai"

    def __init__(self, client: openai.AsyncOpenAI, *, max_in_flight: int = 16) -> None:
        self._client = client
        self._raw = client.responses.with_raw_response
        # Thousands of jobs may submit or poll at once; a bounded number of requests in
        # flight keeps the HTTP pool small (its cost per request grows with its size).
        # Two budgets: requests that place work, and those that look at placed work
        # (retrieve, cancel, delete), so a completion a webhook announced is never
        # fetched behind a queue of new submissions.
        self._placing = asyncio.Semaphore(max_in_flight)
        self._looking = asyncio.Semaphore(max_in_flight)

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
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            # The SDK's aiohttp transport (the `openai[aiohttp]` extra): thousands of polls
            # and creates cost far less CPU than through its default httpx pool.
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )
        return cls(client, max_in_flight=max_in_flight)

    async def _call(
        self, call: Awaitable[_Answer], *, retrieving: bool = False
    ) -> ResponseSnapshot:
        async with self._looking if retrieving else self._placing:
            try:
                raw = await call
            except openai.OpenAIError as error:
                raise provider_error(error, retrieving=retrieving) from error
        try:
            return snapshot_of(json.loads(raw.content))
        except (ValueError, KeyError, TypeError) as error:
            raise ProviderUnavailable(f"OpenAI answered something unreadable: {error}") from error

    def _create(self, body: dict[str, Any]) -> Awaitable[httpx.Response]:
        """POST /responses with our body as it is. `responses.create` first walks every
        argument through the SDK's typed-dict transform (renames, dates, files: nothing
        our requests carry): half the CPU of a submission, 2.5-2.7 ms against 1.3 ms here
        (2,000 submits to the emulator, 16 at once). The client's own `post`, its
        documented way to send a body as is, keeps the SDK's auth, headers, errors and
        timeouts; a test holds `request_kwargs` to `create`'s parameters and transform."""
        return self._client.post(
            "/responses",
            cast_to=httpx.Response,
            body=body,
            options={"security": {"bearer_auth": True}},
        )

    async def submit(self, request: ModelRequest) -> ResponseSnapshot:
        return await self._call(self._create(request_kwargs(request)))

    async def retrieve(self, response_id: str) -> ResponseSnapshot:
        return await self._call(self._raw.retrieve(response_id), retrieving=True)

    async def cancel(self, response_id: str) -> ResponseSnapshot:
        return await self._call(self._raw.cancel(response_id), retrieving=True)

    async def complete(self, request: ModelRequest) -> ResponseSnapshot:
        return await self._call(self._create(request_kwargs(request, background=False)))

    async def delete(self, response_id: str) -> None:
        async with self._looking:
            try:
                await self._client.responses.delete(response_id)
            except openai.NotFoundError:
                return  # expired or deleted before: gone either way
            except openai.OpenAIError as error:
                raise provider_error(error) from error

    async def aclose(self) -> None:
        await self._client.close()
