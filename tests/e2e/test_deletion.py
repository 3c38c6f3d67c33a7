"""Deleting a job or a document: everything stored of it goes (its usage stays, without
content), its responses are deleted at the provider, another owner cannot, and each
deletion is audited."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import sqlalchemy as sa

from backburner.config import Settings
from backburner.runtime import create_app
from backburner.store import Database
from backburner.store.schema import job_events, job_steps, jobs, provider_calls
from tests.conftest import Keys, auth, wait_for
from tests.e2e.test_api_documents import ARTICLE, upload
from tests.e2e.test_api_jobs import assert_problem, create, until_done
from tests.servers import emulated, emulator_stats


@contextlib.asynccontextmanager
async def service_on_emulator(
    settings: Settings, key: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with emulated() as (provider, base):
        app = create_app(settings, embed_worker=True, migrate_on_start=False, provider=provider)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers=auth(key)
            ) as client:
                yield client, base


async def rows_of(db: Database, job_id: str) -> dict[str, int]:
    counts = {}
    async with db.read() as conn:
        for table in (jobs, job_events, job_steps):
            column = table.c.id if table is jobs else table.c.job_id
            query = sa.select(sa.func.count()).select_from(table).where(column == job_id)
            counts[table.name] = (await conn.execute(query)).scalar_one()
    return counts


async def test_a_deleted_job_leaves_only_its_usage(
    settings: Settings, keys: Keys, db: Database
) -> None:
    async with service_on_emulator(settings, keys.alice) as (api, base):
        job_id = (await create(api, {"type": "test_ask_model"})).json()["job_id"]
        assert (await until_done(api, job_id))["status"] == "succeeded"
        assert_problem(await api.delete(f"/api/jobs/{job_id}", headers=auth(keys.bob)), 404)
        assert (await api.delete(f"/api/jobs/{job_id}")).status_code == 204
        assert_problem(await api.get(f"/api/jobs/{job_id}"), 404)
        assert_problem(await api.delete(f"/api/jobs/{job_id}"), 404)
        assert await rows_of(db, job_id) == {"jobs": 0, "job_events": 0, "job_steps": 0}
        async with db.read() as conn:
            call = (
                (
                    await conn.execute(
                        sa.select(provider_calls).where(provider_calls.c.job_id == job_id)
                    )
                )
                .mappings()
                .one()
            )
        assert call["output"] is None
        assert (call["owner"], call["job_type"]) == ("alice", "test_ask_model")
        (line,) = (await api.get("/api/usage")).json()["items"]
        assert (line["type"], line["model_calls"]) == ("test_ask_model", 1)
        assert (await emulator_stats(base))["responses_deleted"] == 1
        audit = (await api.get("/api/audit", params={"target": job_id})).json()["items"]
        assert audit[0]["action"] == "job.deleted"
        assert audit[0]["detail"] == {"type": "test_ask_model", "provider_responses": 1}


async def test_deleting_a_job_that_has_not_ended_cancels_it_first(
    api: httpx.AsyncClient, db: Database
) -> None:
    later = (await create(api, {"type": "noop", "run_at": "2030-01-01T00:00:00Z"})).json()
    running = (
        await create(api, {"type": "test_slow_no_timeout", "payload": {"seconds": 30}})
    ).json()

    async def is_running() -> bool:
        return (await api.get(f"/api/jobs/{running['job_id']}")).json()["status"] == "running"

    await wait_for(is_running)
    for job in (later, running):
        assert (await api.delete(f"/api/jobs/{job['job_id']}")).status_code == 204
        assert (await rows_of(db, job["job_id"]))["jobs"] == 0
        actions = [
            e["action"]
            for e in (await api.get("/api/audit", params={"target": job["job_id"]})).json()["items"]
        ]
        assert actions[:2] == ["job.deleted", "job.canceled"]


async def test_a_deleted_document_is_gone_for_new_jobs(api: httpx.AsyncClient, keys: Keys) -> None:
    document = (await upload(api, "a.txt", ARTICLE.encode())).json()["document_id"]
    assert_problem(await api.delete(f"/api/documents/{document}", headers=auth(keys.bob)), 404)
    assert (await api.delete(f"/api/documents/{document}")).status_code == 204
    assert_problem(await api.get(f"/api/documents/{document}"), 404)
    assert_problem(await api.delete(f"/api/documents/{document}"), 404)
    refused = await create(
        api, {"type": "summarize_documents", "payload": {"document_ids": [document]}}
    )
    assert_problem(refused, 422, "payload.document_ids.0")
    audit = (await api.get("/api/audit", params={"target": document})).json()["items"]
    assert [e["action"] for e in audit] == ["document.deleted", "document.uploaded"]
