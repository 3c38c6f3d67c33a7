"""Ratings of job results: the owner's keys rate a finished job (again replaces), other
owners see nothing, odd input is refused, and the sums per type and model reach the API,
/metrics and the audit trail."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from backburner.config import Settings
from backburner.store import Database
from backburner.store.schema import audit_events, job_feedback
from tests.conftest import Keys, auth, serving
from tests.e2e.test_api_jobs import assert_problem, until_done


async def finished_job(api: httpx.AsyncClient) -> str:
    made = await api.post("/api/jobs", json={"type": "noop", "payload": {"echo": 1}})
    job_id: str = made.json()["job_id"]
    await until_done(api, job_id)
    return job_id


async def test_a_rating_is_kept_replaced_summed_and_audited(
    api: httpx.AsyncClient, keys: Keys, db: Database
) -> None:
    job_id = await finished_job(api)
    first = await api.post(
        f"/api/jobs/{job_id}/feedback", json={"rating": "up", "comment": "spot on"}
    )
    assert first.status_code == 200, first.text
    assert first.json()["model"] == "gpt-4.1-mini"
    again = await api.post(f"/api/jobs/{job_id}/feedback", json={"rating": "down"})
    assert again.json()["rating"] == "down"
    listed = (await api.get(f"/api/jobs/{job_id}/feedback")).json()["items"]
    assert [(f["rating"], f["comment"]) for f in listed] == [("down", None)]
    totals = (await api.get("/api/feedback")).json()["items"]
    assert totals == [
        {"type": "noop", "model": "gpt-4.1-mini", "up": 0, "down": 1, "share_up": 0.0}
    ]
    # Bob (another owner) sees no ratings of alice's jobs and cannot rate them.
    bob = auth(keys.bob)
    assert_problem(
        await api.post(f"/api/jobs/{job_id}/feedback", json={"rating": "up"}, headers=bob), 404
    )
    assert_problem(await api.get(f"/api/jobs/{job_id}/feedback", headers=bob), 404)
    assert (await api.get("/api/feedback", headers=bob)).json()["items"] == []
    metrics = (await api.get("/metrics", headers=auth(keys.admin))).text
    assert 'backburner_job_ratings{model="gpt-4.1-mini",rating="down",type="noop"} 1.0' in metrics
    async with db.read() as conn:
        rated = (
            await conn.execute(
                sa.select(sa.func.count()).where(audit_events.c.action == "job.rated")
            )
        ).scalar_one()
        stored_comment = (await conn.execute(sa.select(job_feedback.c.comment))).scalar_one()
    assert rated == 2
    assert stored_comment is None


async def test_comments_are_sealed_at_rest(api: httpx.AsyncClient, db: Database) -> None:
    job_id = await finished_job(api)
    await api.post(f"/api/jobs/{job_id}/feedback", json={"rating": "up", "comment": "secret words"})
    async with db.engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT comment FROM job_feedback"))).scalar_one()
    assert "secret" not in raw
    assert raw.startswith("bbx1:")


async def test_odd_ratings_and_unfinished_jobs_are_refused(
    settings: Settings, keys: Keys, db: Database
) -> None:
    async with serving(settings, keys.alice, embed_worker=False) as api:
        queued = (await api.post("/api/jobs", json={"type": "noop", "payload": {}})).json()[
            "job_id"
        ]
        url = f"/api/jobs/{queued}/feedback"
        assert_problem(await api.post(url, json={"rating": "up"}), 409)
        for body, field in [
            ({"rating": "meh"}, "rating"),
            ({"rating": "up", "comment": "x" * 2001}, "comment"),
            ({"rating": "up", "stars": 5}, "stars"),
            ({}, "rating"),
        ]:
            assert_problem(await api.post(url, json=body), 422, field)
        answer = await api.post(url, json={"rating": "up", "comment": "a\u0000b"})
        assert answer.status_code in (400, 422)
        assert_problem(await api.post("/api/jobs/nope/feedback", json={"rating": "up"}), 404)
    async with db.read() as conn:
        stored = (
            await conn.execute(sa.select(sa.func.count()).select_from(job_feedback))
        ).scalar_one()
    assert stored == 0
