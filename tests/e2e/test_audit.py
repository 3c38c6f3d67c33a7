"""The audit trail: every change and every read of a result is recorded with who, from
where and which request; members see what concerns their own data; rows cannot be
changed; old rows go by retention; the dashboard and the CLI show the same."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from backburner.config import Settings
from backburner.providers.offline import OfflineProvider
from backburner.store import Database
from backburner.store import audit as audit_store
from backburner.store import keys as keys_store
from backburner.store.schema import audit_events
from tests.conftest import Keys, auth, wait_for
from tests.e2e.processes import child_env, run_cli
from tests.e2e.test_api_documents import upload
from tests.e2e.test_api_jobs import assert_problem, create, until_done
from tests.running import worker_on

CLIENT = {"User-Agent": "acme-billing/2.1", "X-Request-Id": "req-42.a_b"}


async def key_id(db: Database, owner: str) -> str:
    return next(k.id for k in await keys_store.list_keys(db) if k.owner == owner)


async def trail(api: httpx.AsyncClient, key: str, **filters: str) -> list[dict]:  # type: ignore[type-arg]
    answer = await api.get("/api/audit", params=filters, headers=auth(key))
    assert answer.status_code == 200, answer.text
    items: list[dict] = answer.json()["items"]  # type: ignore[type-arg]
    return items


async def test_changes_and_result_reads_are_audited_with_their_actor(
    api: httpx.AsyncClient, keys: Keys, db: Database
) -> None:
    ok = (await create(api, {"type": "noop"}, headers=CLIENT)).json()["job_id"]
    broken = (await create(api, {"type": "test_broken"})).json()["job_id"]
    later = (await create(api, {"type": "noop", "run_at": "2030-01-01T00:00:00Z"})).json()
    await until_done(api, ok)
    await until_done(api, broken)
    before_reads = len(await trail(api, keys.admin))
    await api.get("/api/jobs")  # a list page: not audited
    await api.get(f"/api/jobs/{later['job_id']}")  # no result yet: a poll, not audited
    assert len(await trail(api, keys.admin)) == before_reads
    await api.get(f"/api/jobs/{ok}", headers=CLIENT)
    await api.get(f"/api/jobs/{ok}/result")
    await api.get(f"/api/jobs/{ok}/result?download=1")
    await api.post(f"/api/jobs/{later['job_id']}/cancel")
    await api.post(f"/api/jobs/{broken}/retry")
    document = (await upload(api, "note.txt", b"A note.")).json()["document_id"]
    await api.get(f"/api/documents/{document}")
    await api.post("/api/webhooks/secret/rotate")
    limits = {"max_running": 3}
    await api.put("/api/owners/alice/limits", json=limits, headers=auth(keys.admin))
    # A refused change records nothing: cancelling a finished job is a 409.
    assert_problem(await api.post(f"/api/jobs/{ok}/cancel"), 409)

    alice = await key_id(db, "alice")
    events = await trail(api, keys.alice)
    done = [(e["action"], e["target_id"]) for e in reversed(events)]
    assert done == [
        ("job.created", ok),
        ("job.created", broken),
        ("job.created", later["job_id"]),
        ("job.read", ok),  # until_done's last poll saw the result
        ("job.read", ok),
        ("job.result_read", ok),
        ("job.result_downloaded", ok),
        ("job.canceled", later["job_id"]),
        ("job.retried", broken),
        ("document.uploaded", document),
        ("document.read", document),
        ("webhook_secret.rotated", "alice"),
        ("owner.limits_changed", "alice"),
    ]
    created = events[-1]
    assert created["actor"]["key_id"] == alice
    assert created["actor"]["owner"] == "alice"
    assert created["actor"]["role"] == "member"
    assert created["actor"]["user_agent"] == "acme-billing/2.1"
    assert created["actor"]["request_id"] == "req-42.a_b"
    assert created["actor"]["client_address"]
    assert created["detail"] == {"type": "noop"}
    changed = events[0]
    assert (changed["actor"]["owner"], changed["actor"]["role"]) == ("admin", "admin")
    assert changed["detail"] == {
        "max_running": 3,
        "monthly_budget_usd": None,
        "requests_per_minute": None,
    }
    # Bob sees none of it; an admin filters everything.
    assert await trail(api, keys.bob) == []
    made = await trail(api, keys.admin, action="job.created", owner="alice")
    assert [e["target_id"] for e in made] == [later["job_id"], broken, ok]
    assert [e["action"] for e in await trail(api, keys.admin, target=document)] == [
        "document.read",
        "document.uploaded",
    ]
    # A member cannot widen the view to another owner.
    assert await trail(api, keys.bob, owner="alice") == []


async def test_the_trail_pages_with_a_cursor_and_refuses_odd_filters(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    for _ in range(5):
        await create(api, {"type": "noop"})
    first = (await api.get("/api/audit?limit=2", headers=auth(keys.admin))).json()
    second = await api.get(
        "/api/audit", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(keys.admin)
    )
    ids = [e["id"] for e in first["items"] + second.json()["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 4
    assert_problem(await api.get("/api/audit?cursor=@@", headers=auth(keys.admin)), 422)
    assert_problem(await api.get("/api/audit?action=job.eaten", headers=auth(keys.admin)), 422)
    assert_problem(await api.get("/api/audit?since=12345", headers=auth(keys.admin)), 422)
    assert_problem(await api.get("/api/audit", headers={"Authorization": ""}), 401)


async def test_audit_rows_cannot_be_changed(api: httpx.AsyncClient, db: Database) -> None:
    await create(api, {"type": "noop"})
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with db.write() as tx:
            await tx.conn.execute(sa.update(audit_events).values(action="job.deleted"))
    async with db.read() as conn:
        actions = (await conn.execute(sa.select(audit_events.c.action))).scalars().all()
    assert actions == ["encryption.key_added", "job.created"]  # the first start, the job


async def test_workers_prune_events_past_retention(db: Database, settings: Settings) -> None:
    now = datetime.now(UTC)
    for age_days in (500, 10):
        await audit_store.record_read(
            db,
            audit_store.SYSTEM,
            audit_store.Action.JOB_READ,
            audit_store.Target("job", f"aged-{age_days}", "alice"),
            now - timedelta(days=age_days),
        )
    pruning = settings.model_copy(update={"retention_check_seconds": 0.1})
    async with worker_on(db, pruning, OfflineProvider(latency_s=0.01)):

        async def kept() -> list[str] | None:
            events, _ = await audit_store.list_events(
                db, audit_store.AuditFilter(), before_id=None, limit=10
            )
            targets = [e.target_id for e in events]
            return targets if "aged-500" not in targets else None

        assert await wait_for(kept) == ["aged-10"]


async def test_sign_in_and_out_and_the_audit_page(
    api: httpx.AsyncClient, keys: Keys, db: Database
) -> None:
    no_key = {"Authorization": ""}
    assert (await api.get(f"/?token={keys.alice}", follow_redirects=False)).status_code == 303
    signed_out = await api.post("/signout", headers={**no_key, "Origin": "http://test"})
    assert signed_out.status_code in (200, 303)
    actions = [e["action"] for e in await trail(api, keys.alice)]
    assert actions[:2] == ["session.signed_out", "session.signed_in"]
    # The page is for admins; members do not learn it exists.
    assert (await api.get(f"/?token={keys.bob}", follow_redirects=False)).status_code == 303
    assert (await api.get("/audit", headers=no_key)).status_code == 404
    assert (await api.get(f"/?token={keys.admin}", follow_redirects=False)).status_code == 303
    page = await api.get("/audit?action=session.signed_in", headers=no_key)
    assert page.status_code == 200
    assert page.text.count("<td>session.signed_in</td>") == 3
    assert "session.signed_out</td>" not in page.text


async def test_every_request_has_an_access_log_line_without_the_key(
    api: httpx.AsyncClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = (await create(api, {"type": "noop"})).json()["job_id"]
    with caplog.at_level(logging.INFO, logger="backburner.access"):
        answer = await api.get(f"/api/jobs/{job_id}", headers={"X-Request-Id": "trace-7"})
    assert answer.headers["x-request-id"] == "trace-7"
    (line,) = [r for r in caplog.records if r.name == "backburner.access"]
    assert (line.method, line.path, line.status) == ("GET", "/api/jobs/{job_id}", 200)  # type: ignore[attr-defined]
    assert line.request_id == "trace-7"  # type: ignore[attr-defined]
    assert line.key_id  # type: ignore[attr-defined]
    assert line.duration_ms >= 0  # type: ignore[attr-defined]
    assert keys.alice not in caplog.text


@pytest.mark.slow
async def test_the_cli_exports_json_lines(db_url: str, api: httpx.AsyncClient) -> None:
    job_id = (await create(api, {"type": "noop"})).json()["job_id"]
    exported = run_cli("audit", "export", "--since", "2000-01-01", env=child_env(db_url))
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [(e["action"], e["target_id"]) for e in lines] == [
        ("encryption.key_added", "test"),  # the service's first start sealed with it
        ("job.created", job_id),
    ]
    assert lines[0]["actor"]["kind"] == "system"
    assert lines[1]["actor"]["owner"] == "alice"
    later = run_cli("audit", "export", "--since", "2999-01-01", env=child_env(db_url))
    assert later.stdout == ""
