"""Single enqueues that arrive together (SQLite writes them as one group commit at a time;
PostgreSQL a few statements at once, what comes while they run together in the next):
every create keeps its own time, actor and idempotency key, a key asked for twice at once
makes one job, and one bad create fails alone."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
import sqlalchemy as sa

from backburner.store import Database, postgres
from backburner.store import jobs as jobs_store
from backburner.store.audit import Actor
from backburner.store.database import is_outage, plain_postgres_dsn
from backburner.store.schema import audit_events, job_events, jobs
from tests.conftest import KEYRING, wait_for
from tests.running import new_job

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def actor(number: int) -> Actor:
    return Actor("key", f"key-{number}", "alice", "member", "127.0.0.1", "pytest", f"req-{number}")


async def _count(db: Database, table: sa.Table) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar())


async def test_creates_at_once_keep_their_own_time_and_actor(db: Database) -> None:
    made = await asyncio.gather(
        *(
            jobs_store.insert_job(
                db,
                new_job(payload={"n": number}),
                now=T0 + timedelta(milliseconds=number),
                actor=actor(number),
            )
            for number in range(60)
        )
    )
    assert all(created for _, created in made)
    assert len({job.id for job, _ in made}) == 60
    for number, (job, _) in enumerate(made):
        assert job.payload == {"n": number}
        assert job.created_at == T0 + timedelta(milliseconds=number)
    async with db.read() as conn:
        audited = {
            target: request
            for target, request in await conn.execute(
                sa.select(audit_events.c.target_id, audit_events.c.request_id)
            )
        }
        created_events = (
            await conn.execute(
                sa.select(job_events.c.job_id, sa.func.count()).group_by(job_events.c.job_id)
            )
        ).all()
    assert audited == {job.id: f"req-{number}" for number, (job, _) in enumerate(made)}
    assert sorted(n for _, n in created_events) == [1] * 60


async def test_one_key_asked_for_at_once_makes_one_job(db: Database) -> None:
    keyed = new_job(idempotency_key="once", request_hash="h1")
    made = await asyncio.gather(
        *(jobs_store.insert_job(db, keyed, now=T0, actor=actor(n)) for n in range(5)),
        *(jobs_store.insert_job(db, new_job(), now=T0) for _ in range(5)),
    )
    keyed_answers = made[:5]
    assert len({job.id for job, _ in keyed_answers}) == 1
    assert sum(created for _, created in keyed_answers) == 1
    assert all(created for _, created in made[5:])
    assert await _count(db, jobs) == 6


async def test_one_bad_create_among_others_fails_alone(db: Database) -> None:
    # A payload the store cannot encode (a set): written with others, it must not take
    # their creates down with it, nor leave anything of its own behind.
    asked = [new_job(payload={"n": n}) for n in range(10)]
    asked.insert(4, new_job(payload={"n": {1, 2}}))
    answers = await asyncio.gather(
        *(jobs_store.insert_job(db, new, now=T0, actor=actor(0)) for new in asked),
        return_exceptions=True,
    )
    failed = [n for n, answer in enumerate(answers) if isinstance(answer, BaseException)]
    assert failed == [4]
    assert await _count(db, jobs) == 10
    assert await _count(db, job_events) == 10
    assert await _count(db, audit_events) == 10
    _, created = await jobs_store.insert_job(db, new_job(), now=T0)  # and on it goes
    assert created


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the group commit's
def test_a_database_that_outlives_its_event_loop_still_enqueues(db_url: str) -> None:
    # A script that runs asyncio.run twice with one SQLite Database: the second loop must
    # not wait on what the first one left behind.
    database = Database(db_url, sealer=KEYRING)

    async def create() -> bool:
        _, created = await jobs_store.insert_job(database, new_job(), now=T0)
        return created

    async def close() -> None:
        await database.close()

    try:
        assert asyncio.run(create())
        assert asyncio.run(asyncio.wait_for(create(), timeout=10))
    finally:
        asyncio.run(close())


async def test_a_create_whose_request_went_away_before_its_group_is_not_written(
    db_url: str, db: Database
) -> None:
    group_commit = jobs_store._group_commit_of(db)
    if db.dialect == "sqlite":
        async with db.write():  # the one writer is busy: creates wait for its next transaction
            first = [asyncio.create_task(jobs_store.insert_job(db, new_job(), now=T0))]
            await wait_for(lambda: group_commit._busy == 1 and not group_commit._waiting)
            gone = asyncio.create_task(jobs_store.insert_job(db, new_job(), now=T0))
            await wait_for(lambda: len(group_commit._waiting) == 1)
            gone.cancel()
    else:
        # Every statement in flight waits on a lock: the next create waits for a group.
        blocker = await asyncpg.connect(plain_postgres_dsn(db_url))
        try:
            await blocker.execute("BEGIN; LOCK TABLE jobs IN SHARE MODE")
            first = [
                asyncio.create_task(jobs_store.insert_job(db, new_job(), now=T0))
                for _ in range(jobs_store.POSTGRES_GROUPS_IN_FLIGHT)
            ]
            await wait_for(lambda: group_commit._busy == jobs_store.POSTGRES_GROUPS_IN_FLIGHT)
            gone = asyncio.create_task(jobs_store.insert_job(db, new_job(), now=T0))
            await wait_for(lambda: len(group_commit._waiting) == 1)
            gone.cancel()
            await asyncio.sleep(0)
        finally:
            await blocker.execute("ROLLBACK")
            await blocker.close()
    for made in first:
        _, created = await made
        assert created
    assert gone.cancelled()
    assert await _count(db, jobs) == len(first)


async def test_creates_beyond_the_statements_in_flight_go_together(db: Database) -> None:
    # PostgreSQL: while POSTGRES_GROUPS_IN_FLIGHT statements run, the creates that come wait
    # and go as one group: every one answered, each once, none lost.
    answers = await asyncio.gather(
        *(
            jobs_store.insert_job(db, new_job(payload={"n": n}), now=T0, actor=actor(n))
            for n in range(300)
        )
    )
    assert sorted(job.payload["n"] for job, _ in answers) == list(range(300))
    assert await _count(db, jobs) == 300
    assert await _count(db, job_events) == 300
    assert await _count(db, audit_events) == 300
    async with db.read() as conn:
        stored = dict((await conn.execute(sa.select(jobs.c.id, jobs.c.payload))).all())
    assert {job.id: job.payload for job, _ in answers} == stored


async def test_a_created_job_is_the_job_read_back(db: Database) -> None:
    # The answer to a create is built from what the caller asked (on PostgreSQL nothing is
    # read back: `jobs.as_inserted`): it must be exactly the row the store then reads back,
    # every column, whatever time zone the request's times were in.
    elsewhere = timezone(timedelta(hours=5, minutes=30))
    asked = new_job(
        payload={"text": "é ☃", "nested": [1, {"a": None}], "n": [2.5, True]},
        priority=7,
        run_at=datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=elsewhere),
        callback_url="https://hooks.example.com/done",
        idempotency_key="k1",
        request_hash="h",
        deadline_at=datetime(2026, 3, 2, 9, 0, tzinfo=elsewhere),
        notify={"email": ["me@example.com"], "slack": True},
        model="gpt-4.1-mini",
        size=1234.5,
        origin="https://api.example.com",
        timeout_seconds=90,
    )
    single, _ = await jobs_store.insert_job(db, asked, now=T0, actor=actor(1))
    batch = await jobs_store.insert_jobs(
        db, [new_job(payload={"n": 1}), asked, replace(asked, idempotency_key="k2")], now=T0
    )
    assert batch[1] == (single, False)
    for answered in (single, batch[0][0], batch[2][0]):
        stored = await jobs_store.get_job(db, answered.id)
        assert stored is not None
        assert dataclasses.asdict(stored) == dataclasses.asdict(answered)
        assert answered.run_at.utcoffset() == timedelta(0)


async def test_another_owners_key_at_the_same_moment_never_answers_with_alices_job(
    db: Database,
) -> None:
    # Idempotency keys are per owner: bob sending alice's key in the same instant (one
    # group on SQLite) gets a job of his own, never hers.
    alices = new_job(idempotency_key="shared", request_hash="h1", payload={"who": "alice"})
    bobs = new_job(owner="bob", idempotency_key="shared", request_hash="h1", payload={"who": "bob"})
    (alice_job, alice_made), (bob_job, bob_made) = await asyncio.gather(
        jobs_store.insert_job(db, alices, now=T0), jobs_store.insert_job(db, bobs, now=T0)
    )
    assert alice_made
    assert bob_made
    assert alice_job.id != bob_job.id
    assert (bob_job.owner, bob_job.payload) == ("bob", {"who": "bob"})
    again, made = await jobs_store.insert_job(db, bobs, now=T0)
    assert (again.id, made) == (bob_job.id, False)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_creates_while_the_database_is_out_of_reach_all_fail_as_an_outage(
    db_url: str,
) -> None:
    # Nothing listens on that port: the creates that went at once and the group behind
    # them all answer with the outage (a 503 through the API), none hangs, none is made.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    away = Database(f"postgresql://postgres@127.0.0.1:{port}/nowhere", sealer=KEYRING)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(jobs_store.insert_job(away, new_job(), now=T0) for _ in range(30)),
                return_exceptions=True,
            ),
            timeout=60,
        )
    finally:
        await away.close()
    assert all(isinstance(answer, Exception) and is_outage(answer) for answer in answers)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_single_creates_keep_one_plan_while_other_statements_plan_each_time(
    db: Database,
) -> None:
    # A create's INSERT has no plan to get wrong: the queue's own connections plan it once
    # (planned anew each time, it was a quarter of a create's time at the database).
    # Every other connection forces custom plans, which keep claims on the queue's index.
    for number in range(12):
        await jobs_store.insert_job(db, new_job(payload={"n": number}), now=T0)
    async with db.asyncpg_connection(queue=True) as conn:
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            postgres.INSERT_JOB,
        )
        lane_mode = await conn.fetchval("SHOW plan_cache_mode")
    async with db.asyncpg_connection() as conn:
        other_mode = await conn.fetchval("SHOW plan_cache_mode")
    assert plans is not None
    assert (plans["generic_plans"], plans["custom_plans"]) == (12, 0)
    assert (lane_mode, other_mode) == ("force_generic_plan", "force_custom_plan")
