"""The hottest statements have two forms: portable SQLAlchemy (SQLite, and the rule) and
raw PostgreSQL (one round trip each). Both run here over the same story on the same
PostgreSQL, and must leave the same rows behind: jobs, timelines, outbox, calls, spend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from backburner.store import Database, Event, NewJob, Outcome
from backburner.store import channels as channels_store
from backburner.store import jobs as jobs_store
from backburner.store import queue as queue_store
from backburner.store import steps as steps_store
from backburner.store.audit import Actor
from backburner.store.channels import OwnerChannels
from backburner.store.schema import (
    audit_events,
    job_events,
    jobs,
    metadata,
    notifications,
    owner_spend,
)
from backburner.store.schema import provider_calls as calls_table
from tests.conftest import KEYRING

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)
T2 = T0 + timedelta(seconds=2)
T3 = T0 + timedelta(seconds=3)


async def _story(db: Database) -> dict[str, Any]:
    """Enqueue jobs for owners with and without notification wishes, claim them, record
    model calls, end them every way an attempt can end (and twice where a late or foreign
    outcome must be dropped), claim what came back; return what the database holds."""
    await channels_store.add_endpoint(
        db,
        "hooked",
        "https://hooks.example.com/x",
        ["job.succeeded", "job.canceled"],
        now=T0,
        limit=20,
    )
    await channels_store.set_channels(
        db, OwnerChannels("channelled", ["ops@example.com"], None, None, ["job.failed"]), now=T0
    )
    wishes: list[tuple[str, str | None, dict[str, Any] | None]] = [
        ("quiet", "https://cb.example.com/0", None),  # 0 succeeds, owes (callback)
        ("quiet", None, None),  # 1 fails, owes nothing
        ("hooked", None, None),  # 2 canceled, owes (endpoint)
        ("channelled", None, None),  # 3 retry scheduled
        ("quiet", None, {"email": ["me@example.com"]}),  # 4 released
        ("quiet", None, None),  # 5 an outcome for a stale attempt: dropped
        ("channelled", None, None),  # 6 fails, owes (channels)
        ("hooked", None, None),  # 7 stays running; an intruder's outcome is dropped
    ]
    ids: list[str] = []
    for index, (owner, callback, notify) in enumerate(wishes):
        job, _ = await jobs_store.insert_job(
            db,
            NewJob(
                owner=owner,
                type="story",
                payload={"n": index},
                max_attempts=3,
                timeout_seconds=60,
                priority=index % 3,
                callback_url=callback,
                notify=notify,
            ),
            now=T0 + timedelta(milliseconds=index),
        )
        ids.append(job.id)
    # Enqueued by a person (audited) with an idempotency key, then asked again.
    actor = Actor("key", "key-1", "quiet", "member", "127.0.0.1", "pytest", "req-1")
    keyed = NewJob(
        owner="quiet",
        type="other",
        payload={"keyed": True},
        max_attempts=1,
        timeout_seconds=5,
        idempotency_key="once",
        request_hash="h",
        notify={"email": ["me@example.com"]},
    )
    first, made = await jobs_store.insert_job(db, keyed, now=T0, actor=actor)
    again, made_again = await jobs_store.insert_job(db, keyed, now=T1, actor=actor)
    ids.append(first.id)
    batched = await jobs_store.insert_jobs(
        db,
        [
            keyed,
            NewJob(
                owner="quiet", type="other", payload={"n": 9}, max_attempts=1, timeout_seconds=5
            ),
        ],
        now=T1,
        actor=actor,
    )
    ids.append(batched[1][0].id)
    keyed_answers = [
        (made, made_again),
        again.id == first.id,
        again.payload,
        [(job.id == first.id, created, job.payload) for job, created in batched],
    ]
    claimed = await queue_store.claim_jobs(
        db, worker_id="w", limit=10, lease_seconds=30, now=T1, types=["story"]
    )
    for index, status in ((0, "completed"), (1, "failed")):
        await steps_store.record_submitted(
            db,
            job_id=ids[index],
            key="ask",
            provider="emulator",
            model="gpt-4.1-mini",
            response_id=f"resp_{index}",
            status="queued",
            attempt=1,
            now=T1,
            completion_window="soonest",
        )
        await steps_store.record_finished(
            db,
            job_id=ids[index],
            key="ask",
            status=status,
            output={"text": "ok"} if status == "completed" else None,
            error_message=None if status == "completed" else "server_error",
            usage={"input_tokens": 100 + index, "output_tokens": 7, "cached_tokens": 3},
            attempt=1,
            now=T2,
            owner=wishes[index][0],
            cost=(0.25, 0.5),
        )
    outcomes = [
        Outcome(ids[0], 1, Event.SUCCEEDED, result={"answer": [1, "two", None]}),
        Outcome(ids[1], 1, Event.FAILED, error_kind="response_failed", error_message="no"),
        Outcome(ids[2], 1, Event.CANCELED, error_kind="canceled", error_message="asked to"),
        Outcome(
            ids[3],
            1,
            Event.RETRY_SCHEDULED,
            error_kind="transient",
            error_message="blip",
            run_at=T0 + timedelta(hours=1),
            count_as_retry=True,
        ),
        Outcome(ids[4], 1, Event.RELEASED, error_message="shutdown", give_back_attempt=True),
        Outcome(ids[5], 2, Event.SUCCEEDED, result={"late": True}),
        Outcome(ids[6], 1, Event.FAILED, error_kind="invalid_input", error_message="bad"),
    ]
    applied = await queue_store.finish_jobs(db, worker_id="w", outcomes=outcomes, now=T2)
    foreign = await queue_store.finish_jobs(
        db, worker_id="intruder", outcomes=[Outcome(ids[7], 1, Event.SUCCEEDED)], now=T2
    )
    reclaimed = await queue_store.claim_jobs(
        db, worker_id="w2", limit=10, lease_seconds=30, now=T3, types=["story"]
    )
    index_of = {job_id: index for index, job_id in enumerate(ids)}

    def named(job_id: str) -> int:
        return index_of[job_id]

    async with db.read() as conn:
        job_rows = {
            named(row["id"]): {k: v for k, v in row.items() if k != "id"}
            for row in (await conn.execute(sa.select(jobs))).mappings()
        }
        timeline = [
            (named(row.job_id), *row[2:])  # all but the row's and the job's id
            for row in await conn.execute(
                sa.select(job_events).order_by(job_events.c.job_id, job_events.c.id)
            )
        ]
        owed = sorted(
            (named(row.job_id), row.owner, row.event_type)
            for row in await conn.execute(sa.select(notifications))
        )
        calls = sorted(
            (named(row["job_id"]), *(v for k, v in row.items() if k not in ("id", "job_id")))
            for row in (await conn.execute(sa.select(calls_table))).mappings()
        )
        spend = sorted(tuple(row) for row in await conn.execute(sa.select(owner_spend)))
        audited = [
            (
                named(row.target_id),
                *(v for k, v in row._mapping.items() if k not in ("id", "target_id")),
            )
            for row in await conn.execute(sa.select(audit_events).order_by(audit_events.c.id))
        ]
    return {
        "claimed": [named(job.id) for job in claimed],
        "claimed_jobs": [{**vars(job), "id": named(job.id)} for job in claimed],
        "applied": sorted(named(job_id) for job_id in applied),
        "foreign": sorted(foreign),
        "reclaimed": [named(job.id) for job in reclaimed],
        "jobs": job_rows,
        "timeline": sorted(timeline, key=repr),
        "owed": owed,
        "calls": calls,
        "spend": spend,
        "audited": audited,
        "keyed": keyed_answers,
    }


async def _truncate(db: Database) -> None:
    async with db.write() as tx:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        await tx.conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))


async def test_native_and_portable_statements_leave_the_same_rows(postgres_url: str) -> None:
    told: dict[bool, dict[str, Any]] = {}
    for native in (True, False):
        db = Database(postgres_url, sealer=KEYRING, native_statements=native)
        try:
            await _truncate(db)
            told[native] = await _story(db)
        finally:
            await db.close()
    native, portable = told[True], told[False]
    # The story itself happened as written (so equal results are not equally empty)...
    assert native["claimed"] == [2, 5, 1, 4, 7, 0, 3, 6]
    assert native["applied"] == [0, 1, 2, 3, 4, 6]
    assert native["foreign"] == []
    assert native["reclaimed"] == [4]
    assert native["keyed"] == [
        (True, False),
        True,
        {"keyed": True},
        [(True, False, {"keyed": True}), (False, True, {"n": 9})],
    ]
    assert [row[:2] for row in native["audited"]] == [(8, T0), (9, T1)]
    assert [(o[0], o[2]) for o in native["owed"]] == [
        (0, "job.succeeded"),
        (2, "job.canceled"),
        (6, "job.failed"),
    ]
    # ...and both forms wrote it the same, row for row.
    for part in native:
        assert native[part] == portable[part], part
