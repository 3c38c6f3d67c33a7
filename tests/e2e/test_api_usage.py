"""/api/usage, /api/owners/{owner}/limits and /api/rate-limits over real ASGI."""

from __future__ import annotations

import httpx
import pytest

from backburner.config import Settings
from tests.conftest import Keys, auth, serving, wait_for
from tests.e2e.test_api_jobs import assert_problem, create, until_done


async def test_usage_shows_an_owner_its_own_cost_by_type(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    first = (await create(api, {"type": "test_ask_model"})).json()["job_id"]
    await until_done(api, first)
    bobs = (await create(api, {"type": "test_ask_model"}, headers=auth(keys.bob))).json()
    await until_done(api, bobs["job_id"], headers=auth(keys.bob))
    report = (await api.get("/api/usage", params={"owner": "bob"})).json()
    # A member sees only their own usage, whatever owner it asks for.
    assert [(i["owner"], i["type"], i["model_calls"]) for i in report["items"]] == [
        ("alice", "test_ask_model", 1)
    ]
    job_cost = (await api.get(f"/api/jobs/{first}")).json()["usage"]["cost_usd"]
    assert report["cost_usd"] == pytest.approx(job_cost)
    assert report["budget"]["owner"] == "alice"
    assert report["budget"]["spent_usd"] == pytest.approx(job_cost)
    assert report["budget"]["monthly_budget_usd"] is None
    everyone = (await api.get("/api/usage", headers=auth(keys.admin))).json()
    assert {i["owner"] for i in everyone["items"]} == {"alice", "bob"}
    assert everyone["budget"] is None
    later = (await api.get("/api/usage", params={"since": "2100-01-01T00:00:00Z"})).json()
    assert later["items"] == []
    assert_problem(await api.get("/api/usage", params={"since": "yesterday"}), 422, "query.since")


async def test_admins_set_owner_limits_and_a_spent_budget_fails_new_work(
    settings: Settings, keys: Keys
) -> None:
    async with serving(settings, keys.admin, embed_worker=True) as admin:
        put = await admin.put("/api/owners/alice/limits", json={"monthly_budget_usd": 0.000000001})
        assert put.status_code == 200, put.text
        assert put.json()["monthly_budget_usd"] == 1e-9
        assert put.json()["max_running"] is None
        as_alice = {"headers": auth(keys.alice)}
        first = (await create(admin, {"type": "test_ask_model"}, **as_alice)).json()
        assert (await until_done(admin, first["job_id"], **as_alice))["status"] == "succeeded"
        second = (await create(admin, {"type": "test_ask_model"}, **as_alice)).json()
        failed = await until_done(admin, second["job_id"], **as_alice)
        assert failed["status"] == "failed"
        assert failed["error"]["kind"] == "budget_exhausted"
        budget = (await admin.get("/api/usage", params={"owner": "alice"})).json()["budget"]
        assert budget["remaining_usd"] == 0
        own = await admin.get("/api/owners/alice/limits", headers=auth(keys.alice))
        assert own.json()["monthly_budget_usd"] == 1e-9


async def test_limits_and_rate_limiter_are_for_admins_and_bodies_are_checked(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    assert_problem(await api.put("/api/owners/alice/limits", json={"max_running": 5}), 403)
    assert_problem(await api.get("/api/owners/bob/limits"), 403)
    assert_problem(await api.get("/api/rate-limits"), 403)
    admin = auth(keys.admin)
    for body, field in [
        ({"max_running": 0}, "max_running"),
        ({"monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"max_running": 2, "extra": 1}, "extra"),
    ]:
        assert_problem(
            await api.put("/api/owners/alice/limits", json=body, headers=admin), 422, field
        )
    assert (await api.get("/api/owners/alice/limits")).json()["max_running"] is None
    assert (await api.get("/api/rate-limits", headers=admin)).json() == []


async def test_the_rate_limiter_state_is_visible_once_used(settings: Settings, keys: Keys) -> None:
    limited = settings.model_copy(update={"rate_limits": {"*": {"rpm": 50, "tpm": 100_000}}})
    async with serving(limited, keys.admin, embed_worker=True) as admin:
        job = (await create(admin, {"type": "test_ask_model"})).json()
        await until_done(admin, job["job_id"])

        async def bucket() -> list[dict[str, object]] | None:
            found = (await admin.get("/api/rate-limits")).json()
            return found or None

        (state,) = await wait_for(bucket)
    assert state["key"].endswith(":gpt-4.1-mini")
    assert state["requests"] == pytest.approx(49, abs=0.5)
    assert 0 < state["tokens"] <= 100_000
    assert state["scale"] == 1.0
