"""The jobs table as a queue, on SQLite and PostgreSQL: enqueue, claim, lease, finish,
reap, cancel, retry, idempotency, pagination. Every transition leaves one event."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from backburner.errors import Conflict, NotFound
from backburner.store import Database, Event, Job, JobStatus, Outcome, postgres
from backburner.store import events as events_store
from backburner.store import jobs as jobs_store
from backburner.store import positions as positions_store
from backburner.store import queue as queue_store
from backburner.store.database import (
    CHANNEL_JOBS,
    CHANNEL_RESPONSES,
    WAKE_SPACING_SECONDS,
    is_outage,
    plain_postgres_dsn,
)
from backburner.store.schema import jobs
from tests.conftest import KEYRING, create_database, drop_database, wait_for
from tests.running import new_job

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def kinds(db: Database, job_id: str) -> list[str]:
    return [e.kind for e in await events_store.list_events(db, job_id)]


async def test_enqueue_writes_the_job_and_its_created_event(db: Database) -> None:
    job, created = await jobs_store.insert_job(db, new_job(payload={"a": 1}), now=T0)
    assert created
    assert (job.status, job.attempts, job.payload, job.run_at) == (
        JobStatus.PENDING,
        0,
        {"a": 1},
        T0,
    )
    assert await kinds(db, job.id) == ["created"]


async def test_claim_takes_highest_priority_then_oldest(db: Database) -> None:
    low, _ = await jobs_store.insert_job(db, new_job(priority=-5), now=T0)
    old, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    new, _ = await jobs_store.insert_job(db, new_job(), now=T0 + timedelta(seconds=1))
    high, _ = await jobs_store.insert_job(db, new_job(priority=10), now=T0 + timedelta(seconds=2))
    claimed = await queue_store.claim_jobs(
        db, worker_id="w", limit=3, lease_seconds=30, now=T0 + timedelta(seconds=3)
    )
    assert [j.id for j in claimed] == [high.id, old.id, new.id]
    assert all(
        j.status == JobStatus.RUNNING and j.attempts == 1 and j.lease_owner == "w" for j in claimed
    )
    assert await kinds(db, high.id) == ["created", "started"]
    assert (await jobs_store.get_job(db, low.id)).status == JobStatus.PENDING  # type: ignore[union-attr]


async def test_future_jobs_wait_for_their_time(db: Database) -> None:
    later, _ = await jobs_store.insert_job(db, new_job(run_at=T0 + timedelta(minutes=5)), now=T0)
    assert await queue_store.claim_jobs(db, worker_id="w", limit=5, lease_seconds=30, now=T0) == []
    assert await queue_store.next_due_at(db) == later.run_at
    claimed = await queue_store.claim_jobs(
        db, worker_id="w", limit=5, lease_seconds=30, now=T0 + timedelta(minutes=5)
    )
    assert [j.id for j in claimed] == [later.id]


async def test_claims_only_the_types_the_worker_knows(db: Database) -> None:
    await jobs_store.insert_job(db, new_job(type="other"), now=T0)
    mine, _ = await jobs_store.insert_job(db, new_job(type="noop"), now=T0)
    claimed = await queue_store.claim_jobs(
        db, worker_id="w", limit=5, lease_seconds=30, now=T0, types=["noop"]
    )
    assert [j.id for j in claimed] == [mine.id]


async def test_concurrent_claimers_never_take_the_same_job(db_url: str, db: Database) -> None:
    ids = {(await jobs_store.insert_job(db, new_job(), now=T0))[0].id for _ in range(60)}
    others = [Database(db_url, sealer=KEYRING) for _ in range(3)]
    try:

        async def drain(database: Database, name: str) -> list[str]:
            taken: list[str] = []
            while batch := await queue_store.claim_jobs(
                database, worker_id=name, limit=7, lease_seconds=30, now=T0
            ):
                taken += [j.id for j in batch]
            return taken

        results = await asyncio.gather(*(drain(d, f"w{i}") for i, d in enumerate(others)))
    finally:
        for database in others:
            await database.close()
    everything = [job_id for taken in results for job_id in taken]
    assert len(everything) == len(set(everything)) == 60
    assert set(everything) == ids


async def test_finish_records_the_outcome_once_and_only_for_the_lease_holder(db: Database) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    (_claimed,) = await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=30, now=T0)
    done = Outcome(job.id, 1, Event.SUCCEEDED, result={"x": 1})
    assert await queue_store.finish_jobs(db, worker_id="intruder", outcomes=[done], now=T0) == set()
    assert await queue_store.finish_jobs(db, worker_id="w", outcomes=[done], now=T0) == {job.id}
    assert await queue_store.finish_jobs(db, worker_id="w", outcomes=[done], now=T0) == set()
    final = await jobs_store.get_job(db, job.id)
    assert final is not None
    assert (final.status, final.result, final.progress, final.lease_owner) == (
        JobStatus.SUCCEEDED,
        {"x": 1},
        1.0,
        None,
    )
    assert final.completed_at == T0
    assert await kinds(db, job.id) == ["created", "started", "succeeded"]


async def test_retry_outcome_requeues_with_delay_and_counts(db: Database) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=30, now=T0)
    later = T0 + timedelta(seconds=10)
    retry = Outcome(
        job.id,
        1,
        Event.RETRY_SCHEDULED,
        error_kind="transient",
        error_message="boom",
        run_at=later,
        count_as_retry=True,
    )
    await queue_store.finish_jobs(db, worker_id="w", outcomes=[retry], now=T0)
    pending = await jobs_store.get_job(db, job.id)
    assert pending is not None
    assert (pending.status, pending.run_at, pending.retry_count, pending.attempts) == (
        JobStatus.PENDING,
        later,
        1,
        1,
    )
    assert await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=30, now=T0) == []
    (again,) = await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=30, now=later)
    assert again.attempts == 2
    events = await events_store.list_events(db, job.id)
    assert [e.kind for e in events] == ["created", "started", "retry_scheduled", "started"]
    assert events[2].message == "boom"
    assert events[2].data == {"error_kind": "transient", "run_at": later.isoformat()}


async def test_expired_leases_are_reaped_back_to_the_queue(db: Database) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    await queue_store.claim_jobs(db, worker_id="dead", limit=1, lease_seconds=5, now=T0)
    assert await queue_store.reap_expired_leases(db, now=T0 + timedelta(seconds=4)) == []
    (reaped,) = await queue_store.reap_expired_leases(db, now=T0 + timedelta(seconds=6))
    assert (reaped.job_id, reaped.status, reaped.previous_worker) == (
        job.id,
        JobStatus.PENDING,
        "dead",
    )
    back = await jobs_store.get_job(db, job.id)
    assert back is not None
    assert (back.status, back.lease_owner, back.retry_count, back.error_kind) == (
        JobStatus.PENDING,
        None,
        1,
        "lost",
    )
    assert (await kinds(db, job.id))[-1] == "lease_expired"


async def test_reaping_the_last_attempt_fails_the_job(db: Database) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(max_attempts=1), now=T0)
    await queue_store.claim_jobs(db, worker_id="dead", limit=1, lease_seconds=5, now=T0)
    (reaped,) = await queue_store.reap_expired_leases(db, now=T0 + timedelta(seconds=6))
    assert reaped.status == JobStatus.FAILED
    failed = await jobs_store.get_job(db, job.id)
    assert failed is not None
    assert failed.error_kind == "lost"


async def test_a_heartbeat_keeps_the_lease(db: Database) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=5, now=T0)
    held = await queue_store.extend_leases(
        db, worker_id="w", lease_seconds=5, now=T0 + timedelta(seconds=4)
    )
    assert held == {job.id}
    assert await queue_store.reap_expired_leases(db, now=T0 + timedelta(seconds=8)) == []


async def test_cancel_pending_is_immediate(db: Database) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    canceled = await jobs_store.request_cancel(db, job.id, owner="alice", now=T0)
    assert (canceled.status, canceled.completed_at) == (JobStatus.CANCELED, T0)
    assert await kinds(db, job.id) == ["created", "canceled"]
    assert await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=5, now=T0) == []


async def test_cancel_running_flags_it_and_signals_workers(db: Database) -> None:
    heard: list[str] = []
    db.signals.subscribe("backburner_cancel", heard.append)
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=5, now=T0)
    flagged = await jobs_store.request_cancel(db, job.id, owner=None, now=T0)
    assert (flagged.status, flagged.cancel_requested) == (JobStatus.RUNNING, True)
    assert await queue_store.cancel_requested_ids(db, worker_id="w") == {job.id}
    await wait_for(lambda: heard)
    assert heard == [job.id]


async def test_a_burst_of_wake_ups_reaches_another_process_once_per_payload(
    db_url: str, db: Database
) -> None:
    # Webhook receipts wake workers after their commit, many at once (Database.wake): every
    # response named in a burst is heard by a listener in another process; on PostgreSQL
    # the burst goes as one statement, each payload once however often it was asked for.
    heard: list[str] = []
    db.signals.subscribe(CHANNEL_RESPONSES, heard.append)
    sender = Database(db_url, sealer=KEYRING) if db.dialect == "postgresql" else db
    names = [f"resp_{i}" for i in range(150)]
    try:
        for name in names + names:
            sender.wake(CHANNEL_RESPONSES, name)
        await wait_for(lambda: set(heard) == set(names))
        if db.dialect == "postgresql":
            assert sorted(heard) == sorted(names)
        else:  # in process, each call is delivered as it is made
            assert sorted(heard) == sorted(names + names)
    finally:
        if sender is not db:
            await sender.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_stream_of_wake_ups_sends_one_statement_per_spacing_and_loses_none(
    db_url: str, db: Database
) -> None:
    # One NOTIFY per insert was ~40% of an insert's CPU: a process sends at most one
    # statement of new-job NOTIFYs per WAKE_SPACING_SECONDS; wake-ups asked for in between
    # go together in the next, none lost. (Payloads here only to count them.)
    heard: set[str] = set()
    db.signals.subscribe(CHANNEL_JOBS, heard.add)
    sender = Database(db_url, sealer=KEYRING)
    notify_starts: list[float] = []

    def logged(query: Any) -> None:  # asyncpg's query logger: when each statement began
        if "pg_notify" in query.query:
            notify_starts.append(time.monotonic() - query.elapsed)

    try:
        # Wake-ups go on the queue's own connections: its pool now holds this one, which
        # every wake-up then takes (they go one at a time).
        async with sender.asyncpg_connection(queue=True) as conn:
            conn.add_query_logger(logged)
        names: list[str] = []
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() < started + 0.06:  # a stream: a wake-up every event-loop turn
            names.append(f"resp_{len(names)}")
            sender.wake(CHANNEL_JOBS, names[-1])
            await asyncio.sleep(0)
        await wait_for(lambda: heard >= set(names))
        # Back to back, the statements went every round trip (~0.5 ms apart here); each
        # gap is measured with the event loop's coarse clock, so the mean is asked for.
        assert len(notify_starts) >= 2
        mean_gap = (notify_starts[-1] - notify_starts[0]) / (len(notify_starts) - 1)
        assert mean_gap >= WAKE_SPACING_SECONDS * 0.8
    finally:
        await sender.close()


async def test_cancel_of_an_ended_job_is_a_conflict_and_of_someone_elses_not_found(
    db: Database,
) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    with pytest.raises(NotFound):
        await jobs_store.request_cancel(db, job.id, owner="bob", now=T0)
    await jobs_store.request_cancel(db, job.id, owner="alice", now=T0)
    with pytest.raises(Conflict, match="already ended"):
        await jobs_store.request_cancel(db, job.id, owner="alice", now=T0)
    assert await kinds(db, job.id) == ["created", "canceled"]


async def test_retry_brings_failed_and_canceled_jobs_back(db: Database) -> None:
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    with pytest.raises(Conflict, match="only failed or canceled"):
        await jobs_store.retry_job(db, job.id, owner="alice", now=T0)
    await jobs_store.request_cancel(db, job.id, owner="alice", now=T0)
    again = await jobs_store.retry_job(db, job.id, owner="alice", now=T0 + timedelta(seconds=1))
    assert (again.status, again.attempts, again.completed_at, again.error_kind) == (
        JobStatus.PENDING,
        0,
        None,
        None,
    )
    assert await kinds(db, job.id) == ["created", "canceled", "retried"]


async def test_idempotency_key_returns_the_first_job(db: Database) -> None:
    first, created = await jobs_store.insert_job(db, new_job(idempotency_key="k1"), now=T0)
    again, created_again = await jobs_store.insert_job(db, new_job(idempotency_key="k1"), now=T0)
    others, _ = await jobs_store.insert_job(db, new_job(owner="bob", idempotency_key="k1"), now=T0)
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert others.id != first.id  # keys are per owner


async def test_racing_requests_with_one_key_make_one_job(db_url: str, db: Database) -> None:
    databases = [Database(db_url, sealer=KEYRING) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(jobs_store.insert_job(d, new_job(idempotency_key="race"), now=T0) for d in databases)
        )
    finally:
        for database in databases:
            await database.close()
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_keyset_pagination_walks_everything_newest_first(db: Database) -> None:
    ids = [(await jobs_store.insert_job(db, new_job(), now=T0))[0].id for _ in range(7)]
    await jobs_store.insert_job(db, new_job(owner="bob"), now=T0)
    seen: list[str] = []
    before = None
    while True:
        page = await jobs_store.list_jobs(db, owner="alice", limit=3, before=before)
        seen += [job.id for job in page.jobs]
        if not page.more:
            break
        before = page.jobs[-1].id
    assert seen == sorted(ids, reverse=True)


async def test_count_ahead_sees_priority_and_age(db: Database) -> None:
    first, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    urgent, _ = await jobs_store.insert_job(db, new_job(priority=5), now=T0)
    last, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    assert await positions_store.count_ahead(db, job_id=first.id, priority=0, now=T0) == 1
    assert await positions_store.count_ahead(db, job_id=last.id, priority=0, now=T0) == 2
    assert await positions_store.count_ahead(db, job_id=urgent.id, priority=5, now=T0) == 0


async def test_queue_positions_of_a_page_agree_with_count_ahead(db: Database) -> None:
    queued = [
        (await jobs_store.insert_job(db, new_job(priority=priority), now=T0))[0]
        for priority in (0, 5, 0, -3, 5, 0)
    ]
    later, _ = await jobs_store.insert_job(db, new_job(run_at=T0 + timedelta(hours=1)), now=T0)
    ids = [job.id for job in queued] + [later.id, "not-a-job"]
    positions = await positions_store.queue_positions(db, ids, now=T0)
    expected = {
        job.id: await positions_store.count_ahead(db, job_id=job.id, priority=job.priority, now=T0)
        for job in queued
    }
    assert positions == expected  # the job not due yet and the unknown id are left out
    assert sorted(positions.values()) == list(range(6))
    capped = await positions_store.queue_positions(db, ids, now=T0, max_count=2)
    assert capped[queued[3].id] == 2  # the last in line, beyond the cap
    assert await positions_store.queue_positions(db, [], now=T0) == {}


async def test_heartbeats_and_finishes_never_deadlock(db_url: str) -> None:
    """The heartbeat renews every lease a worker holds while its outcome writers finish
    batches of the same jobs in any order: both lock job rows in id order, so PostgreSQL
    never has to kill one of them as a deadlock victim (both statement forms there)."""
    forms = [False, True] if db_url.startswith("postgresql") else [False]
    for native in forms:
        await _heartbeats_beside_finishes(db_url, native)
        if native is False and len(forms) > 1:
            await _truncate_jobs(db_url)


async def _truncate_jobs(db_url: str) -> None:
    db = Database(db_url, sealer=KEYRING)
    async with db.write() as tx:
        await tx.conn.execute(sa.text("TRUNCATE jobs, job_events, audit_events"))
    await db.close()


async def _heartbeats_beside_finishes(db_url: str, native: bool) -> None:
    db = Database(db_url, sealer=KEYRING, native_statements=native)
    try:
        for _ in range(6):
            await asyncio.gather(*(jobs_store.insert_job(db, new_job(), now=T0) for _ in range(50)))
        claimed = await queue_store.claim_jobs(
            db, worker_id="w", limit=300, lease_seconds=30, now=T0
        )
        assert len(claimed) == 300
        shuffled = sorted(claimed, key=lambda job: hash(job.id))
        batches = [shuffled[i : i + 15] for i in range(0, 300, 15)]
        finishing = asyncio.Event()

        async def heartbeats() -> None:
            while not finishing.is_set():
                await queue_store.extend_leases(db, worker_id="w", lease_seconds=30, now=T0)

        async def finish(batch: list[Any]) -> set[str]:
            outcomes = [Outcome(job.id, 1, Event.SUCCEEDED, result={"ok": 1}) for job in batch]
            return await queue_store.finish_jobs(db, worker_id="w", outcomes=outcomes, now=T0)

        async def finishes() -> list[set[str]]:
            try:
                done: list[set[str]] = []
                for group in range(0, len(batches), 4):  # four writers at a time
                    done += await asyncio.gather(*(finish(b) for b in batches[group : group + 4]))
                return done
            finally:
                finishing.set()

        beats = asyncio.create_task(heartbeats())
        applied = await finishes()
        await beats
        assert sum(len(ids) for ids in applied) == 300
        async with db.read() as conn:
            succeeded = sa.select(sa.func.count()).where(jobs.c.status == "succeeded")
            assert (await conn.execute(succeeded)).scalar_one() == 300
    finally:
        await db.close()


async def test_the_queue_per_type_for_autoscalers(db: Database) -> None:
    from backburner.store import stats as stats_store

    for minutes in (1, 2, 3):
        await jobs_store.insert_job(db, new_job(), now=T0 - timedelta(minutes=minutes))
    await jobs_store.insert_job(db, new_job(type="classify_leads"), now=T0)
    await jobs_store.insert_job(db, new_job(run_at=T0 + timedelta(hours=1)), now=T0)
    await queue_store.claim_jobs(db, worker_id="w", limit=1, lease_seconds=30, now=T0)
    found = await stats_store.queue_by_type(db, T0)
    assert set(found) == {"noop", "classify_leads"}
    noop = found["noop"]
    # The oldest (3 minutes) was claimed first: the oldest still ready waited 2 minutes.
    assert (noop.ready, noop.scheduled, noop.running) == (2, 1, 1)
    assert noop.oldest_ready_seconds == 120
    assert (found["classify_leads"].ready, found["classify_leads"].oldest_ready_seconds) == (1, 0)


async def _claim_plan(conn: Any, begin: str, args: tuple[Any, ...]) -> str:
    await conn.execute(begin)
    try:
        rows = await conn.fetch("EXPLAIN " + postgres.CLAIM, *args)
    finally:
        await conn.execute("ROLLBACK")
    return "\n".join(row[0] for row in rows)


async def _kept_plan(conn: Any, statement: str, args: tuple[Any, ...]) -> str:
    """The plan PostgreSQL keeps for `statement` on this connection once it stops planning
    each run anew (a generic plan, made with the connection's settings)."""
    prepared = await conn.prepare(statement)
    literals = [
        await conn.fetchval(f"SELECT quote_nullable($1::{kind.name}::text)", value)
        + f"::{kind.name}"
        for kind, value in zip(prepared.get_parameters(), args, strict=True)
    ]
    await conn.execute("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
    try:
        await conn.execute(f"PREPARE kept AS {statement}")
        rows = await conn.fetch(f"EXPLAIN EXECUTE kept({', '.join(literals)})")
    finally:
        await conn.execute("ROLLBACK; DEALLOCATE kept")
    return "\n".join(row[0] for row in rows)


async def test_a_claim_reads_the_queue_by_its_index_whatever_the_statistics_say() -> None:
    # A burst into a table the planner knows nothing of yet (never analysed, as after a
    # spike until autovacuum's next ANALYZE): planned freely, a claim reads every pending
    # row and sorts them to take the first hundred (42 ms a claim at 25,000 pending, the
    # worker slowing as its backlog grew). The queue's own connections keep one plan for a
    # claim and for a finish, made with statistics that describe another table (empty, or
    # with no job running): they read by index all the same. (Behind a transaction pooler
    # a claim sets its plan in its own transaction.)
    url = await create_database("backburner_test_plan")
    try:
        db = Database(url, sealer=KEYRING)
        try:
            args = postgres.claim_args(
                worker_id="w", limit=100, lease_seconds=30, now=T0, types=["noop"]
            )
            async with db.asyncpg_connection(queue=True) as conn:
                await conn.execute("ANALYZE jobs")
                kept_while_empty = await _kept_plan(conn, postgres.CLAIM, args)
            for _ in range(20):  # fewer, and the free plan takes the index too
                await jobs_store.insert_jobs(db, [new_job() for _ in range(1000)], now=T0)
            async with db.asyncpg_connection() as conn:
                free = await _claim_plan(conn, "BEGIN", args)
                claiming = await _claim_plan(conn, postgres.CLAIM_PLAN, args)
                await conn.execute("ANALYZE jobs")  # statistics that saw no job running
            claimed = await queue_store.claim_jobs(
                db, worker_id="w", limit=100, lease_seconds=30, now=T0, types=["noop"]
            )
            finish = postgres.finish_args(
                KEYRING, "w", [queue_store._finish_row(_succeeded(job), T0) for job in claimed], T0
            )
            async with db.asyncpg_connection(queue=True) as conn:
                kept_claim = await _kept_plan(conn, postgres.CLAIM, args)
                kept_finish = await _kept_plan(conn, postgres.FINISH, finish)
        finally:
            await db.close()
    finally:
        await drop_database(url)
    assert "Sort" in free  # the hazard is real on this server
    for plan in (claiming, kept_while_empty, kept_claim):
        assert "Index Scan using ix_jobs_pending_queue" in plan
        assert "Sort" not in plan
        assert "Bitmap" not in plan
    # A finish looks its jobs up by key, not through an index of running jobs (whose dead
    # entries, one per job finished since the last vacuum, it would step over).
    assert "Index Scan using jobs_pkey on jobs jobs_1" in kept_finish
    assert "Seq Scan on jobs" not in kept_finish
    assert "Bitmap" not in kept_finish
    assert len(claimed) == 100


def _succeeded(job: Job) -> Outcome:
    return Outcome(job.id, job.attempts, Event.SUCCEEDED, result={"ok": True})


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_cut_off_mid_statement_leaves_no_transaction_behind(
    db_url: str, db: Database
) -> None:
    # The claim runs in a transaction of its own (for its plan): a worker stopped while it
    # waits must not hand its connection back to the pool inside that transaction.
    job, _ = await jobs_store.insert_job(db, new_job(), now=T0)
    blocker = await asyncpg.connect(plain_postgres_dsn(db_url))
    try:
        await blocker.execute("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        claim = asyncio.create_task(
            queue_store.claim_jobs(db, worker_id="w", limit=10, lease_seconds=30, now=T0)
        )
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        await wait_for(lambda: blocker.fetchval(waiting))
        claim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claim
        await blocker.execute("ROLLBACK")
        idle_inside = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        )
        assert await blocker.fetchval(idle_inside) == 0
    finally:
        await blocker.close()
    claimed = await queue_store.claim_jobs(db, worker_id="w", limit=10, lease_seconds=30, now=T0)
    assert [j.id for j in claimed] == [job.id]


class _Bug(Exception):
    pass


async def _left_in_a_transaction(db: Database) -> int:
    async with db.asyncpg_connection() as conn:
        await conn.execute("BEGIN")
        raise _Bug(conn.get_server_pid())


async def _cut_by_the_server(db: Database, watcher: Any) -> None:
    async with db.asyncpg_connection() as conn:
        await watcher.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await conn.fetchval("SELECT 1")


_SLEEPING = (
    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"
)


async def _cancelled_mid_statement(db: Database, watcher: Any) -> None:
    async with db.asyncpg_connection() as conn:
        statement = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
        await wait_for(lambda: watcher.fetchval(_SLEEPING))
        statement.cancel()
        await statement


async def _is_gone(watcher: Any, pid: int) -> bool:
    return not await watcher.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_driver_connection_goes_back_to_the_pool_only_when_it_is_clean(
    db_url: str, db: Database
) -> None:
    # The native statements take the pool's connection without SQLAlchemy around it: what
    # SQLAlchemy would have caught on the way back is ours to catch.
    watcher = await asyncpg.connect(plain_postgres_dsn(db_url))
    try:
        used = set()
        for _ in range(5):
            async with db.asyncpg_connection() as conn:
                used.add(conn.get_server_pid())
        for pid in used:  # kept open for the next, not closed
            assert not await _is_gone(watcher, pid)

        with pytest.raises(_Bug) as left:  # left inside a transaction: closed
            await _left_in_a_transaction(db)
        await wait_for(lambda: _is_gone(watcher, left.value.args[0]))
        for _ in range(5):
            async with db.asyncpg_connection() as conn:
                assert not conn.is_in_transaction()
                assert await conn.fetchval("SELECT txid_current_if_assigned()") is None

        with pytest.raises(Exception) as cut:  # noqa: PT011 (the driver words it several ways)
            await _cut_by_the_server(db, watcher)
        assert is_outage(cut.value)
        for _ in range(5):  # replaced, not given out again
            async with db.asyncpg_connection() as conn:
                assert await conn.fetchval("SELECT 1") == 1

        with pytest.raises(asyncio.CancelledError):
            await _cancelled_mid_statement(db, watcher)
        for _ in range(5):
            async with db.asyncpg_connection() as conn:
                assert await conn.fetchval("SELECT 2") == 2
        # The server was told to stop the statement (the cancel request goes on its own).
        await wait_for(lambda: _none_sleep(watcher))
    finally:
        await watcher.close()


async def _none_sleep(watcher: Any) -> bool:
    return bool(await watcher.fetchval(_SLEEPING) == 0)
