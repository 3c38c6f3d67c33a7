"""The emulator answers as OpenAI does, so that what passes against it holds against
OpenAI: every response at every state validates strictly against the installed SDK's
model, streams resume by sequence number, and its headers, limits, errors and webhooks
have OpenAI's shapes. The real SDK over HTTP throughout."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from backburner.providers.emulator import EmulatorConfig, create_emulator_app
from tests.conftest import wait_for
from tests.servers import serve_on_loopback, set_faults

STREAM_EVENT = TypeAdapter(ResponseStreamEvent)


@contextlib.asynccontextmanager
async def emulator(**config: Any) -> AsyncIterator[tuple[openai.AsyncOpenAI, str]]:
    app = create_emulator_app(EmulatorConfig(**{"latency_s": 0.2, "seed": 3, **config}))
    async with serve_on_loopback(app) as base:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=f"{base}/v1", max_retries=0)
        try:
            yield client, base
        finally:
            await client.close()


async def raw(client: openai.AsyncOpenAI, response_id: str) -> dict[str, Any]:
    answer = await client.responses.with_raw_response.retrieve(response_id)
    body: dict[str, Any] = json.loads(answer.content)
    return body


def strict(body: dict[str, Any]) -> Response:
    return Response.model_validate(body, strict=True)


async def test_the_emulators_response_has_exactly_the_sdks_fields() -> None:
    # An SDK upgrade that adds a field to Response fails here, not in users' code.
    async with emulator() as (client, _):
        created = await client.responses.create(
            model="gpt-4.1-mini", input="Hello.", background=True
        )
        body = await raw(client, created.id)
    assert set(body) == set(Response.model_fields)


@pytest.mark.parametrize(
    ("knobs", "final"),
    [
        ({}, "completed"),
        ({"share_failed": 1.0}, "failed"),
        ({"share_failed_permanent": 1.0}, "failed"),
        ({"share_incomplete": 1.0}, "incomplete"),
    ],
)
async def test_every_state_validates_strictly_against_the_sdk(
    knobs: dict[str, float], final: str
) -> None:
    async with emulator(**knobs) as (client, _):
        created = await client.responses.create(
            model="gpt-4.1-mini", input="Summarise: the sky is blue.", background=True
        )
        seen = {strict(await raw(client, created.id)).status}

        async def ended() -> dict[str, Any] | None:
            body = await raw(client, created.id)
            seen.add(strict(body).status)
            return body if body["status"] not in ("queued", "in_progress") else None

        body = await wait_for(ended, within=5)
    assert body["status"] == final
    assert seen >= {"in_progress", final}
    # Only a completed response says when it completed.
    assert (body["completed_at"] is not None) == (final == "completed")
    if final == "failed":
        code = body["error"]["code"]
        assert code == ("server_error" if knobs.get("share_failed") else "invalid_prompt")
    if final in ("completed", "incomplete"):
        details = body["usage"]["input_tokens_details"]
        assert set(details) >= {"cached_tokens", "cache_write_tokens"}


async def test_a_cancelled_response_validates_has_no_completion_time_and_bills_its_input() -> None:
    async with emulator(latency_s=5.0) as (client, _):
        created = await client.responses.create(
            model="gpt-4.1-mini", input="A long piece of work.", background=True
        )
        await asyncio.sleep(0.1)  # past queued, into in_progress: the input was read
        cancelled = await client.responses.with_raw_response.cancel(created.id)
        body = json.loads(cancelled.content)
        again = await client.responses.cancel(created.id)  # idempotent
    strict(body)
    assert body["status"] == again.status == "cancelled"
    assert body["completed_at"] is None
    assert body["usage"]["input_tokens"] > 0
    assert body["usage"]["output_tokens"] == 0


async def test_a_background_stream_resumes_after_a_sequence_number() -> None:
    async with emulator(latency_s=0.3) as (client, _):
        stream = await client.responses.create(
            model="gpt-4.1-mini",
            input="Write two sentences about tea.",
            background=True,
            stream=True,
        )
        first: list[Any] = []
        async for event in stream:
            first.append(event)
            if event.type == "response.in_progress":
                break
        await stream.close()
        response_id = first[0].response.id
        resumed = [
            event
            async for event in await client.responses.retrieve(
                response_id, stream=True, starting_after=first[-1].sequence_number
            )
        ]
        whole = [event async for event in await client.responses.retrieve(response_id, stream=True)]
    numbers = [event.sequence_number for event in whole]
    assert numbers == list(range(len(whole)))
    assert [e.sequence_number for e in first + resumed] == numbers
    assert whole[0].type == "response.created"
    assert whole[-1].type == "response.completed"
    text = "".join(e.delta for e in whole if e.type == "response.output_text.delta")
    assert text == whole[-1].response.output_text
    for event in whole:
        STREAM_EVENT.validate_python(event.model_dump(mode="json"), strict=False)


async def test_delete_and_input_items_as_the_sdk_calls_them() -> None:
    async with emulator(latency_s=0.05) as (client, _):
        created = await client.responses.create(
            model="gpt-4.1-mini", input="Remember this line.", background=True
        )
        items = await client.responses.input_items.list(created.id)
        listed = [item async for item in items]
        await client.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.delete(created.id)
    assert len(listed) == 1
    assert listed[0].type == "message"
    assert listed[0].content[0].text == "Remember this line."  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"key": "v" * 513}, "metadata.key"),
        ({"key": 5}, "metadata.key"),
    ],
)
async def test_metadata_past_openais_limits_is_refused_as_openai_refuses_it(
    metadata: dict[str, Any], param: str
) -> None:
    async with emulator() as (client, base):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(
                model="gpt-4.1-mini", input="x", background=True, metadata=metadata
            )
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{base}/_emulator/stats")).json()
    assert refused.value.param == param
    assert stats["responses_created"] == 0
    # At the limits it is fine.
    async with emulator() as (client, _):
        await client.responses.create(
            model="gpt-4.1-mini",
            input="x",
            background=True,
            metadata={f"{i:0>64}": "v" * 512 for i in range(16)},
        )


async def test_every_answer_has_a_request_id_and_the_rate_limit_headers() -> None:
    async with emulator(rpm_limit=100, tpm_limit=50_000) as (client, _):
        created = await client.responses.with_raw_response.create(
            model="gpt-4.1-mini", input="x", background=True
        )
        body = json.loads(created.content)
        polled = await client.responses.with_raw_response.retrieve(body["id"])
        with pytest.raises(openai.NotFoundError) as not_found:
            await client.responses.retrieve("resp_nope")
    for answer in (created.http_response, polled.http_response, not_found.value.response):
        assert answer.headers["x-request-id"].startswith("req_")
    for answer in (created.http_response, polled.http_response):
        headers = answer.headers
        assert headers["x-ratelimit-limit-requests"] == "100"
        assert headers["x-ratelimit-limit-tokens"] == "50000"
        assert int(headers["x-ratelimit-remaining-requests"]) == 99
        assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert (
        created.http_response.headers["x-request-id"]
        != polled.http_response.headers["x-request-id"]
    )


async def test_429s_come_with_or_without_retry_after_and_quota_429s_say_so() -> None:
    async with emulator(share_429=1.0, retry_after_s=2, retry_after_header=False) as (
        client,
        base,
    ):
        with pytest.raises(openai.RateLimitError) as limited:
            await client.responses.create(model="gpt-4.1-mini", input="x", background=True)
        await set_faults(base, share_429=0.0, share_insufficient_quota=1.0)
        with pytest.raises(openai.RateLimitError) as broke:
            await client.responses.create(model="gpt-4.1-mini", input="x", background=True)
        async with httpx.AsyncClient() as http:
            bad_knob = await http.post(f"{base}/_emulator/faults", json={"api_key": "mine"})
    headers = limited.value.response.headers
    assert "retry-after" not in headers
    assert headers["x-ratelimit-reset-requests"] == "2s"
    assert limited.value.code == "rate_limit_exceeded"
    assert broke.value.code == "insufficient_quota"
    assert bad_knob.status_code == 400  # only fault knobs can change while it runs


async def test_one_webhook_per_event_with_a_delivery_id_apart_from_the_event_id() -> None:
    received: list[tuple[dict[str, str], dict[str, Any]]] = []

    async def receive(request: Request) -> StarletteResponse:
        received.append((dict(request.headers), json.loads(await request.body())))
        return StarletteResponse(status_code=200)

    receiver = Starlette(routes=[Route("/hook", receive, methods=["POST"])])
    async with (
        serve_on_loopback(receiver) as hook_base,
        emulator(
            latency_s=0.3,
            webhook_url=f"{hook_base}/hook",
            webhook_secret="whsec_" + "a" * 32,
        ) as (client, base),
    ):
        done = await client.responses.create(model="m", input="x", background=True)
        doomed = await client.responses.create(model="m", input="y", background=True)
        await client.responses.cancel(doomed.id)

        async def both_timers_of_the_cancelled_one_fired() -> bool:
            async with httpx.AsyncClient() as http:
                stats = (await http.get(f"{base}/_emulator/stats")).json()
            return len(received) >= 2 and stats["webhooks_suppressed"] == 1

        await wait_for(both_timers_of_the_cancelled_one_fired, within=5)
    kinds = sorted((body["type"], body["data"]["id"]) for _, body in received)
    assert kinds == sorted([("response.completed", done.id), ("response.cancelled", doomed.id)])
    for headers, body in received:
        assert headers["webhook-id"].startswith("wh_")
        assert body["id"].startswith("evt_")
        assert headers["webhook-id"] != body["id"]


async def test_a_stuck_response_stays_queued_and_valid() -> None:
    async with emulator(share_stuck=1.0, latency_s=0.01) as (client, _):
        created = await client.responses.create(model="m", input="x", background=True)
        bodies = [await raw(client, created.id) for _ in range(3)]
    assert [strict(body).status for body in bodies] == ["queued"] * 3
    assert all(body["usage"] is None and body["completed_at"] is None for body in bodies)


async def test_streaming_what_was_not_streamed_or_from_a_bad_number_is_a_400() -> None:
    async with emulator() as (client, base):
        plain = await client.responses.create(model="m", input="x", background=True)
        streamed = await client.responses.create(model="m", input="x", background=True, stream=True)
        (first, *_) = [event async for event in streamed]
        async with httpx.AsyncClient(headers={"Authorization": "Bearer sk"}) as http:
            not_streamed = await http.get(f"{base}/v1/responses/{plain.id}?stream=true")
            bad_number = await http.get(
                f"{base}/v1/responses/{first.response.id}?stream=true&starting_after=%00x"
            )
            unknown = await http.delete(f"{base}/v1/responses/resp_%00")
    assert not_streamed.status_code == 400
    assert not_streamed.json()["error"]["param"] == "stream"
    assert bad_number.status_code == 400
    assert bad_number.json()["error"]["param"] == "starting_after"
    assert unknown.status_code == 404
