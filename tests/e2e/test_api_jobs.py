"""/api/jobs over real ASGI with the embedded worker: every endpoint and its errors."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import Keys, auth, wait_for


async def create(api: httpx.AsyncClient, body: dict[str, object], **kw: object) -> httpx.Response:
    return await api.post("/api/jobs", json=body, **kw)  # type: ignore[arg-type]


async def until_done(api: httpx.AsyncClient, job_id: str, **kw: object) -> dict[str, object]:
    async def done() -> dict[str, object] | None:
        body = (await api.get(f"/api/jobs/{job_id}", **kw)).json()  # type: ignore[arg-type]
        return body if body["status"] in ("succeeded", "failed", "canceled") else None

    found: dict[str, object] = await wait_for(done)
    return found


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


async def test_create_answers_at_once_with_id_and_eta(api: httpx.AsyncClient) -> None:
    response = await create(api, {"type": "noop", "payload": {"echo": 1}})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["estimated_completion_seconds"] > 0
    assert response.headers["location"] == f"/api/jobs/{body['job_id']}"
    done = await until_done(api, body["job_id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {"echo": 1, "slept_seconds": 0.0}
    assert done["attempts"] == 1
    assert done["completed_at"]
    assert done["started_at"]


async def test_get_shows_the_job_with_usage_of_its_model_calls(api: httpx.AsyncClient) -> None:
    job_id = (await create(api, {"type": "test_ask_model"})).json()["job_id"]
    done = await until_done(api, job_id)
    assert done["status"] == "succeeded"
    assert done["usage"]["model_calls"] == 1
    assert done["usage"]["input_tokens"] > 0
    assert done["usage"]["cost_usd"] > 0
    assert done["usage"]["saved_usd"] == 0  # no deadline: the standard window
    assert done["deadline_at"] is None
    assert done["estimated_completion_seconds"] is None
    calls = (await api.get(f"/api/jobs/{job_id}/model-calls")).json()["items"]
    assert calls[0]["response_id"].startswith("resp_")
    assert calls[0]["status"] == "completed"
    assert calls[0]["completion_window"] == "soonest"
    assert calls[0]["cost_usd"] == done["usage"]["cost_usd"]


async def test_a_deadline_takes_a_discounted_window_and_shows_the_saving(
    api: httpx.AsyncClient,
) -> None:
    created = await create(api, {"type": "test_ask_model", "deadline_seconds": 9 * 3600})
    done = await until_done(api, created.json()["job_id"])
    assert done["status"] == "succeeded"
    assert done["deadline_at"]
    usage = done["usage"]
    assert usage["saved_usd"] == pytest.approx(usage["list_cost_usd"] * 0.4)
    assert usage["cost_usd"] == pytest.approx(usage["list_cost_usd"] * 0.6)


async def test_idempotency_key_in_header_or_body_returns_the_same_job(
    api: httpx.AsyncClient,
) -> None:
    body = {"type": "noop", "payload": {"echo": "once"}}
    first = await create(api, body, headers={"Idempotency-Key": "order-17"})
    again = await create(api, {**body, "idempotency_key": "order-17"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    listed = (await api.get("/api/jobs")).json()["items"]
    assert len(listed) == 1


async def test_an_idempotency_key_reused_for_another_request_is_refused(
    api: httpx.AsyncClient,
) -> None:
    await create(api, {"type": "noop", "payload": {"echo": 1}, "idempotency_key": "k"})
    response = await create(api, {"type": "noop", "payload": {"echo": 2}, "idempotency_key": "k"})
    assert_problem(response, 422, "idempotency_key")
    mismatch = await create(
        api, {"type": "noop", "idempotency_key": "a"}, headers={"Idempotency-Key": "b"}
    )
    assert_problem(mismatch, 422, "idempotency_key")
    assert len((await api.get("/api/jobs")).json()["items"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "no_such_type"}, "type"),
        ({"type": "noop", "payload": {"sleep_seconds": -1}}, "payload.sleep_seconds"),
        ({"type": "noop", "payload": {"surprise": 1}}, "payload.surprise"),
        (
            {"type": "classify_leads", "payload": {"leads": [], "labels": ["a", "b"]}},
            "payload.leads",
        ),
        (
            {"type": "generate_report", "payload": {"user_id": "u", "period": "2026-13"}},
            "payload.period",
        ),
        (
            {"type": "summarize_documents", "payload": {"document_ids": ["missing"]}},
            "payload.document_ids.0",
        ),
        ({"type": "noop", "priority": 1000}, "priority"),
        ({"type": "noop", "run_at": "2026-01-01T00:00:00"}, "run_at"),
        ({"type": "noop", "callback_url": "ftp://x"}, "callback_url"),
        ({"type": "noop", "unknown_field": 1}, "unknown_field"),
        ({"type": "noop", "deadline_seconds": 0}, "deadline_seconds"),
        ({"type": "noop", "deadline_seconds": 8 * 86400}, "deadline_seconds"),
        ({"payload": {}}, "type"),
    ],
)
async def test_bad_requests_are_refused_with_field_detail_and_nothing_written(
    api: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    assert_problem(await create(api, body), 422, field)
    assert (await api.get("/api/jobs")).json()["items"] == []


async def test_malformed_json_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/jobs", content=b'{"type": "noop",', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 400, "body")
    assert body["title"] == "Malformed JSON"


async def test_oversize_body_is_a_413(api: httpx.AsyncClient) -> None:
    huge = {"type": "noop", "payload": {"echo": "x" * (3 * 1024 * 1024)}}
    assert_problem(await create(api, huge), 413)
    assert (await api.get("/api/jobs")).json()["items"] == []


async def test_every_endpoint_needs_a_valid_key(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/jobs"),
        ("POST", "/api/jobs"),
        ("GET", "/api/jobs/x"),
        ("POST", "/api/jobs/x/cancel"),
        ("POST", "/api/jobs/x/retry"),
        ("GET", "/api/jobs/x/events"),
        ("GET", "/api/job-types"),
        ("POST", "/api/documents"),
        ("GET", "/api/documents/x"),
        ("POST", "/api/summaries/quick"),
        ("POST", "/api/summaries/batch"),
        ("GET", "/api/usage"),
        ("GET", "/api/owners/alice/limits"),
        ("PUT", "/api/owners/alice/limits"),
        ("GET", "/api/rate-limits"),
        ("GET", "/api/jobs/x/deliveries"),
        ("POST", "/api/deliveries/x/redeliver"),
        ("GET", "/api/webhooks/secret"),
        ("POST", "/api/webhooks/secret/rotate"),
        ("GET", "/api/webhook-endpoints"),
        ("POST", "/api/webhook-endpoints"),
        ("DELETE", "/api/webhook-endpoints/x"),
        ("GET", "/api/notifications/channels"),
        ("PUT", "/api/notifications/channels"),
    ]:
        missing = await api.request(method, path, headers={"Authorization": ""})
        assert_problem(missing, 401)
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await api.request(method, path, headers=auth("bb_not_a_key"))
        assert_problem(wrong, 401)
    assert_problem(await api.get("/api/jobs", headers={"Authorization": "Basic abc"}), 401)


async def test_owners_never_see_each_others_jobs(api: httpx.AsyncClient, keys: Keys) -> None:
    job_id = (
        await create(api, {"type": "test_slow_no_timeout", "payload": {"seconds": 30}})
    ).json()["job_id"]
    as_bob = auth(keys.bob)
    for method, path in [
        ("GET", f"/api/jobs/{job_id}"),
        ("GET", f"/api/jobs/{job_id}/events"),
        ("POST", f"/api/jobs/{job_id}/cancel"),
        ("POST", f"/api/jobs/{job_id}/retry"),
        ("GET", f"/api/jobs/{job_id}/model-calls"),
    ]:
        assert_problem(await api.request(method, path, headers=as_bob), 404)
    assert (await api.get("/api/jobs", headers=as_bob)).json()["items"] == []
    # An admin sees everyone's jobs, and can narrow them to one owner.
    as_admin = auth(keys.admin)
    assert (await api.get(f"/api/jobs/{job_id}", headers=as_admin)).status_code == 200
    listed = (await api.get("/api/jobs?owner=alice", headers=as_admin)).json()["items"]
    assert [j["job_id"] for j in listed] == [job_id]
    assert (await api.get("/api/jobs?owner=bob", headers=as_admin)).json()["items"] == []
    # A member's owner filter cannot widen what they see.
    assert (await api.get("/api/jobs?owner=alice", headers=as_bob)).json()["items"] == []
    await api.post(f"/api/jobs/{job_id}/cancel")


async def test_unknown_job_is_a_404(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/api/jobs/01234567-0000-7000-8000-000000000000"), 404)
    assert_problem(await api.get("/api/jobs/not-even-an-id"), 404)


async def test_list_filters_and_paginates(api: httpx.AsyncClient) -> None:
    ids = [(await create(api, {"type": "noop"})).json()["job_id"] for _ in range(5)]
    bad = (await create(api, {"type": "test_broken"})).json()["job_id"]
    for job_id in [*ids, bad]:
        await until_done(api, job_id)
    failed = (await api.get("/api/jobs?status=failed")).json()["items"]
    assert [j["job_id"] for j in failed] == [bad]
    assert failed[0]["error"]["kind"] == "invalid_input"
    seen: list[str] = []
    cursor = ""
    while True:
        page = (await api.get(f"/api/jobs?type=noop&limit=2{cursor}")).json()
        seen += [j["job_id"] for j in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == sorted(ids, reverse=True)
    assert_problem(await api.get("/api/jobs?status=nonsense"), 422, "query.status")
    assert_problem(await api.get("/api/jobs?limit=0"), 422, "query.limit")
    assert_problem(await api.get("/api/jobs?cursor=@@@"), 422, "query.cursor")


async def test_cancel_pending_and_running_jobs(api: httpx.AsyncClient) -> None:
    next_year = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    later = (await create(api, {"type": "noop", "run_at": next_year})).json()
    assert later["estimated_completion_seconds"] > 365 * 24 * 3600
    canceled = await api.post(f"/api/jobs/{later['job_id']}/cancel")
    assert canceled.status_code == 202
    assert canceled.json()["status"] == "canceled"
    running_id = (
        await create(api, {"type": "test_slow_no_timeout", "payload": {"seconds": 30}})
    ).json()["job_id"]
    await wait_for(lambda: _status_is(api, running_id, "running"))
    flagged = (await api.post(f"/api/jobs/{running_id}/cancel")).json()
    assert flagged["cancel_requested"] is True
    assert (await until_done(api, running_id))["status"] == "canceled"
    assert_problem(await api.post(f"/api/jobs/{running_id}/cancel"), 409)


async def _status_is(api: httpx.AsyncClient, job_id: str, status: str) -> bool:
    return bool((await api.get(f"/api/jobs/{job_id}")).json()["status"] == status)


async def test_retry_a_failed_job(api: httpx.AsyncClient) -> None:
    job_id = (await create(api, {"type": "test_broken"})).json()["job_id"]
    assert (await until_done(api, job_id))["status"] == "failed"
    retried = await api.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 202
    assert retried.json()["status"] == "pending"
    assert (await until_done(api, job_id))["status"] == "failed"
    kinds = [e["kind"] for e in (await api.get(f"/api/jobs/{job_id}/events")).json()["items"]]
    assert kinds == ["created", "started", "failed", "retried", "started", "failed"]
    ok_id = (await create(api, {"type": "noop"})).json()["job_id"]
    await until_done(api, ok_id)
    assert_problem(await api.post(f"/api/jobs/{ok_id}/retry"), 409)


async def test_events_are_the_timeline_and_can_be_followed(api: httpx.AsyncClient) -> None:
    job_id = (await create(api, {"type": "noop"})).json()["job_id"]
    await until_done(api, job_id)
    events = (await api.get(f"/api/jobs/{job_id}/events")).json()["items"]
    assert [(e["kind"], e["to_status"]) for e in events] == [
        ("created", "pending"),
        ("started", "running"),
        ("succeeded", "succeeded"),
    ]
    after_first = (await api.get(f"/api/jobs/{job_id}/events?after={events[0]['id']}")).json()
    assert [e["kind"] for e in after_first["items"]] == ["started", "succeeded"]


async def test_eta_counts_the_queue_ahead_and_priority(api_only: httpx.AsyncClient) -> None:
    # No history and no live worker: noop's declared 0.1 s per job, one at a time.
    etas = [
        (await create(api_only, {"type": "noop"})).json()["estimated_completion_seconds"]
        for _ in range(3)
    ]
    assert etas == [0.1, 0.2, 0.3]
    urgent = await create(api_only, {"type": "noop", "priority": 10})
    assert urgent.json()["estimated_completion_seconds"] == 0.1
    later = await create(api_only, {"type": "noop", "run_at": "2031-01-01T00:00:00Z"})
    assert later.json()["estimated_completion_seconds"] > 3 * 365 * 24 * 3600


async def test_job_types_list_their_schemas(api: httpx.AsyncClient) -> None:
    types = {t["name"]: t for t in (await api.get("/api/job-types")).json()["items"]}
    assert {"summarize_documents", "classify_leads", "generate_report"} <= set(types)
    schema = types["summarize_documents"]["input_schema"]
    assert schema["properties"]["document_ids"]["maxItems"] == 200
    assert types["classify_leads"]["output_schema"]["properties"]["classifications"]
    single = (await api.get("/api/job-types/generate_report")).json()
    assert single["name"] == "generate_report"
    assert_problem(await api.get("/api/job-types/nope"), 404)


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"migrations": "current", "database": "ok"}


async def test_unknown_route_is_a_problem_too(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/api/nothing-here"), 404)
    assert_problem(await api.delete("/api/jobs"), 405)


async def test_a_database_gone_away_is_a_503_not_a_500(
    tmp_path: Path, sqlite_template: Path, keys: Keys
) -> None:
    from backburner.runtime import create_app
    from tests.conftest import fast_settings

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "db.sqlite")
    app = create_app(
        fast_settings(f"sqlite:///{data}/db.sqlite"), embed_worker=False, migrate_on_start=False
    )
    async with app.router.lifespan_context(app):
        # The service started on its database (its keys checked there); now the database
        # is gone, and so are the connections to it.
        data.rename(tmp_path / "moved")
        await app.state.services.db.close()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            response = await api.get("/api/jobs", headers=auth(keys.alice))
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "5"
            assert (await api.get("/readyz")).status_code == 503


async def test_the_eta_scales_with_the_size_of_the_input(api_only: httpx.AsyncClient) -> None:
    """No history yet: a type's prior (classify_leads: 20 s and 0.1 s a lead) times the
    size, with the jobs ahead draining first."""
    labels = ["hot", "cold"]

    def leads(count: int) -> list[dict[str, str]]:
        return [{"id": str(n), "notes": "wants a demo"} for n in range(count)]

    big = await create(
        api_only, {"type": "classify_leads", "payload": {"leads": leads(1000), "labels": labels}}
    )
    assert big.json()["estimated_completion_seconds"] == pytest.approx(120.0)
    small = await create(
        api_only, {"type": "classify_leads", "payload": {"leads": leads(10), "labels": labels}}
    )
    # One job ahead on one slot: it waits a run of its own size, then runs.
    assert small.json()["estimated_completion_seconds"] == pytest.approx(42.0)
    text = "A sentence of the report. " * 4000  # 104,000 characters
    doc = await api_only.post("/api/documents", files={"file": ("r.txt", text.encode())})
    summary = await create(
        api_only,
        {"type": "summarize_documents", "payload": {"document_ids": [doc.json()["document_id"]]}},
    )
    # 30 s and 0.0001 s a character, after the two classifications' turns.
    assert summary.json()["estimated_completion_seconds"] == pytest.approx((30 + 10.4) * 3, abs=1)
