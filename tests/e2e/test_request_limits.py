"""Limits an ordinary member cannot talk past: a request rate per key shared by every API
process, throttled guessing of keys per address, and a cap on webhook endpoints."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import httpx

from backburner.config import Settings
from tests.conftest import Keys, auth
from tests.e2e.test_api_jobs import assert_problem


@contextlib.asynccontextmanager
async def api_process(
    settings: Settings, address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """One API process (its own app, its own memory) on the shared database, called from
    `address`."""
    from backburner.runtime import create_app

    app = create_app(settings, embed_worker=False, migrate_on_start=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_a_keys_rate_is_shared_by_every_api_process(settings: Settings, keys: Keys) -> None:
    limited = settings.model_copy(update={"api_requests_per_minute": 60})
    started = time.monotonic()
    async with api_process(limited) as one, api_process(limited) as two:
        answers = [
            await (one if n % 2 else two).get("/api/jobs", headers=auth(keys.alice))
            for n in range(80)
        ]
        allowed = sum(a.status_code == 200 for a in answers)
        # A minute's worth is the burst; the bucket refills at one a second meanwhile.
        assert 60 <= allowed <= 60 + int(time.monotonic() - started) + 2
        refused = next(a for a in answers if a.status_code == 429)
        assert_problem(refused, 429)
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        # Another owner's key has a bucket of its own.
        assert (await one.get("/api/jobs", headers=auth(keys.bob))).status_code == 200


async def test_an_admin_sets_an_owners_own_rate(settings: Settings, keys: Keys) -> None:
    async with api_process(settings) as api:
        put = await api.put(
            "/api/owners/alice/limits",
            json={"requests_per_minute": 3},
            headers=auth(keys.admin),
        )
        assert put.status_code == 200
        assert put.json()["requests_per_minute"] == 3
        codes = [
            (await api.get("/api/jobs", headers=auth(keys.alice))).status_code for _ in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        assert (await api.get("/api/jobs", headers=auth(keys.bob))).status_code == 200
        # A member may not raise it.
        raised = await api.put(
            "/api/owners/alice/limits", json={"requests_per_minute": 0}, headers=auth(keys.bob)
        )
        assert_problem(raised, 403)


async def test_guessing_keys_is_throttled_per_address(settings: Settings, keys: Keys) -> None:
    guarded = settings.model_copy(update={"auth_failures_per_minute": 5})
    attacker_process = api_process(guarded, "203.0.113.9")
    async with attacker_process as attacker, api_process(guarded, "198.51.100.7") as neighbour:
        for n in range(5):
            guess = await attacker.get("/api/jobs", headers=auth(f"bb_guess{n}"))
            assert_problem(guess, 401)
        assert_problem(await attacker.get("/api/jobs", headers=auth("bb_guess5")), 429)
        # Even a right guess from that address learns nothing now.
        right = await attacker.get("/api/jobs", headers=auth(keys.alice))
        assert_problem(right, 429)
        assert int(right.headers["Retry-After"]) > 0
        # Another address is not affected.
        assert (await neighbour.get("/api/jobs", headers=auth(keys.alice))).status_code == 200


async def test_an_owner_has_at_most_the_allowed_webhook_endpoints(
    settings: Settings, keys: Keys
) -> None:
    capped = settings.model_copy(update={"max_webhook_endpoints": 3})
    async with api_process(capped) as api:
        for n in range(3):
            made = await api.post(
                "/api/webhook-endpoints",
                json={"url": f"https://hooks.example.com/{n}"},
                headers=auth(keys.alice),
            )
            assert made.status_code == 201, made.text
        fourth = await api.post(
            "/api/webhook-endpoints",
            json={"url": "https://hooks.example.com/3"},
            headers=auth(keys.alice),
        )
        assert "at most 3" in assert_problem(fourth, 409)["detail"]
        listed = await api.get("/api/webhook-endpoints", headers=auth(keys.alice))
        assert len(listed.json()["items"]) == 3
        # The cap is per owner.
        bobs = await api.post(
            "/api/webhook-endpoints",
            json={"url": "https://hooks.example.com/0"},
            headers=auth(keys.bob),
        )
        assert bobs.status_code == 201
