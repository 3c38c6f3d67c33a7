"""The real `openai` SDK against our emulator over real HTTP: background lifecycle, cancel,
terminal statuses, tool rounds, structured output, 429 with retry-after, 5xx, bad keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backburner.errors import ProviderRejected, ProviderUnavailable, RateLimited, ResponseLost
from backburner.jobs import build_registry
from backburner.providers import ModelRequest
from backburner.providers.openai import OpenAIProvider
from backburner.store import Database, JobStatus, NewJob
from backburner.store import jobs as jobs_store
from backburner.store import steps as steps_store
from backburner.worker import Worker
from tests.conftest import fast_settings, wait_for
from tests.servers import emulated, serve_on_loopback
from tests.servers import emulator_stats as stats

Emulator = Callable[..., contextlib.AbstractAsyncContextManager[tuple[OpenAIProvider, str]]]


async def until_terminal(provider: OpenAIProvider, response_id: str):  # type: ignore[no-untyped-def]
    async def ended():  # type: ignore[no-untyped-def]
        snapshot = await provider.retrieve(response_id)
        return snapshot if snapshot.is_terminal else None

    return await wait_for(ended, within=10)


async def test_background_lifecycle_through_the_sdk() -> None:
    async with emulated() as (provider, base):
        request = ModelRequest(
            model="gpt-4.1-mini",
            input="The sky is blue. Grass is green.",
            metadata={"backburner_job_id": "j1"},
        )
        submitted = await provider.submit(request)
        assert submitted.status in ("queued", "in_progress")
        assert submitted.id.startswith("resp_")
        done = await until_terminal(provider, submitted.id)
        counters = await stats(base)
    assert done.status == "completed"
    assert "The sky is blue." in done.output_text
    assert done.usage is not None
    assert done.usage.input_tokens > 0
    assert counters["responses_created"] == 1
    assert counters["responses_retrieved"] >= 1


async def test_cancel_stops_a_background_response_and_is_harmless_after() -> None:
    async with emulated(latency_s=30) as (provider, base):
        submitted = await provider.submit(ModelRequest(model="m", input="Text."))
        cancelled = await provider.cancel(submitted.id)
        again = await provider.cancel(submitted.id)
        counters = await stats(base)
    assert (cancelled.status, again.status) == ("cancelled", "cancelled")
    assert counters["responses_cancelled"] == 1


@pytest.mark.parametrize(
    ("fault", "status"), [("share_failed", "failed"), ("share_incomplete", "incomplete")]
)
async def test_terminal_statuses_come_through(fault: str, status: str) -> None:
    async with emulated(**{fault: 1.0}) as (provider, _):
        submitted = await provider.submit(ModelRequest(model="m", input="Text."))
        done = await until_terminal(provider, submitted.id)
    assert done.status == status
    if status == "failed":
        assert done.error_message
    else:
        assert done.incomplete_reason == "max_output_tokens"


async def test_429_carries_retry_after_and_5xx_is_unavailable() -> None:
    async with emulated(share_429=1.0, retry_after_s=7) as (provider, _):
        with pytest.raises(RateLimited) as limited:
            await provider.submit(ModelRequest(model="m", input="x"))
    assert limited.value.retry_after == 7
    async with emulated(share_500=1.0) as (provider, _):
        with pytest.raises(ProviderUnavailable, match="500"):
            await provider.submit(ModelRequest(model="m", input="x"))


async def test_unknown_ids_bad_requests_and_bad_keys() -> None:
    async with emulated() as (provider, base):
        with pytest.raises(ResponseLost):
            await provider.retrieve("resp_unknown")
        with pytest.raises(ProviderRejected, match=r"404.*not found"):
            await provider.submit(
                ModelRequest(model="m", input="x", previous_response_id="resp_unknown")
            )
        async with httpx.AsyncClient() as client:
            keyless = await client.post(f"{base}/v1/responses", json={"model": "m", "input": "x"})
    assert keyless.status_code == 401
    assert keyless.json()["error"]["code"] == "invalid_api_key"


def test_auth_errors_are_permanent_and_rate_limits_carry_their_delay() -> None:
    from backburner.providers.openai import provider_error

    request = httpx.Request("POST", "http://127.0.0.1/v1/responses")
    denied = openai.AuthenticationError(
        "bad key", response=httpx.Response(401, request=request), body=None
    )
    assert isinstance(provider_error(denied), ProviderRejected)
    limited = openai.RateLimitError(
        "slow",
        response=httpx.Response(429, request=request, headers={"retry-after-ms": "1500"}),
        body=None,
    )
    error = provider_error(limited)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 1.5


async def test_sdk_errors_parse_like_openai_error_bodies() -> None:
    async with emulated() as (_, base), httpx.AsyncClient() as client:
        response = await client.post(
            f"{base}/v1/responses", json={"input": "x"}, headers={"Authorization": "Bearer sk"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


async def test_jobs_run_on_the_openai_provider_without_paying_twice(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url)
    registry = build_registry(settings.plugins)
    async with emulated() as (provider, base):
        worker = Worker(db, registry, provider, settings)
        task = asyncio.create_task(worker.run())
        await worker.started.wait()
        try:
            payloads = {
                "test_ask_model": {},
                "classify_leads": {
                    "labels": ["hot", "cold"],
                    "leads": [
                        {"id": str(i), "notes": "budget approved" if i % 2 else "not interested"}
                        for i in range(15)
                    ],
                },
                "generate_report": {"user_id": "u_3", "period": "2026-09"},
            }
            jobs = {}
            for job_type, payload in payloads.items():
                spec = registry.get(job_type)
                job, _ = await jobs_store.insert_job(
                    db,
                    NewJob(
                        owner="alice",
                        type=job_type,
                        payload=payload,
                        max_attempts=spec.retry.max_attempts,
                        timeout_seconds=spec.timeout,
                    ),
                    now=datetime.now(UTC),
                )
                jobs[job_type] = job.id
            for job_id in jobs.values():

                async def done(job_id: str = job_id):  # type: ignore[no-untyped-def]
                    job = await jobs_store.get_job(db, job_id)
                    return job if job is not None and job.status.is_terminal else None

                finished = await wait_for(done, within=20)
                assert finished.status == JobStatus.SUCCEEDED, finished.error_message
        finally:
            worker.stop()
            await task
        counters = await stats(base)
    calls = [call for job_id in jobs.values() for call in await steps_store.list_calls(db, job_id)]
    # Every model call is one background response, created exactly once.
    assert counters["responses_created"] == len(calls) == 1 + 2 + 2
    report_calls = await steps_store.list_calls(db, jobs["generate_report"])
    assert [c.key for c in report_calls] == ["narrative", "narrative/round/1"]
    assert all(c.status == "completed" and c.input_tokens > 0 for c in calls)


def test_request_kwargs_follow_the_sdk_shapes() -> None:
    from backburner.providers.base import FunctionCallOutput, FunctionTool, JsonSchemaFormat
    from backburner.providers.openai import request_kwargs

    kwargs = request_kwargs(
        ModelRequest(
            model="m",
            instructions="Be brief.",
            input=[FunctionCallOutput(call_id="c1", output=json.dumps({"a": 1}))],
            previous_response_id="resp_1",
            metadata={"backburner_job_id": "j"},
            tools=[FunctionTool(name="f", parameters={"type": "object", "properties": {}})],
            text_format=JsonSchemaFormat(name="out", json_schema={"type": "object"}),
        )
    )
    assert kwargs["input"] == [
        {"type": "function_call_output", "call_id": "c1", "output": '{"a": 1}'}
    ]
    assert kwargs["tools"][0]["type"] == "function"
    assert kwargs["text"]["format"]["type"] == "json_schema"
    assert kwargs["store"] is True
    assert kwargs["background"] is True
    assert kwargs["previous_response_id"] == "resp_1"
    assert "background_options" not in kwargs
    windowed = ModelRequest(model="m", input="x", completion_window="8h", service_tier="flex")
    assert request_kwargs(windowed)["background_options"] == {"completion_window": "8h"}
    assert request_kwargs(windowed)["service_tier"] == "flex"
    # Windows belong to background execution only.
    assert "background_options" not in request_kwargs(windowed, background=False)


async def test_a_request_sent_as_is_is_what_the_sdks_create_would_send() -> None:
    # Submissions skip `responses.create` (its argument transform was half the CPU of a
    # submission) and post our body as it is: every field must be one `create` takes, and
    # the SDK's transform must leave our body unchanged (no renames, dates or files).
    import inspect

    from openai._utils import async_maybe_transform
    from openai.resources.responses import AsyncResponses
    from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming

    from backburner.providers.base import (
        FunctionCallOutput,
        FunctionTool,
        InputMessage,
        JsonSchemaFormat,
    )
    from backburner.providers.openai import request_kwargs

    everything = ModelRequest(
        model="gpt-4.1-mini",
        instructions="Be brief.",
        input=[
            InputMessage(role="user", content="Hello \u2603"),
            FunctionCallOutput(call_id="c1", output=json.dumps({"a": 1})),
        ],
        previous_response_id="resp_1",
        metadata={"backburner_job_id": "j", "owner": "alice"},
        max_output_tokens=500,
        completion_window="2h",
        continuation_id="cont_1",
        service_tier="flex",
        tools=[
            FunctionTool(
                name="f",
                description="Look something up",
                parameters={"type": "object", "properties": {"q": {"type": "string"}}},
            )
        ],
        text_format=JsonSchemaFormat(
            name="out", json_schema={"type": "object", "properties": {"x": {"type": "integer"}}}
        ),
    )
    create_takes = set(inspect.signature(AsyncResponses.create).parameters)
    for background in (True, False):
        body = request_kwargs(everything, background=background)
        assert set(body) <= create_takes
        assert {"tools", "text", "metadata", "max_output_tokens"} <= set(body)
        assert ("background_options" in body) == background
        transformed = await async_maybe_transform(body, ResponseCreateParamsNonStreaming)
        assert transformed == body


async def test_the_emulator_enforces_its_own_requests_and_tokens_per_minute() -> None:
    async with emulated(rpm_limit=2) as (provider, base):
        for _ in range(2):
            await provider.submit(ModelRequest(model="m", input="x"))
        with pytest.raises(RateLimited) as limited:
            await provider.submit(ModelRequest(model="m", input="x"))
        counters = await stats(base)
    assert limited.value.retry_after is not None
    assert 25 <= limited.value.retry_after <= 30  # 2 a minute: one every 30 s
    assert (counters["responses_created"], counters["rate_limited"]) == (2, 1)
    async with emulated(tpm_limit=3_000) as (provider, _):
        await provider.submit(ModelRequest(model="m", input="x" * 4_000, max_output_tokens=1_000))
        with pytest.raises(RateLimited):
            await provider.submit(
                ModelRequest(model="m", input="x" * 4_000, max_output_tokens=1_000)
            )
        # A small request still fits what is left of the minute.
        await provider.submit(ModelRequest(model="m", input="x", max_output_tokens=10))


async def test_completion_windows_reach_the_api_and_bad_ones_are_refused() -> None:
    async with emulated() as (provider, base):
        for window in ("soonest", "2h", "8h"):
            await provider.submit(ModelRequest(model="m", input="x", completion_window=window))
        counters = await stats(base)
        async with httpx.AsyncClient(headers={"Authorization": "Bearer sk-test"}) as client:
            bad_window = await client.post(
                f"{base}/v1/responses",
                json={
                    "model": "m",
                    "input": "x",
                    "background": True,
                    "background_options": {"completion_window": "24h"},
                },
            )
            not_background = await client.post(
                f"{base}/v1/responses",
                json={
                    "model": "m",
                    "input": "x",
                    "background_options": {"completion_window": "2h"},
                },
            )
            with_flex = await client.post(
                f"{base}/v1/responses",
                json={
                    "model": "m",
                    "input": "x",
                    "background": True,
                    "service_tier": "flex",
                    "background_options": {"completion_window": "8h"},
                },
            )
    assert counters["completion_windows"] == {"soonest": 1, "2h": 1, "8h": 1}
    for refused in (bad_window, not_background, with_flex):
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "background_options.completion_window"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("1h2m3.5s", 3723.5), ("0s", 0.0)],
)
def test_rate_limit_resets_read_as_openai_writes_them(value: str, seconds: float) -> None:
    from backburner.providers.openai import parse_reset

    assert parse_reset(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "soon", "5", "1x", "-1s", "1s garbage"])
def test_a_reset_that_reads_like_nothing_is_no_hint(value: str) -> None:
    from backburner.providers.openai import parse_reset

    assert parse_reset(value) is None


def test_the_wait_a_429_names_comes_from_the_best_header_it_has() -> None:
    from backburner.providers.openai import retry_after_seconds

    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "9"}) == 9.0
    # No retry-after: the longer of the two resets.
    resets = {"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "1m0s"}
    assert retry_after_seconds(resets) == 60.0
    assert retry_after_seconds({"retry-after": "nan", "x-ratelimit-reset-tokens": "3s"}) == 3.0
    assert retry_after_seconds({}) is None


def test_429s_are_told_apart_by_what_they_mean() -> None:
    from backburner.errors import QuotaExhausted, RequestTooLarge
    from backburner.providers.openai import provider_error

    request = httpx.Request("POST", "http://127.0.0.1/v1/responses")

    def a_429(
        message: str, code: str, headers: dict[str, str] | None = None
    ) -> openai.RateLimitError:
        body = {"message": message, "type": "requests", "param": None, "code": code}
        return openai.RateLimitError(
            message,
            response=httpx.Response(429, request=request, headers=headers or {}),
            body=body,
        )

    quota = provider_error(a_429("You exceeded your current quota", "insufficient_quota"))
    assert isinstance(quota, QuotaExhausted)
    assert not quota.retryable
    large = provider_error(
        a_429("Request too large for gpt-4.1 on tokens per min (TPM)", "rate_limit_exceeded")
    )
    assert isinstance(large, RequestTooLarge)
    assert not large.retryable
    busy = provider_error(
        a_429("Rate limit reached", "rate_limit_exceeded", {"x-ratelimit-reset-requests": "20ms"})
    )
    assert isinstance(busy, RateLimited)
    assert busy.retryable
    assert busy.retry_after == pytest.approx(0.02)


async def test_looking_at_a_response_never_queues_behind_submissions_in_flight() -> None:
    """A provider slow to accept new work (every create held open) still answers polls at
    once: a completion a webhook announced is fetched with its own budget of requests."""
    release = asyncio.Event()
    held = 0

    async def create(request: Request) -> JSONResponse:
        nonlocal held
        held += 1
        await release.wait()
        return JSONResponse({"id": "resp_late", "status": "queued", "output": []})

    async def retrieve(request: Request) -> JSONResponse:
        rid = request.path_params["rid"]
        return JSONResponse({"id": rid, "status": "completed", "output": []})

    app = Starlette(
        routes=[
            Route("/v1/responses", create, methods=["POST"]),
            Route("/v1/responses/{rid}", retrieve, methods=["GET"]),
        ]
    )
    async with serve_on_loopback(app) as base:
        provider = OpenAIProvider.connect(
            api_key="sk-test", base_url=f"{base}/v1", timeout=30, max_in_flight=2
        )
        request = ModelRequest(model="gpt-4.1-mini", input="Text.")
        creating = [asyncio.create_task(provider.submit(request)) for _ in range(4)]
        try:
            await wait_for(lambda: held == 2, within=10, interval=0.01)  # the budget is full
            looked = await asyncio.wait_for(provider.retrieve("resp_done"), timeout=5)
            assert looked.status == "completed"
            assert held == 2  # the other two creates still wait their turn
        finally:
            release.set()
            placed = await asyncio.wait_for(asyncio.gather(*creating), timeout=10)
            await provider.aclose()
    assert [p.id for p in placed] == ["resp_late"] * 4
