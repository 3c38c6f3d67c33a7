"""An emulator of OpenAI's Responses API in background mode, answered by the offline engine.

`POST /v1/responses` (with or without `background`), `GET /v1/responses/{id}`,
`POST /v1/responses/{id}/cancel`, with OpenAI's shapes, status codes and error bodies, so
the real `openai` SDK talks to it unchanged. Fault knobs make it misbehave on purpose (429s
with `retry-after`, 500s, failed and incomplete responses, responses that stay queued), and
`GET /_emulator/stats` counts what happened so tests can prove, for example, that nothing
was created twice.

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
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

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


class EmulatorConfig(BaseModel):
    """How the emulator behaves; every share is a probability per request."""

    latency_s: float = Field(default=2.0, ge=0)
    latency_jitter_s: float = Field(default=0.0, ge=0)
    share_429: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: float = Field(default=1.0, ge=0)
    share_500: float = Field(default=0.0, ge=0, le=1)
    share_failed: float = Field(default=0.0, ge=0, le=1)
    share_incomplete: float = Field(default=0.0, ge=0, le=1)
    share_stuck: float = Field(default=0.0, ge=0, le=1)
    # A limit of its own, like an OpenAI project's: requests and tokens per minute
    # (replenished continuously) on `create`, answered with 429 + `retry-after` and the
    # `x-ratelimit-*` headers.
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
    fate: str = "completed"  # completed | failed | incomplete | stuck
    cancelled: bool = False


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
        self._client: aiohttp.ClientSession | None = None
        # Bursts of completions queue here, not inside the HTTP pool, whose bookkeeping
        # per request grows with the number of requests waiting in it.
        self._sending = asyncio.Semaphore(32)
        # What is left of the per-minute limits (they start full).
        self.requests_left = float(self.config.rpm_limit or 0)
        self.tokens_left = float(self.config.tpm_limit or 0)
        self.rate_updated = self.clock()

    def rate_check(self, tokens: int) -> tuple[float | None, dict[str, str]]:
        """Whether a create of `tokens` fits the limits now: (None, headers) if it does and
        is counted, else (seconds until it would fit, headers). Like OpenAI's, the limits
        replenish continuously (a per-minute limit of N refills N/60 every second), so a
        full minute's worth can go at once and then a steady trickle."""
        now = self.clock()
        elapsed = max(0.0, now - self.rate_updated)
        self.rate_updated = now
        rpm, tpm = self.config.rpm_limit, self.config.tpm_limit
        wait = 0.0
        if rpm is not None:
            self.requests_left = min(float(rpm), self.requests_left + elapsed * rpm / 60)
            if self.requests_left < 1:
                wait = (1 - self.requests_left) * 60 / rpm
        if tpm is not None:
            self.tokens_left = min(float(tpm), self.tokens_left + elapsed * tpm / 60)
            needed = min(float(tokens), float(tpm))
            if self.tokens_left < needed:
                wait = max(wait, (needed - self.tokens_left) * 60 / tpm)
        if wait <= 0:
            self.requests_left -= 1
            self.tokens_left -= tokens
        headers: dict[str, str] = {}
        if rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, int(self.requests_left)))
        if tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, int(self.tokens_left)))
        return (wait if wait > 0 else None), headers

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
        """Send the response's terminal event after `delay` seconds, if webhooks are on."""
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
        if self.rng.random() < self.config.share_webhook_lost:
            self.stats["webhooks_lost"] += 1
            return
        assert self.config.webhook_url is not None
        assert self.config.webhook_secret is not None
        event_id = "evt_" + secrets.token_hex(16)
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
                "webhook-id": event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_webhook(
                    self.config.webhook_secret, event_id, timestamp, body
                ),
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
    if stored.fate == "failed":
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


def render(response_id: str, stored: _Stored, now: float) -> dict[str, Any]:
    """The response as OpenAI's API shows it at `now`."""
    status = _status(stored, now)
    done = status in ("completed", "incomplete")
    usage = stored.answer.usage
    body = stored.body
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(stored.created),
        "completed_at": int(stored.ready_at) if status in TERMINAL else None,
        "status": status,
        "background": stored.background,
        "model": body.get("model"),
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "previous_response_id": body.get("previous_response_id"),
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "service_tier": body.get("service_tier", "default"),
        "store": body.get("store", True),
        "output": _output(stored, response_id) if done else [],
        "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }
        if done
        else None,
        "error": {
            "code": "server_error",
            "message": "The emulator failed this response on purpose (share_failed).",
        }
        if status == "failed"
        else None,
        "incomplete_details": {"reason": stored.answer.incomplete_reason or "max_output_tokens"}
        if status == "incomplete"
        else None,
    }


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

    def fault(kind: str) -> JSONResponse | None:
        """An injected 429 or 500, or None to answer normally."""
        if state.rng.random() < state.config.share_429:
            state.stats["rate_limited"] += 1
            retry = state.config.retry_after_s
            return _error(
                429,
                "Rate limit reached (emulated).",
                "requests",
                code="rate_limit_exceeded",
                headers={
                    "retry-after": f"{retry:g}",
                    "retry-after-ms": str(int(retry * 1000)),
                    "x-ratelimit-remaining-requests": "0",
                },
            )
        if state.rng.random() < state.config.share_500:
            state.stats["server_errors"] += 1
            return _error(
                500, f"The server had an error while processing {kind} (emulated).", "server_error"
            )
        return None

    async def create(request: Request) -> JSONResponse:
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
        refused = _refuse_options(body)
        if refused is not None:
            return refused
        injected = fault("your request")
        if injected is not None:
            return injected
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
            ready_at=now + (latency if background else 0),
            answer=answer(model_request),
            background=background,
            fate=_fate(state),
        )
        response_id = "resp_" + secrets.token_hex(24)
        state.responses[response_id] = stored
        state.stats["responses_created"] += 1
        window = (body.get("background_options") or {}).get("completion_window", "soonest")
        state.stats[f"window_{window}"] += 1
        if background and stored.fate != "stuck":
            state.schedule_webhook(response_id, stored.ready_at - now)
        return JSONResponse(render(response_id, stored, now), headers=limit_headers)

    async def retrieve(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        injected = fault("your request")
        if injected is not None:
            return injected
        response_id = request.path_params["response_id"]
        stored = state.responses.get(response_id)
        if stored is None:
            return _error(
                404, f"Response with id '{response_id}' not found.", "invalid_request_error"
            )
        state.stats["responses_retrieved"] += 1
        rendered = render(response_id, stored, state.clock())
        state.stats[f"retrieved_{rendered['status']}"] += 1
        return JSONResponse(rendered)

    async def cancel(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        response_id = request.path_params["response_id"]
        stored = state.responses.get(response_id)
        if stored is None:
            return _error(
                404, f"Response with id '{response_id}' not found.", "invalid_request_error"
            )
        if not stored.background:
            return _error(
                400, "Only background responses can be cancelled.", "invalid_request_error"
            )
        if _status(stored, state.clock()) not in TERMINAL:
            stored.cancelled = True
            state.stats["responses_cancelled"] += 1
            state.schedule_webhook(response_id, 0)
        return JSONResponse(render(response_id, stored, state.clock()))

    async def stats(request: Request) -> JSONResponse:
        by_status = Counter(_status(s, state.clock()) for s in state.responses.values())
        return JSONResponse(
            {
                "responses_created": state.stats["responses_created"],
                "responses_retrieved": state.stats["responses_retrieved"],
                "responses_cancelled": state.stats["responses_cancelled"],
                "rate_limited": state.stats["rate_limited"],
                "server_errors": state.stats["server_errors"],
                "webhooks_sent": state.stats["webhooks_sent"],
                "webhooks_lost": state.stats["webhooks_lost"],
                "webhooks_failed": state.stats["webhooks_failed"],
                "webhook_retries": state.stats["webhook_retries"],
                "webhook_attempt_failures": dict(state.attempt_failures),
                "completion_windows": {
                    window: state.stats[f"window_{window}"] for window in COMPLETION_WINDOWS
                },
                "by_status": dict(by_status),
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/v1/responses", create, methods=["POST"]),
            Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
            Route("/v1/responses/{response_id}/cancel", cancel, methods=["POST"]),
            Route("/_emulator/stats", stats, methods=["GET"]),
        ],
    )
    app.state.emulator = state
    return app


def _fate(state: EmulatorState) -> str:
    draw = state.rng.random()
    config = state.config
    for fate, share in (
        ("failed", config.share_failed),
        ("incomplete", config.share_incomplete),
        ("stuck", config.share_stuck),
    ):
        if draw < share:
            return fate
        draw -= share
    return "completed"
