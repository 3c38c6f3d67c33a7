"""An emulator of OpenAI's Responses API in background mode, answered by the offline engine.

`POST /v1/responses` (with or without `background`, with or without `stream`),
`GET /v1/responses/{id}` (and its `stream=true&starting_after=N` resume),
`POST /v1/responses/{id}/cancel`, `DELETE /v1/responses/{id}` and
`GET /v1/responses/{id}/input_items`, with OpenAI's shapes, status codes, error bodies and
headers (`x-request-id`, `x-ratelimit-*`), so the real `openai` SDK talks to it unchanged
and validates every answer strictly. Fault knobs make it misbehave on purpose (429s with
and without `retry-after`, `insufficient_quota`, 500s, responses that fail with a
transient or a permanent code, incomplete responses, responses that stay queued, lost
webhooks), settable at start and changed while it runs (`POST /_emulator/faults`), and
`GET /_emulator/stats` counts what happened so tests can prove, for example, that nothing
was created twice. docs/emulator.md lists what it does and does not emulate.

Run it with `backburner emulator --port 8089`; point the SDK at it with
`OPENAI_BASE_URL=http://127.0.0.1:8089/v1` and any `OPENAI_API_KEY`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import random
import secrets
import statistics
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backburner.providers.base import (
    FunctionCallOutput,
    FunctionTool,
    InputMessage,
    JsonSchemaFormat,
    ModelRequest,
)
from backburner.providers.offline_engine import EngineAnswer, answer

TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})
COMPLETION_WINDOWS = ("soonest", "2h", "8h")
STANDARD_TIERS = (None, "auto", "default")
# The limits reported (and kept) when none is configured: a generous project's.
NOMINAL_RPM = 30_000
NOMINAL_TPM = 150_000_000
# OpenAI's metadata rules: at most 16 keys, keys up to 64 characters, values up to 512.
METADATA_KEYS = 16
METADATA_KEY_CHARS = 64
METADATA_VALUE_CHARS = 512
FAULT_FIELDS = (
    "share_429",
    "retry_after_s",
    "retry_after_header",
    "share_insufficient_quota",
    "share_500",
    "share_failed",
    "share_failed_permanent",
    "share_incomplete",
    "share_stuck",
    "share_webhook_lost",
    "latency_s",
    "latency_jitter_s",
)
FAILURES = {
    "failed": ("server_error", "The server had an error while processing your request."),
    "failed_permanent": ("invalid_prompt", "Invalid prompt: the emulator refused it on purpose."),
}


def duration_text(seconds: float) -> str:
    """A duration as OpenAI writes it in `x-ratelimit-reset-*`: `12ms`, `1s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds * 1000) / 1000
    minutes, rest = divmod(whole, 60)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


class EmulatorConfig(BaseModel):
    """How the emulator behaves; every share is a probability per request."""

    latency_s: float = Field(default=2.0, ge=0)
    latency_jitter_s: float = Field(default=0.0, ge=0)
    # 429 rate_limit_exceeded on any request, with `retry-after` (or, when
    # `retry_after_header` is off, only the `x-ratelimit-reset-*` headers, as a real 429
    # may come).
    share_429: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: float = Field(default=1.0, ge=0)
    retry_after_header: bool = True
    # 429 insufficient_quota on create: the account is out of credit (never clears).
    share_insufficient_quota: float = Field(default=0.0, ge=0, le=1)
    share_500: float = Field(default=0.0, ge=0, le=1)
    # Responses that end `failed`: with the transient `server_error`, or the permanent
    # `invalid_prompt`.
    share_failed: float = Field(default=0.0, ge=0, le=1)
    share_failed_permanent: float = Field(default=0.0, ge=0, le=1)
    share_incomplete: float = Field(default=0.0, ge=0, le=1)
    share_stuck: float = Field(default=0.0, ge=0, le=1)
    # A limit of its own, like an OpenAI project's: requests and tokens per minute
    # (replenished continuously) on `create`, answered with 429 + `retry-after` and the
    # `x-ratelimit-*` headers. Unset, a generous limit is reported (and kept), as every
    # OpenAI project has one.
    rpm_limit: int | None = Field(default=None, ge=1)
    tpm_limit: int | None = Field(default=None, ge=1)
    seed: int | None = None
    # When set, only this key is accepted (the embedded emulator is for its own process).
    api_key: str | None = None
    # Signed `response.*` webhooks (Standard Webhooks) to this URL when responses end.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    share_webhook_lost: float = Field(default=0.0, ge=0, le=1)
    webhook_attempts: int = Field(default=4, ge=1)


@dataclass
class _Stored:
    body: dict[str, Any]
    created: float
    ready_at: float
    answer: EngineAnswer
    background: bool
    fate: str = "completed"  # completed | failed | failed_permanent | incomplete | stuck
    cancelled: bool = False
    cancelled_at: float | None = None
    # Its one `response.*` webhook has been sent (or dropped): never a second.
    announced: bool = False


@dataclass
class EmulatorState:
    config: EmulatorConfig
    clock: Callable[[], float] = time.time
    responses: dict[str, _Stored] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.deliveries: set[asyncio.Task[None]] = set()
        # Why webhook attempts failed ("HTTP 500", "TimeoutError", ...), for diagnosis.
        self.attempt_failures: Counter[str] = Counter()
        # Milliseconds from each response ending to its webhook being accepted (the last
        # 100,000): how much of a completion's lag is the delivery, for benchmarks.
        self.delivery_ms: deque[float] = deque(maxlen=100_000)
        # Creates per background_options.continuation_id (related requests grouped).
        self.continuations: Counter[str] = Counter()
        self._client: aiohttp.ClientSession | None = None
        # Bursts of completions queue here, not inside the HTTP pool, whose bookkeeping
        # per request grows with the number of requests waiting in it.
        self._sending = asyncio.Semaphore(32)
        # What is left of the per-minute limits (they start full).
        self.requests_left = float(self.rpm)
        self.tokens_left = float(self.tpm)
        self.rate_updated = self.clock()

    @property
    def rpm(self) -> int:
        return self.config.rpm_limit or NOMINAL_RPM

    @property
    def tpm(self) -> int:
        return self.config.tpm_limit or NOMINAL_TPM

    def _replenish(self) -> None:
        now = self.clock()
        elapsed = max(0.0, now - self.rate_updated)
        self.rate_updated = now
        self.requests_left = min(float(self.rpm), self.requests_left + elapsed * self.rpm / 60)
        self.tokens_left = min(float(self.tpm), self.tokens_left + elapsed * self.tpm / 60)

    def rate_check(self, tokens: int) -> tuple[float | None, dict[str, str]]:
        """Whether a create of `tokens` fits the limits now: (None, headers) if it does and
        is counted, else (seconds until it would fit, headers). Like OpenAI's, the limits
        replenish continuously (a per-minute limit of N refills N/60 every second), so a
        full minute's worth can go at once and then a steady trickle."""
        self._replenish()
        wait = 0.0
        if self.requests_left < 1:
            wait = (1 - self.requests_left) * 60 / self.rpm
        needed = min(float(tokens), float(self.tpm))
        if self.tokens_left < needed:
            wait = max(wait, (needed - self.tokens_left) * 60 / self.tpm)
        if wait <= 0:
            self.requests_left -= 1
            self.tokens_left -= tokens
            return None, self.limit_headers()
        return wait, self.limit_headers(request_wait=wait)

    def limit_headers(self, *, request_wait: float | None = None) -> dict[str, str]:
        """The `x-ratelimit-*` headers OpenAI puts on its answers: limits, what remains,
        and when each resets (to full; after a 429, when the refused request would fit)."""
        self._replenish()
        requests_reset = (self.rpm - self.requests_left) * 60 / self.rpm
        tokens_reset = (self.tpm - self.tokens_left) * 60 / self.tpm
        if request_wait is not None:
            requests_reset = tokens_reset = request_wait
        return {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-requests": str(max(0, int(self.requests_left))),
            "x-ratelimit-reset-requests": duration_text(requests_reset),
            "x-ratelimit-limit-tokens": str(self.tpm),
            "x-ratelimit-remaining-tokens": str(max(0, int(self.tokens_left))),
            "x-ratelimit-reset-tokens": duration_text(tokens_reset),
        }

    def webhook_client(self) -> aiohttp.ClientSession:
        # One session for every delivery (building one per request costs an SSL context),
        # on aiohttp: with bursts of completions its pool costs far less per request.
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._client

    async def aclose(self) -> None:
        for task in list(self.deliveries):
            task.cancel()
        if self._client is not None:
            await self._client.close()

    def schedule_webhook(self, response_id: str, delay: float) -> None:
        """Send the response's terminal event after `delay` seconds, if webhooks are on
        (one event per response: whichever of its timers fires first sends it)."""
        if self.config.webhook_url is None or self.config.webhook_secret is None:
            return
        loop = asyncio.get_running_loop()

        def launch() -> None:
            task = loop.create_task(self._deliver(response_id))
            self.deliveries.add(task)
            task.add_done_callback(self.deliveries.discard)

        loop.call_later(max(0.0, delay), launch)

    async def _deliver(self, response_id: str) -> None:
        stored = self.responses[response_id]
        # The timer runs on the loop's monotonic clock, readiness on the wall clock: if the
        # timer fired a hair early, wait out the rest rather than drop the event.
        # asyncio's timers may also wake a hair before the wall clock says so: keep waiting
        # until it does (returning here instead lost the event).
        for _ in range(10):
            early = stored.ready_at - self.clock()
            if early <= 0 or stored.cancelled:
                break
            await asyncio.sleep(early + 0.001)
        status = _status(stored, self.clock())
        if status not in TERMINAL:
            return
        if stored.announced:  # the other timer of a cancelled response: one event only
            self.stats["webhooks_suppressed"] += 1
            return
        stored.announced = True
        if self.rng.random() < self.config.share_webhook_lost:
            self.stats["webhooks_lost"] += 1
            return
        assert self.config.webhook_url is not None
        assert self.config.webhook_secret is not None
        event_id = "evt_" + secrets.token_hex(16)
        # One delivery id for every retry of this event, distinct from the event's id.
        webhook_id = "wh_" + secrets.token_hex(16)
        body = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": f"response.{status}",
                "created_at": int(self.clock()),
                "data": {"id": response_id},
            }
        )
        delay = 0.5
        client = self.webhook_client()
        for attempt in range(1, self.config.webhook_attempts + 1):
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_webhook(
                    self.config.webhook_secret, webhook_id, timestamp, body
                ),
                "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
            }
            try:
                async with (
                    self._sending,
                    client.post(
                        self.config.webhook_url,
                        data=body,
                        headers=headers,
                        allow_redirects=False,
                    ) as response,
                ):
                    delivered = 200 <= response.status < 300
                if delivered:
                    self.stats["webhooks_sent"] += 1
                    self.delivery_ms.append((self.clock() - stored.ready_at) * 1000)
                    return
                self.attempt_failures[f"HTTP {response.status}"] += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                self.attempt_failures[type(error).__name__] += 1
            self.stats["webhook_retries"] += 1
            if attempt < self.config.webhook_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        self.stats["webhooks_failed"] += 1


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """A Standard Webhooks `webhook-signature` value (what OpenAI sends)."""
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _error(
    status: int,
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _refuse_options(body: dict[str, Any]) -> JSONResponse | None:
    """The 400 the API gives for background options it does not accept, if any."""
    options = body.get("background_options")
    if options is None:
        return None
    window = options.get("completion_window", "soonest") if isinstance(options, dict) else None
    if window not in COMPLETION_WINDOWS:
        return _error(
            400,
            f"Invalid value for 'background_options.completion_window': {window!r}.",
            "invalid_request_error",
            param="background_options.completion_window",
            code="invalid_value",
        )
    discounted = window != "soonest"
    if discounted and (
        not body.get("background")
        or body.get("stream")
        or body.get("service_tier") not in STANDARD_TIERS
    ):
        return _error(
            400,
            f"The '{window}' completion window requires background=true, standard "
            "processing and no streaming.",
            "invalid_request_error",
            param="background_options.completion_window",
        )
    return None


def _refuse_metadata(body: dict[str, Any]) -> JSONResponse | None:
    """The 400 OpenAI gives for metadata past its limits, if any."""
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return _error(
            400,
            "Invalid type for 'metadata': expected an object, but got a "
            f"{type(metadata).__name__} instead.",
            "invalid_request_error",
            param="metadata",
            code="invalid_type",
        )
    if len(metadata) > METADATA_KEYS:
        return _error(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_KEYS} properties, but got an object with {len(metadata)} properties "
            "instead.",
            "invalid_request_error",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS:
            return _error(
                400,
                f"Invalid 'metadata': key too long. Expected a key with maximum length "
                f"{METADATA_KEY_CHARS}, but got a key with length {len(key)} instead.",
                "invalid_request_error",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            return _error(
                400,
                f"Invalid type for 'metadata.{key}': expected a string, but got "
                f"{type(value).__name__} instead.",
                "invalid_request_error",
                param=f"metadata.{key}",
                code="invalid_type",
            )
        if len(value) > METADATA_VALUE_CHARS:
            return _error(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {METADATA_VALUE_CHARS}, but got a string with length {len(value)} "
                "instead.",
                "invalid_request_error",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return None


def _estimated_tokens(body: dict[str, Any]) -> int:
    """Tokens a create counts against the limit: its text (about 4 characters a token)
    plus the output it may produce, as OpenAI's own limiter counts `max_output_tokens`."""
    text = _text_of(body.get("input")) + (body.get("instructions") or "")
    return len(text) // 4 + 1 + int(body.get("max_output_tokens") or 0)


def _request_from_body(body: dict[str, Any], state: EmulatorState) -> ModelRequest:
    """Our ModelRequest from an OpenAI request body (raises ValueError on what we refuse)."""
    raw_input = body.get("input")
    if raw_input is None:
        raise ValueError("input")
    items: list[InputMessage | FunctionCallOutput] = []
    previous = body.get("previous_response_id")
    if previous is not None:
        earlier = state.responses.get(previous)
        if earlier is None:
            raise LookupError(previous)
        # The model sees the conversation so far, as the real API keeps it.
        items.append(InputMessage(content=_text_of(earlier.body.get("input"))))
    if isinstance(raw_input, str):
        items.append(InputMessage(content=raw_input))
    else:
        for item in raw_input:
            if item.get("type") == "function_call_output":
                items.append(FunctionCallOutput(call_id=item["call_id"], output=item["output"]))
            else:
                items.append(InputMessage(content=_text_of(item.get("content", ""))))
    text_format = None
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        text_format = JsonSchemaFormat(
            name=fmt.get("name", "output"),
            json_schema=fmt["schema"],
            strict=bool(fmt.get("strict")),
        )
    tools = [
        FunctionTool(
            name=t["name"],
            description=t.get("description") or "",
            parameters=t.get("parameters") or {},
        )
        for t in body.get("tools") or []
        if t.get("type") == "function"
    ]
    return ModelRequest(
        model=body["model"],
        input=items,
        instructions=body.get("instructions"),
        text_format=text_format,
        tools=tools,
        previous_response_id=previous,
        metadata=body.get("metadata") or {},
        max_output_tokens=body.get("max_output_tokens"),
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            _text_of(part.get("text", part.get("content", "")))
            if isinstance(part, dict)
            else str(part)
            for part in content
        )
    return "" if content is None else str(content)


def _spread(values: deque[float]) -> dict[str, float | int | None]:
    """How many, and their median and 99th percentile (None while fewer than two)."""
    if len(values) < 2:
        return {"count": len(values), "p50": None, "p99": None}
    cuts = statistics.quantiles(values, n=100)
    return {"count": len(values), "p50": round(cuts[49], 1), "p99": round(cuts[98], 1)}


def _status(stored: _Stored, now: float) -> str:
    if stored.cancelled:
        return "cancelled"
    if stored.fate == "stuck":
        return "queued"
    if now < stored.ready_at:
        return (
            "queued"
            if now < stored.created + min(0.05, (stored.ready_at - stored.created) / 4)
            else "in_progress"
        )
    if stored.fate in FAILURES:
        return "failed"
    if stored.fate == "incomplete" or stored.answer.incomplete_reason:
        return "incomplete"
    return "completed"


def _output(stored: _Stored, response_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {
            "type": "function_call",
            "id": f"fc_{response_id[5:21]}_{i}",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
        for i, call in enumerate(stored.answer.function_calls)
    ]
    if stored.answer.output_text or not items:
        items.append(
            {
                "type": "message",
                "id": f"msg_{response_id[5:29]}",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": stored.answer.output_text, "annotations": []}
                ],
            }
        )
    return items


def _usage(stored: _Stored, status: str) -> dict[str, Any] | None:
    """What the response is billed: all of it once it produced its answer; a cancelled
    one that had started, its input (the output it never finished is not billed)."""
    usage = stored.answer.usage
    if status in ("completed", "incomplete"):
        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        cached, reasoning = usage.cached_tokens, usage.reasoning_tokens
    elif (
        status == "cancelled"
        and stored.cancelled_at is not None
        and (
            stored.cancelled_at
            >= stored.created + min(0.05, (stored.ready_at - stored.created) / 4)
        )
    ):
        input_tokens, output_tokens, cached, reasoning = usage.input_tokens, 0, 0, 0
    else:
        return None
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def render(response_id: str, stored: _Stored, now: float) -> dict[str, Any]:
    """The response as OpenAI's API shows it at `now`: every field of the SDK's
    `Response`, so the SDK validates it strictly."""
    status = _status(stored, now)
    done = status in ("completed", "incomplete")
    body = stored.body
    failure = FAILURES.get(stored.fate) if status == "failed" else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": float(int(stored.created)),
        # Only a completed response has a completion time.
        "completed_at": float(int(stored.ready_at)) if status == "completed" else None,
        "status": status,
        "background": stored.background,
        "model": body.get("model"),
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "previous_response_id": body.get("previous_response_id"),
        "conversation": None,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "reasoning": None,
        "temperature": float(body.get("temperature", 1.0)),
        "top_p": float(body.get("top_p", 1.0)),
        "top_logprobs": body.get("top_logprobs"),
        "truncation": body.get("truncation", "disabled"),
        "service_tier": body.get("service_tier") or "default",
        "user": body.get("user"),
        "safety_identifier": body.get("safety_identifier"),
        "prompt": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": None,
        "prompt_cache_options": None,
        "prompt_cache_diagnostics": None,
        "access_programs": None,
        "image": None,
        "input_transformations": None,
        "moderation": None,
        "tool_usage": None,
        "output": _output(stored, response_id) if done else [],
        "usage": _usage(stored, status),
        "error": {"code": failure[0], "message": failure[1]} if failure else None,
        "incomplete_details": {"reason": stored.answer.incomplete_reason or "max_output_tokens"}
        if status == "incomplete"
        else None,
    }


def stream_events(response_id: str, stored: _Stored, now: float) -> list[dict[str, Any]]:
    """The events a streamed response has emitted by `now`, numbered from 0 as OpenAI
    numbers them (`sequence_number`); `starting_after=N` resumes after event N."""
    status = _status(stored, now)
    early = dict(render(response_id, stored, stored.created), status="queued")
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": early},
        {"type": "response.queued", "response": early},
    ]
    if status == "queued":
        return _numbered(events)
    events.append({"type": "response.in_progress", "response": dict(early, status="in_progress")})
    if status in ("in_progress", "cancelled"):
        return _numbered(events)
    final = render(response_id, stored, now)
    for index, item in enumerate(final["output"]):
        started = dict(item, status="in_progress")
        if item["type"] == "message":
            started["content"] = []
        events.append(
            {"type": "response.output_item.added", "output_index": index, "item": started}
        )
        if item["type"] == "function_call":
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "delta": item["arguments"],
                }
            )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "arguments": item["arguments"],
                }
            )
        else:
            text = item["content"][0]["text"]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            empty = {"type": "output_text", "text": "", "annotations": []}
            events.append({"type": "response.content_part.added", **where, "part": empty})
            for offset in range(0, max(1, len(text)), 64):
                events.append(
                    {
                        "type": "response.output_text.delta",
                        **where,
                        "delta": text[offset : offset + 64],
                        "logprobs": [],
                    }
                )
            events.append(
                {"type": "response.output_text.done", **where, "text": text, "logprobs": []}
            )
            events.append(
                {"type": "response.content_part.done", **where, "part": item["content"][0]}
            )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": f"response.{status}", "response": final})
    return _numbered(events)


def _numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def input_items(stored: _Stored, response_id: str) -> list[dict[str, Any]]:
    """The response's input as `GET /v1/responses/{id}/input_items` lists it."""
    raw = stored.body.get("input")
    entries = [{"role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])
    items: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        item_id = f"msg_{response_id[5:21]}{index:04d}"
        if entry.get("type") == "function_call_output":
            items.append(
                {
                    "type": "function_call_output",
                    "id": f"fco_{response_id[5:21]}{index:04d}",
                    "call_id": entry.get("call_id", ""),
                    "output": entry.get("output", ""),
                    "status": "completed",
                }
            )
            continue
        items.append(
            {
                "type": "message",
                "id": item_id,
                "role": entry.get("role", "user"),
                "status": "completed",
                "content": [{"type": "input_text", "text": _text_of(entry.get("content", ""))}],
            }
        )
    return items


def create_emulator_app(
    config: EmulatorConfig | None = None, clock: Callable[[], float] = time.time
) -> Starlette:
    state = EmulatorState(config or EmulatorConfig(), clock)

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if state.config.api_key is not None:
            return secrets.compare_digest(header, f"Bearer {state.config.api_key}")
        return header.startswith("Bearer ") and len(header) > len("Bearer ")

    def unauthorised() -> JSONResponse:
        return _error(
            401, "You didn't provide an API key.", "invalid_request_error", code="invalid_api_key"
        )

    def not_found(response_id: str) -> JSONResponse:
        return _error(404, f"Response with id '{response_id}' not found.", "invalid_request_error")

    def fault(kind: str) -> JSONResponse | None:
        """An injected 429 or 500, or None to answer normally."""
        if state.rng.random() < state.config.share_429:
            state.stats["rate_limited"] += 1
            retry = state.config.retry_after_s
            headers = state.limit_headers(request_wait=retry)
            if state.config.retry_after_header:
                headers["retry-after"] = f"{retry:g}"
                headers["retry-after-ms"] = str(int(retry * 1000))
            return _error(
                429,
                "Rate limit reached for requests (emulated).",
                "requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if state.rng.random() < state.config.share_500:
            state.stats["server_errors"] += 1
            return _error(
                500, f"The server had an error while processing {kind} (emulated).", "server_error"
            )
        return None

    async def create(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not body.get("model"):
            return _error(
                400,
                "Missing required parameter: 'model'.",
                "invalid_request_error",
                param="model",
                code="missing_required_parameter",
            )
        if body.get("background") and body.get("store") is False:
            return _error(
                400, "Background mode requires store=true.", "invalid_request_error", param="store"
            )
        refused = _refuse_options(body) or _refuse_metadata(body)
        if refused is not None:
            return refused
        injected = fault("your request")
        if injected is not None:
            return injected
        if state.rng.random() < state.config.share_insufficient_quota:
            state.stats["insufficient_quota"] += 1
            return _error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                code="insufficient_quota",
                headers=state.limit_headers(),
            )
        wait, limit_headers = state.rate_check(_estimated_tokens(body))
        if wait is not None:
            state.stats["rate_limited"] += 1
            return _error(
                429,
                "Rate limit reached for requests or tokens per minute (emulated limit).",
                "requests",
                code="rate_limit_exceeded",
                headers={
                    **limit_headers,
                    "retry-after": f"{math.ceil(wait):d}",
                    "retry-after-ms": str(math.ceil(wait * 1000)),
                },
            )
        try:
            model_request = _request_from_body(body, state)
        except LookupError as missing:
            return _error(
                404,
                f"Previous response with id '{missing.args[0]}' not found.",
                "invalid_request_error",
                param="previous_response_id",
            )
        except (ValueError, KeyError, TypeError, ValidationError):
            return _error(
                400,
                "Missing or invalid parameter: 'input'.",
                "invalid_request_error",
                param="input",
            )
        now = state.clock()
        background = bool(body.get("background"))
        latency = state.config.latency_s + state.rng.uniform(0, state.config.latency_jitter_s)
        stored = _Stored(
            body=body,
            created=now,
            ready_at=now + (latency if background or body.get("stream") else 0),
            answer=answer(model_request),
            background=background,
            fate=_fate(state),
        )
        response_id = "resp_" + secrets.token_hex(24)
        state.responses[response_id] = stored
        state.stats["responses_created"] += 1
        options = body.get("background_options") or {}
        window = options.get("completion_window", "soonest")
        state.stats[f"window_{window}"] += 1
        if options.get("continuation_id"):
            state.continuations[options["continuation_id"]] += 1
        if background and stored.fate != "stuck":
            state.schedule_webhook(response_id, stored.ready_at - now)
        if body.get("stream"):
            return _event_stream(state, response_id, stored, after=-1, headers=limit_headers)
        return JSONResponse(render(response_id, stored, now), headers=limit_headers)

    async def retrieve(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        injected = fault("your request")
        if injected is not None:
            return injected
        response_id = request.path_params["response_id"]
        stored = state.responses.get(response_id)
        if stored is None:
            return not_found(response_id)
        state.stats["responses_retrieved"] += 1
        if request.query_params.get("stream") == "true":
            if not stored.body.get("stream"):
                return _error(
                    400,
                    "This response was not created with stream=true; it cannot be streamed.",
                    "invalid_request_error",
                    param="stream",
                )
            try:
                after = int(request.query_params.get("starting_after", "-1"))
            except ValueError:
                return _error(
                    400,
                    "Invalid 'starting_after': expected an integer.",
                    "invalid_request_error",
                    param="starting_after",
                    code="invalid_type",
                )
            return _event_stream(state, response_id, stored, after=after, headers={})
        rendered = render(response_id, stored, state.clock())
        state.stats[f"retrieved_{rendered['status']}"] += 1
        return JSONResponse(rendered, headers=state.limit_headers())

    async def cancel(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        injected = fault("your request")
        if injected is not None:
            return injected
        response_id = request.path_params["response_id"]
        stored = state.responses.get(response_id)
        if stored is None:
            return not_found(response_id)
        if not stored.background:
            return _error(
                400, "Only background responses can be cancelled.", "invalid_request_error"
            )
        now = state.clock()
        if _status(stored, now) not in TERMINAL:
            stored.cancelled = True
            stored.cancelled_at = now
            state.stats["responses_cancelled"] += 1
            state.schedule_webhook(response_id, 0)
        return JSONResponse(render(response_id, stored, now), headers=state.limit_headers())

    async def delete(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        response_id = request.path_params["response_id"]
        if state.responses.pop(response_id, None) is None:
            return not_found(response_id)
        state.stats["responses_deleted"] += 1
        return JSONResponse(
            {"id": response_id, "object": "response.deleted", "deleted": True},
            headers=state.limit_headers(),
        )

    async def list_input_items(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        response_id = request.path_params["response_id"]
        stored = state.responses.get(response_id)
        if stored is None:
            return not_found(response_id)
        items = input_items(stored, response_id)
        if request.query_params.get("order", "desc") == "desc":
            items.reverse()
        after = request.query_params.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = min(100, max(1, int(request.query_params.get("limit", "20"))))
        except ValueError:
            return _error(400, "Invalid 'limit'.", "invalid_request_error", param="limit")
        page = items[:limit]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            },
            headers=state.limit_headers(),
        )

    async def faults(request: Request) -> JSONResponse:
        """Change the fault knobs while the emulator runs (tests and chaos runs)."""
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict) or not set(changes) <= set(FAULT_FIELDS):
                raise ValueError(f"only {', '.join(FAULT_FIELDS)} can change")
            state.config = EmulatorConfig.model_validate({**state.config.model_dump(), **changes})
        except (ValueError, ValidationError) as error:
            return _error(400, str(error), "invalid_request_error")
        return JSONResponse({field: getattr(state.config, field) for field in FAULT_FIELDS})

    async def stats(request: Request) -> JSONResponse:
        by_status = Counter(_status(s, state.clock()) for s in state.responses.values())
        return JSONResponse(
            {
                "responses_created": state.stats["responses_created"],
                "responses_retrieved": state.stats["responses_retrieved"],
                "responses_cancelled": state.stats["responses_cancelled"],
                "responses_deleted": state.stats["responses_deleted"],
                "rate_limited": state.stats["rate_limited"],
                "insufficient_quota": state.stats["insufficient_quota"],
                "server_errors": state.stats["server_errors"],
                "webhooks_sent": state.stats["webhooks_sent"],
                "webhooks_lost": state.stats["webhooks_lost"],
                "webhooks_failed": state.stats["webhooks_failed"],
                "webhook_retries": state.stats["webhook_retries"],
                "webhooks_suppressed": state.stats["webhooks_suppressed"],
                "webhook_attempt_failures": dict(state.attempt_failures),
                "webhook_delivery_ms": _spread(state.delivery_ms),
                "completion_windows": {
                    window: state.stats[f"window_{window}"] for window in COMPLETION_WINDOWS
                },
                "by_status": dict(by_status),
                "by_fate": dict(Counter(s.fate for s in state.responses.values())),
                "continuation_ids": dict(state.continuations),
            }
        )

    async def responses(request: Request) -> JSONResponse:
        """Every response it created: id, status now, fate, and the tokens it bills (what
        a chaos run compares with what the client recorded)."""
        now = state.clock()
        listed = []
        for response_id, stored in state.responses.items():
            status = _status(stored, now)
            usage = _usage(stored, status) or {}
            listed.append(
                {
                    "id": response_id,
                    "status": status,
                    "fate": stored.fate,
                    "billed_tokens": usage.get("total_tokens", 0),
                }
            )
        return JSONResponse({"data": listed})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/v1/responses", create, methods=["POST"]),
            Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
            Route("/v1/responses/{response_id}", delete, methods=["DELETE"]),
            Route("/v1/responses/{response_id}/cancel", cancel, methods=["POST"]),
            Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
            Route("/_emulator/stats", stats, methods=["GET"]),
            Route("/_emulator/faults", faults, methods=["POST"]),
            Route("/_emulator/responses", responses, methods=["GET"]),
        ],
        middleware=[Middleware(RequestIds)],
    )
    app.state.emulator = state
    return app


class RequestIds:
    """Every answer carries an `x-request-id`, as OpenAI's do (support asks for it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(16)

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, receive, with_id)


def _event_stream(
    state: EmulatorState,
    response_id: str,
    stored: _Stored,
    *,
    after: int,
    headers: dict[str, str],
) -> StreamingResponse:
    """Server-sent events of a streamed response from `after` on, as they happen."""

    async def events() -> AsyncIterator[bytes]:
        sent = after
        while True:
            now = state.clock()
            for event in stream_events(response_id, stored, now):
                if event["sequence_number"] > sent:
                    sent = event["sequence_number"]
                    yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
            if _status(stored, now) in TERMINAL or response_id not in state.responses:
                return
            await asyncio.sleep(min(0.05, max(0.005, stored.ready_at - now)))

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _fate(state: EmulatorState) -> str:
    draw = state.rng.random()
    config = state.config
    for fate, share in (
        ("failed", config.share_failed),
        ("failed_permanent", config.share_failed_permanent),
        ("incomplete", config.share_incomplete),
        ("stuck", config.share_stuck),
    ):
        if draw < share:
            return fate
        draw -= share
    return "completed"
