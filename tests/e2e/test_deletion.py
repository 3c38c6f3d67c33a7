"""Deleting a job or a document: everything stored of it goes (its usage stays, without
content), its responses are deleted at the provider, another owner cannot, and each
deletion is audited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from backburner.config import Settings
from backburner.providers.offline import OfflineProvider
from backburner.runtime import create_app
from backburner.store import Database, NewJob
from backburner.store import audit as audit_store
from backburner.store import documents as documents_store
from backburner.store import jobs as jobs_store
from backburner.store import webhooks as webhooks_store
from backburner.store.schema import (
    documents,
    job_events,
    job_feedback,
    job_steps,
    jobs,
    owner_channels,
    owner_limits,
    provider_calls,
    webhook_endpoints,
    webhook_receipts,
)
from tests.conftest import Keys, auth, wait_for
from tests.e2e.processes import child_env, run_cli
from tests.e2e.test_api_documents import ARTICLE, upload
from tests.e2e.test_api_jobs import assert_problem, create, until_done
from tests.running import worker_on
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


async def test_workers_delete_what_is_past_retention(db: Database, settings: Settings) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    ids = {}
    for name, ended in (("old", old), ("recent", recent)):
        job, _ = await jobs_store.insert_job(
            db,
            NewJob(owner="alice", type="noop", payload={}, max_attempts=1, timeout_seconds=60),
            now=ended,
        )
        async with db.write() as tx:
            await tx.conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job.id)
                .values(status="succeeded", completed_at=ended, result={})
            )
        document, _ = await documents_store.take_document(
            db,
            owner="alice",
            filename=f"{name}.txt",
            content_type="text/plain",
            size_bytes=len(name),
            text=name,  # texts of their own: the same text twice is one document
            now=ended,
        )
        ids[name] = (job.id, document.id)
    await webhooks_store.record_response_event(
        db,
        webhook_id="wh_old",
        event_type="response.completed",
        response_id="r",
        now=now - timedelta(days=4),
    )
    kept = settings.model_copy(update={"retention_days": 30, "retention_check_seconds": 0.1})
    async with worker_on(db, kept, OfflineProvider(latency_s=0.01)):

        async def pruned() -> bool:
            async with db.read() as conn:
                left_jobs = set((await conn.execute(sa.select(jobs.c.id))).scalars())
                left_docs = set((await conn.execute(sa.select(documents.c.id))).scalars())
                receipts = (
                    await conn.execute(sa.select(sa.func.count()).select_from(webhook_receipts))
                ).scalar_one()
            return (
                left_jobs == {ids["recent"][0]}
                and left_docs == {ids["recent"][1]}
                and receipts == 0
            )

        await wait_for(pruned)
    events, _ = await audit_store.list_events(
        db, audit_store.AuditFilter(target_id=ids["old"][0]), before_id=None, limit=5
    )
    assert [(e.action, e.actor.kind, e.actor.user_agent) for e in events] == [
        ("job.deleted", "system", "retention")
    ]


@pytest.mark.slow
async def test_an_owner_is_erased_and_only_anonymous_usage_stays(
    api: httpx.AsyncClient, keys: Keys, db: Database, db_url: str
) -> None:
    done = (await create(api, {"type": "test_ask_model"})).json()["job_id"]
    await until_done(api, done)
    await api.post(f"/api/jobs/{done}/feedback", json={"rating": "up", "comment": "mine"})
    later = (await create(api, {"type": "noop", "run_at": "2030-01-01T00:00:00Z"})).json()
    await upload(api, "a.txt", ARTICLE.encode())
    await api.post("/api/webhook-endpoints", json={"url": "https://hooks.example.com/a"})
    await api.put("/api/notifications/channels", json={"emails": ["a@example.com"]})
    await api.put("/api/owners/alice/limits", json={"max_running": 2}, headers=auth(keys.admin))
    bobs = (await create(api, {"type": "noop"}, headers=auth(keys.bob))).json()["job_id"]

    # In a thread: the service in this process keeps running (and writing) meanwhile.
    erased = await asyncio.to_thread(
        run_cli, "owners", "erase", "alice", "--yes", env=child_env(db_url)
    )
    assert "erased alice: jobs 2" in erased.stdout

    assert_problem(await api.get("/api/jobs"), 401)  # alice's key is revoked
    async with db.read() as conn:
        for table in (
            jobs,
            documents,
            webhook_endpoints,
            owner_limits,
            owner_channels,
            job_feedback,
        ):
            query = sa.select(sa.func.count()).select_from(table).where(table.c.owner == "alice")
            assert (await conn.execute(query)).scalar_one() == 0, table.name
    usage = (await api.get("/api/usage", headers=auth(keys.admin))).json()["items"]
    assert [(u["owner"], u["model_calls"]) for u in usage] == [("(erased)", 1)]
    assert (await api.get(f"/api/jobs/{bobs}", headers=auth(keys.bob))).status_code == 200
    trail = (
        await api.get("/api/audit", params={"action": "owner.erased"}, headers=auth(keys.admin))
    ).json()["items"]
    assert trail[0]["target_id"] == "alice"
    assert trail[0]["actor"]["kind"] == "system"
    assert trail[0]["detail"]["jobs"] == 2
    assert trail[0]["detail"]["documents"] == 1
    deleted = (
        await api.get("/api/audit", params={"target": later["job_id"]}, headers=auth(keys.admin))
    ).json()["items"]
    assert [e["action"] for e in deleted][:2] == ["job.deleted", "job.canceled"]


async def test_the_dashboard_deletes_a_job_from_its_page(
    api: httpx.AsyncClient, keys: Keys, db: Database
) -> None:
    job_id = (await create(api, {"type": "noop"})).json()["job_id"]
    await until_done(api, job_id)
    form = {"Authorization": "", "Origin": "http://test"}
    assert (await api.get(f"/?token={keys.bob}", follow_redirects=False)).status_code == 303
    assert (await api.post(f"/jobs/{job_id}/delete", headers=form)).status_code == 404
    assert (await api.get(f"/?token={keys.alice}", follow_redirects=False)).status_code == 303
    page = await api.get(f"/jobs/{job_id}", headers={"Authorization": ""})
    assert f'action="/jobs/{job_id}/delete"' in page.text
    elsewhere = {"Authorization": "", "Origin": "http://evil.example"}
    assert (await api.post(f"/jobs/{job_id}/delete", headers=elsewhere)).status_code == 403
    deleted = await api.post(f"/jobs/{job_id}/delete", headers=form, follow_redirects=False)
    assert deleted.status_code == 303
    assert (await rows_of(db, job_id))["jobs"] == 0
