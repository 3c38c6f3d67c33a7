"""OpenAI's signed webhooks wake a waiting job at once; bad, stale and repeated deliveries
are refused or ignored; polling still finishes the job when a webhook is lost."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from backburner.config import Settings
from backburner.providers.emulator import EmulatorConfig, create_emulator_app, sign_webhook
from backburner.runtime import create_app
from tests.conftest import Keys, auth, fast_settings, serving, wait_for
from tests.servers import serve_on_loopback

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(
    body: str, *, webhook_id: str | None = None, timestamp: int | None = None, secret: str = SECRET
) -> dict[str, str]:
    webhook_id = webhook_id or "evt_" + secrets.token_hex(8)
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(secret, webhook_id, timestamp, body),
        "content-type": "application/json",
    }


def event(kind: str = "response.completed", response_id: str = "resp_x") -> str:
    return json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": kind,
            "created_at": int(time.time()),
            "data": {"id": response_id},
        }
    )


async def run_job(
    settings: Settings,
    keys: Keys,
    emulator_config: EmulatorConfig,
) -> tuple[float, dict[str, Any]]:
    """Serve emulator and app on loopback, run one model-calling job, time it."""
    emulator = create_emulator_app(emulator_config)
    async with serve_on_loopback(emulator) as emulator_url:
        app_settings = settings.model_copy(
            # model_copy does not validate: give the secrets their real type.
            update={
                "openai_api_key": SecretStr("sk-test"),
                "openai_base_url": f"{emulator_url}/v1",
                "openai_webhook_secret": SecretStr(SECRET),
            }
        )
        app = create_app(app_settings, embed_worker=True, migrate_on_start=False)
        async with serve_on_loopback(app, lifespan=True) as app_url:
            state = emulator.state.emulator
            state.config = state.config.model_copy(
                update={"webhook_url": f"{app_url}/webhooks/openai"}
            )
            async with httpx.AsyncClient(base_url=app_url, headers=auth(keys.alice)) as api:
                started = time.monotonic()
                job_id = (await api.post("/api/jobs", json={"type": "test_ask_model"})).json()[
                    "job_id"
                ]

                async def finished() -> dict[str, Any] | None:
                    body: dict[str, Any] = (await api.get(f"/api/jobs/{job_id}")).json()
                    return body if body["status"] == "succeeded" else None

                await wait_for(finished, within=15)
                took = time.monotonic() - started
            stats: dict[str, Any] = (
                await httpx.AsyncClient().get(f"{emulator_url}/_emulator/stats")
            ).json()
    return took, stats


async def test_a_webhook_wakes_the_job_long_before_the_next_poll(
    settings: Settings, keys: Keys
) -> None:
    # The first poll would come after 30 s: only the webhook can finish this quickly.
    slow_polls = settings.model_copy(update={"poll_initial_seconds": 30, "poll_max_seconds": 60})
    took, stats = await run_job(
        slow_polls,
        keys,
        EmulatorConfig(
            latency_s=0.5, webhook_secret=SECRET, webhook_url="http://127.0.0.1:9/unset"
        ),
    )
    assert took < 5
    assert stats["webhooks_sent"] == 1
    assert stats["responses_created"] == 1
    # How long after the response ended the service took the webhook (for benchmarks).
    delivery = stats["webhook_delivery_ms"]
    assert delivery["count"] == 1
    assert delivery["p50"] is None  # one is no distribution


async def test_a_lost_webhook_is_caught_by_polling(settings: Settings, keys: Keys) -> None:
    took, stats = await run_job(
        settings,
        keys,
        EmulatorConfig(
            latency_s=0.3,
            webhook_secret=SECRET,
            webhook_url="http://127.0.0.1:9/unset",
            share_webhook_lost=1.0,
        ),
    )
    assert stats["webhooks_lost"] == 1
    assert stats["webhooks_sent"] == 0
    assert stats["webhook_delivery_ms"]["count"] == 0
    assert took < 5


@pytest.fixture
async def receiver(db_url: str, keys: Keys):  # type: ignore[no-untyped-def]
    settings = fast_settings(db_url, openai_webhook_secret=SECRET)
    async with serving(settings, keys.alice, embed_worker=False) as api:
        api.headers.pop("Authorization")
        yield api


async def test_verified_events_are_taken_once(receiver: httpx.AsyncClient) -> None:
    body = event()
    headers = signed_headers(body, webhook_id="evt_same")
    first = await receiver.post("/webhooks/openai", content=body, headers=headers)
    again = await receiver.post("/webhooks/openai", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    other = event("batch.completed")
    ignored = await receiver.post("/webhooks/openai", content=other, headers=signed_headers(other))
    assert ignored.json() == {"received": True, "ignored": "batch.completed"}


@pytest.mark.parametrize("tamper", ["signature", "secret", "stale", "body", "missing"])
async def test_unverifiable_webhooks_are_refused(receiver: httpx.AsyncClient, tamper: str) -> None:
    body = event()
    headers = signed_headers(body)
    if tamper == "signature":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    elif tamper == "secret":
        other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        headers = signed_headers(body, secret=other)
    elif tamper == "stale":  # a replay of an old delivery
        headers = signed_headers(body, timestamp=int(time.time()) - 600)
    elif tamper == "body":
        body = event(response_id="resp_other")
    else:
        del headers["webhook-signature"]
    response = await receiver.post("/webhooks/openai", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_without_a_secret_the_endpoint_does_not_exist(api: httpx.AsyncClient) -> None:
    body = event()
    response = await api.post("/webhooks/openai", content=body, headers=signed_headers(body))
    assert response.status_code == 404
