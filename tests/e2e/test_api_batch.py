"""POST /api/jobs/batch: many jobs in one request and one transaction, all or none, each
validated as a single create is, with its own idempotency key."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from backburner.store import Database
from backburner.store.schema import audit_events, jobs
from tests.conftest import Keys, auth
from tests.e2e.test_api_jobs import assert_problem, until_done


async def batch(api: httpx.AsyncClient, items: list[dict[str, Any]]) -> httpx.Response:
    return await api.post("/api/jobs/batch", json={"jobs": items})


async def stored(db: Database) -> int:
    async with db.read() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar_one()
    return int(count)


async def test_a_batch_is_queued_in_order_and_runs(api: httpx.AsyncClient, db: Database) -> None:
    items = [
        {"type": "noop", "payload": {"echo": index}, "idempotency_key": f"k{index}"}
        for index in range(5)
    ]
    answer = await batch(api, items)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert [entry["created"] for entry in body["jobs"]] == [True] * 5
    assert body["estimated_completion_seconds"] is not None
    ids = [entry["job_id"] for entry in body["jobs"]]
    for index, job_id in enumerate(ids):
        done = await until_done(api, job_id)
        assert done["status"] == "succeeded"
        assert done["result"] == {"echo": index, "slept_seconds": 0.0}
        assert done["idempotency_key"] == f"k{index}"
    # Sent again: the same jobs, none made twice.
    again = await batch(api, items)
    assert again.status_code == 200
    assert [entry["job_id"] for entry in again.json()["jobs"]] == ids
    assert not any(entry["created"] for entry in again.json()["jobs"])
    assert await stored(db) == 5
    async with db.read() as conn:
        audited = (
            await conn.execute(
                sa.select(sa.func.count()).where(audit_events.c.action == "job.created")
            )
        ).scalar_one()
    assert audited == 5


async def test_one_bad_item_refuses_the_batch_naming_each(
    api_only: httpx.AsyncClient, db: Database
) -> None:
    answer = await batch(
        api_only,
        [
            {"type": "noop"},
            {"type": "no_such_type"},
            {"type": "noop", "payload": {"sleep_seconds": -1}},
            {"type": "noop", "callback_url": "http://127.0.0.1/hook"},
            {"type": "summarize_documents", "payload": {"document_ids": ["missing"]}},
        ],
    )
    problem = assert_problem(answer, 422)
    fields = {error["field"] for error in problem["errors"]}
    assert fields == {
        "jobs.1.type",
        "jobs.2.payload.sleep_seconds",
        "jobs.3.callback_url",
        "jobs.4.payload.document_ids.0",
    }
    assert "4 of 5 jobs are invalid" in problem["detail"]
    assert await stored(db) == 0  # nothing half stored


async def test_keys_repeated_in_a_batch_or_reused_are_refused(
    api_only: httpx.AsyncClient, db: Database
) -> None:
    twice = await batch(
        api_only,
        [{"type": "noop", "idempotency_key": "a"}, {"type": "noop", "idempotency_key": "a"}],
    )
    assert_problem(twice, 422, "jobs.1.idempotency_key")
    first = await batch(api_only, [{"type": "noop", "idempotency_key": "b"}])
    assert first.status_code == 201
    reused = await batch(
        api_only,
        [
            {"type": "noop", "idempotency_key": "fresh"},
            {"type": "noop", "payload": {"echo": "other"}, "idempotency_key": "b"},
        ],
    )
    assert_problem(reused, 422, "jobs.1.idempotency_key")
    assert await stored(db) == 1  # the fresh one was not stored either: all or none


async def test_batch_limits_and_hostile_bodies(api_only: httpx.AsyncClient, db: Database) -> None:
    assert_problem(await batch(api_only, []), 422, "jobs")
    assert_problem(await batch(api_only, [{"type": "noop"}] * 1001), 422, "jobs")
    nul = await api_only.post(
        "/api/jobs/batch",
        content=b'{"jobs": [{"type": "noop", "payload": {"echo": "a\\u0000b"}}]}',
        headers={"content-type": "application/json"},
    )
    assert nul.status_code in (400, 422)
    huge = await batch(api_only, [{"type": "noop", "priority": 10**30}])
    assert_problem(huge, 422)
    assert await stored(db) == 0


async def test_other_owners_see_none_of_a_batch(api_only: httpx.AsyncClient, keys: Keys) -> None:
    answer = await batch(api_only, [{"type": "noop"}, {"type": "noop"}])
    for entry in answer.json()["jobs"]:
        theirs = await api_only.get(f"/api/jobs/{entry['job_id']}", headers=auth(keys.bob))
        assert_problem(theirs, 404)
    # Bob's own key names his own job, not alice's.
    mine = await api_only.post(
        "/api/jobs/batch",
        json={"jobs": [{"type": "noop", "idempotency_key": "same"}]},
        headers=auth(keys.alice),
    )
    his = await api_only.post(
        "/api/jobs/batch",
        json={"jobs": [{"type": "noop", "idempotency_key": "same"}]},
        headers=auth(keys.bob),
    )
    assert his.status_code == 201
    assert his.json()["jobs"][0]["job_id"] != mine.json()["jobs"][0]["job_id"]
