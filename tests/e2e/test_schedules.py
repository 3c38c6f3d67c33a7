"""Schedules: each slot runs once however many workers look, a worker that dies between
making a slot's job and moving the schedule on leaves nothing doubled, downtime is caught
up once, and only admins manage them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from backburner.config import Settings
from backburner.jobs.registry import JobRegistry
from backburner.jobs.types import register_builtin_types
from backburner.store import Database
from backburner.store import schedules as schedules_store
from backburner.store.audit import SYSTEM
from backburner.store.schema import eval_runs, jobs, schedules
from backburner.worker.evaluations import Evaluations
from backburner.worker.schedules import Scheduler
from tests.conftest import Keys, auth, serving, wait_for
from tests.e2e.test_api_jobs import assert_problem

DAILY = "0 3 * * *"


def scheduler(db: Database, settings: Settings, now: datetime) -> Scheduler:
    registry = JobRegistry()
    register_builtin_types(registry)
    evaluations = Evaluations(db, registry, settings, lambda: now)
    return Scheduler(db, registry, settings, lambda: now, evaluations)


async def a_schedule(db: Database, next_at: datetime, **values: Any) -> schedules_store.Schedule:
    return await schedules_store.insert_schedule(
        db,
        {
            "id": values.pop("id", "sch_1"),
            "owner": "admin",
            "name": values.pop("name", "nightly"),
            "cron": DAILY,
            "timezone": "UTC",
            "kind": "job",
            "job_type": "noop",
            "payload": {"echo": "nightly"},
            "enabled": True,
            "created_at": next_at - timedelta(days=1),
            "next_at": next_at,
            **values,
        },
        actor=SYSTEM,
    )


async def made_jobs(db: Database) -> list[tuple[str, str | None]]:
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(jobs.c.type, jobs.c.idempotency_key))).all()
    return [(row[0], row[1]) for row in rows]


async def test_many_workers_fire_a_slot_once(db: Database, settings: Settings) -> None:
    slot = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    await a_schedule(db, slot)
    now = slot + timedelta(seconds=1)
    await asyncio.gather(*(scheduler(db, settings, now).fire_due() for _ in range(6)))
    await scheduler(db, settings, now).fire_due()  # and again, later: nothing is due
    assert await made_jobs(db) == [("noop", f"schedule:sch_1:{slot.isoformat()}")]
    found = await schedules_store.get_schedule(db, "sch_1")
    assert found is not None
    assert found.next_at == slot + timedelta(days=1)
    assert found.last_slot_at == slot
    assert found.missed_slots == 0


async def test_a_worker_cut_off_after_making_the_job_leaves_it_made_once(
    db: Database, settings: Settings
) -> None:
    slot = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    schedule = await a_schedule(db, slot)
    now = slot + timedelta(minutes=1)
    first = scheduler(db, settings, now)
    await first._create_job(schedule, slot, now)  # made, but the schedule not moved on
    await scheduler(db, settings, now).fire_due()
    assert len(await made_jobs(db)) == 1
    moved = await schedules_store.get_schedule(db, "sch_1")
    assert moved is not None
    assert moved.next_at == slot + timedelta(days=1)


async def test_downtime_is_caught_up_once_with_the_latest_slot(
    db: Database, settings: Settings
) -> None:
    slot = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    await a_schedule(db, slot)
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    await scheduler(db, settings, now).fire_due()
    latest = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert await made_jobs(db) == [("noop", f"schedule:sch_1:{latest.isoformat()}")]
    found = await schedules_store.get_schedule(db, "sch_1")
    assert found is not None
    assert found.missed_slots == 4
    assert found.next_at == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


async def test_a_scheduled_evaluation_is_one_run_per_slot(db: Database, settings: Settings) -> None:
    slot = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    await a_schedule(
        db, slot, kind="eval", job_type="classify_leads", payload={"model": "gpt-4.1-nano"}
    )
    now = slot + timedelta(seconds=5)
    await asyncio.gather(*(scheduler(db, settings, now).fire_due() for _ in range(3)))
    async with db.read() as conn:
        runs = (
            await conn.execute(
                sa.select(eval_runs.c.schedule_id, eval_runs.c.slot_at, eval_runs.c.model)
            )
        ).all()
        made = (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar_one()
    assert [(r[0], r[1], r[2]) for r in runs] == [("sch_1", slot, "gpt-4.1-nano")]
    assert made == 36  # one job per item of the classify_leads dataset


async def test_admins_manage_schedules_and_a_worker_fires_them(
    settings: Settings, keys: Keys, db: Database
) -> None:
    async with serving(settings, keys.admin, embed_worker=True) as api:
        body = {"name": "echo", "cron": "*/5 * * * *", "type": "noop", "payload": {"echo": 7}}
        made = await api.post("/api/schedules", json=body)
        assert made.status_code == 201, made.text
        schedule = made.json()
        assert schedule["kind"] == "job"
        assert datetime.fromisoformat(schedule["next_at"]) > datetime.now(UTC)
        assert_problem(await api.post("/api/schedules", json=body), 409)
        # Its slot comes (the test moves it to now rather than wait five minutes).
        async with db.write() as tx:
            await tx.conn.execute(
                sa.update(schedules).values(next_at=datetime.now(UTC) - timedelta(seconds=1))
            )

        async def fired() -> str | None:
            got = (await api.get(f"/api/schedules/{schedule['id']}")).json()
            return got["last_target_id"]

        job_id = await wait_for(fired)

        async def done() -> dict[str, Any] | None:
            job: dict[str, Any] = (await api.get(f"/api/jobs/{job_id}")).json()
            return job if job["status"] == "succeeded" else None

        assert (await wait_for(done))["result"]["echo"] == 7
        paused = await api.patch(f"/api/schedules/{schedule['id']}", json={"enabled": False})
        assert paused.json()["enabled"] is False
        resumed = await api.patch(f"/api/schedules/{schedule['id']}", json={"enabled": True})
        assert datetime.fromisoformat(resumed.json()["next_at"]) > datetime.now(UTC)
        evaluation = await api.post(
            "/api/schedules",
            json={
                "name": "nightly eval",
                "cron": "0 3 * * *",
                "type": "generate_report",
                "eval": {},
            },
        )
        assert evaluation.status_code == 201, evaluation.text
        assert evaluation.json()["kind"] == "eval"
        listed = (await api.get("/api/schedules")).json()["items"]
        assert [s["name"] for s in listed] == ["echo", "nightly eval"]
        assert (await api.delete(f"/api/schedules/{schedule['id']}")).status_code == 204
        assert_problem(await api.delete(f"/api/schedules/{schedule['id']}"), 404)


async def test_members_and_bad_schedules_are_refused_with_nothing_stored(
    settings: Settings, keys: Keys, db: Database
) -> None:
    async with serving(settings, keys.admin, embed_worker=False) as api:
        good = {"name": "n", "cron": DAILY, "type": "noop", "payload": {"echo": 1}}
        member = auth(keys.alice)
        assert_problem(await api.post("/api/schedules", json=good, headers=member), 403)
        assert_problem(await api.get("/api/schedules", headers=member), 403)
        cases: list[tuple[dict[str, Any], str | None]] = [
            ({**good, "cron": "61 * * * *"}, "cron"),
            ({**good, "cron": "* * * * * *"}, "cron"),
            ({**good, "timezone": "Mars/Olympus"}, "timezone"),
            ({**good, "timezone": "../../etc/passwd"}, "timezone"),
            ({**good, "type": "nope"}, "type"),
            ({**good, "payload": {"echo": 1, "extra": 2}}, "payload.extra"),
            ({**good, "eval": {}}, "payload"),
            ({**good, "name": "bad\u0007name"}, "name"),
            ({**good, "name": ""}, "name"),
            ({"name": "e", "cron": DAILY, "type": "noop", "eval": {}}, "dataset_items"),
            (
                {"name": "e", "cron": DAILY, "type": "classify_leads", "eval": {"window": "3h"}},
                "eval.window",
            ),
        ]
        for body, field in cases:
            assert_problem(await api.post("/api/schedules", json=body), 422, field)
        assert_problem(await api.get("/api/schedules/sch_missing"), 404)
        assert_problem(await api.patch("/api/schedules/sch_missing", json={"enabled": True}), 404)
    async with db.read() as conn:
        stored = (
            await conn.execute(sa.select(sa.func.count()).select_from(schedules))
        ).scalar_one()
    assert stored == 0
