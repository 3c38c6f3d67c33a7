"""The worker on real databases with the real offline provider: it runs jobs, retries
transient failures from memoised steps, fails permanent ones at once, enforces timeouts,
cancels, hands work back on shutdown, and is woken by push, not polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from backburner.config import Settings
from backburner.jobs import build_registry
from backburner.providers import OfflineProvider
from backburner.store import Database, Job, JobStatus, NewJob
from backburner.store import events as events_store
from backburner.store import jobs as jobs_store
from backburner.store import queue as queue_store
from backburner.store import steps as steps_store
from backburner.store.database import plain_postgres_dsn
from backburner.store.schema import jobs as jobs_table
from backburner.worker import Worker
from tests.conftest import fast_settings, wait_for


class Harness:
    def __init__(self, db: Database, settings: Settings, provider: OfflineProvider) -> None:
        self.db = db
        self.settings = settings
        self.provider = provider
        self.registry = build_registry(settings.plugins)

    async def enqueue(
        self, job_type: str, payload: dict[str, Any] | None = None, **extra: Any
    ) -> Job:
        spec = self.registry.get(job_type)
        job, _ = await jobs_store.insert_job(
            self.db,
            NewJob(
                owner="alice",
                type=job_type,
                payload=payload or {},
                max_attempts=spec.retry.max_attempts,
                timeout_seconds=spec.timeout,
                **extra,
            ),
            now=datetime.now(UTC),
        )
        return job

    async def job(self, job_id: str) -> Job:
        job = await jobs_store.get_job(self.db, job_id)
        assert job is not None
        return job

    async def until(self, job_id: str, *statuses: JobStatus, within: float = 10) -> Job:
        async def reached() -> Job | None:
            job = await self.job(job_id)
            return job if job.status in statuses else None

        found: Job = await wait_for(reached, within=within)
        return found

    async def event_kinds(self, job_id: str) -> list[str]:
        return [e.kind for e in await events_store.list_events(self.db, job_id)]

    @contextlib.asynccontextmanager
    async def worker(self, **overrides: Any) -> AsyncIterator[Worker]:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        worker = Worker(self.db, self.registry, self.provider, settings)
        task = asyncio.create_task(worker.run())
        await worker.started.wait()
        try:
            yield worker
        finally:
            worker.stop()
            await asyncio.wait_for(task, timeout=15)


@pytest.fixture
def harness(db: Database, settings: Settings) -> Harness:
    return Harness(db, settings, OfflineProvider(latency_s=settings.offline_latency_s))


async def test_runs_a_job_to_success(harness: Harness) -> None:
    job = await harness.enqueue("noop", {"echo": {"hello": "world"}})
    async with harness.worker():
        done = await harness.until(job.id, JobStatus.SUCCEEDED)
    assert done.result == {"echo": {"hello": "world"}, "slept_seconds": 0.0}
    assert (done.attempts, done.progress, done.lease_owner) == (1, 1.0, None)
    assert await harness.event_kinds(job.id) == ["created", "started", "succeeded"]


async def test_transient_failures_retry_with_steps_memoised(
    harness: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    job = await harness.enqueue("test_flaky", {"fail_times": 2, "marker": str(marker)})
    async with harness.worker():
        done = await harness.until(job.id, JobStatus.SUCCEEDED)
    assert done.attempts == 3
    assert done.retry_count == 2
    assert done.result == {"ok": True, "attempt": 3, "data": {"value": 42}}
    assert marker.read_text().splitlines() == ["expensive"]  # ran once across 3 attempts
    assert await harness.event_kinds(job.id) == [
        "created",
        "started",
        "retry_scheduled",
        "started",
        "retry_scheduled",
        "started",
        "succeeded",
    ]
    events = await events_store.list_events(harness.db, job.id)
    assert "ConnectionError: flaky failure on attempt 1" in (events[2].message or "")


async def test_progress_never_goes_back_when_a_retry_replays_its_steps(
    harness: Harness,
) -> None:
    job = await harness.enqueue("test_parts_then_crash", {"parts": 4, "break_after": 2})
    async with harness.worker():
        done = await harness.until(job.id, JobStatus.SUCCEEDED)
    assert done.attempts == 2
    events = await events_store.list_events(harness.db, job.id)
    shown = [(e.attempt, e.data["progress"]) for e in events if e.kind == "progress" and e.data]
    # The second attempt says nothing of the parts the first had shown: it goes on from
    # there (reports closer together than a moment may be left out, but never go back).
    fractions = [fraction for _, fraction in shown]
    assert fractions == sorted(set(fractions))
    first = [fraction for attempt, fraction in shown if attempt == 1]
    second = [fraction for attempt, fraction in shown if attempt == 2]
    assert first[0] == 0.25
    assert min(second) > max(first)
    assert second[-1] == 1.0


async def test_retries_stop_at_max_attempts(harness: Harness) -> None:
    job = await harness.enqueue("test_flaky", {"fail_times": 5})
    async with harness.worker():
        failed = await harness.until(job.id, JobStatus.FAILED)
    assert failed.attempts == 3
    assert failed.error_kind == "transient"
    assert "out of attempts (3/3)" in (failed.error_message or "")


async def test_permanent_error_fails_at_once(harness: Harness) -> None:
    job = await harness.enqueue("test_broken")
    async with harness.worker():
        failed = await harness.until(job.id, JobStatus.FAILED)
    assert (failed.attempts, failed.error_kind) == (1, "invalid_input")
    assert await harness.event_kinds(job.id) == ["created", "started", "failed"]


async def test_a_result_json_cannot_hold_fails_the_job_and_no_number_becomes_null(
    harness: Harness,
) -> None:
    # A handler's result is encoded once, by pydantic: a lone surrogate cannot be stored,
    # so the job fails at once, saying why (not a worker stuck retrying its outcome); NaN
    # is no JSON either and is stored as null, as pydantic writes it.
    surrogate = await harness.enqueue("test_odd_result", {"kind": "surrogate"})
    not_a_number = await harness.enqueue("test_odd_result", {"kind": "nan"})
    async with harness.worker():
        failed = await harness.until(surrogate.id, JobStatus.FAILED)
        done = await harness.until(not_a_number.id, JobStatus.SUCCEEDED)
    assert failed.attempts == 1
    assert "does not fit test_odd_result" in (failed.error_message or "")
    assert done.result == {"ok": True, "attempt": 0, "data": {"value": None}}


async def test_timeout_stops_the_attempt_and_fails_the_job(harness: Harness) -> None:
    job = await harness.enqueue("test_slow", {"seconds": 30})
    started = time.monotonic()
    async with harness.worker():
        failed = await harness.until(job.id, JobStatus.FAILED)
    assert time.monotonic() - started < 5
    assert failed.error_kind == "timeout"
    assert "0.5s limit" in (failed.error_message or "")


async def test_payload_that_no_longer_fits_fails_as_invalid_input(harness: Harness) -> None:
    job = await harness.enqueue("noop", {"sleep_seconds": "not a number"})
    async with harness.worker():
        failed = await harness.until(job.id, JobStatus.FAILED)
    assert failed.error_kind == "invalid_input"


async def test_cancel_of_a_running_job_stops_it_within_a_second(harness: Harness) -> None:
    job = await harness.enqueue("test_slow_no_timeout", {"seconds": 60})
    async with harness.worker():
        await harness.until(job.id, JobStatus.RUNNING)
        asked = time.monotonic()
        await jobs_store.request_cancel(harness.db, job.id, owner=None, now=datetime.now(UTC))
        canceled = await harness.until(job.id, JobStatus.CANCELED)
        assert time.monotonic() - asked < 1.0
    assert canceled.error_kind == "canceled"
    assert await harness.event_kinds(job.id) == [
        "created",
        "started",
        "cancel_requested",
        "canceled",
    ]


async def test_cancel_while_waiting_on_the_model_cancels_the_response(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url, offline_latency_s=60)
    harness = Harness(db, settings, OfflineProvider(latency_s=60))
    job = await harness.enqueue("test_ask_model")
    async with harness.worker():
        waiting = await wait_for(lambda: _substate(harness, job.id, "waiting_provider"))
        assert waiting.status == JobStatus.RUNNING
        await jobs_store.request_cancel(db, job.id, owner=None, now=datetime.now(UTC))
        await harness.until(job.id, JobStatus.CANCELED)
    assert harness.provider.cancelled == 1
    (call,) = await steps_store.list_calls(db, job.id)
    assert call.status == "cancelled"


async def _substate(harness: Harness, job_id: str, substate: str) -> Job | None:
    job = await harness.job(job_id)
    return job if job.substate == substate else None


async def test_waiting_jobs_hold_no_slot(db: Database, db_url: str) -> None:
    # Each response takes 3 s: all twenty must be submitted before the first completes, which
    # a loaded machine (the whole suite on two cores) did not always do within 1 s.
    settings = fast_settings(db_url, offline_latency_s=3.0)
    harness = Harness(db, settings, OfflineProvider(latency_s=3.0))
    jobs = [await harness.enqueue("test_ask_model") for _ in range(20)]
    async with harness.worker(worker_concurrency=2) as worker:
        # Twenty jobs wait on the model at once through a worker with two slots.
        await wait_for(lambda: worker.tracker.outstanding == 20, within=5)
        for job in jobs:
            await harness.until(job.id, JobStatus.SUCCEEDED)
    assert harness.provider.submitted == 20


async def test_jobs_coming_back_from_the_model_never_push_the_worker_past_its_slots(
    db: Database, db_url: str
) -> None:
    # Forty jobs through two slots: while the claim loop fetches new jobs, others come back
    # from their model call wanting a slot. Slots for a claim are reserved before it, so
    # the two never add up to more than the worker's concurrency.
    settings = fast_settings(db_url, offline_latency_s=0.02)
    harness = Harness(db, settings, OfflineProvider(latency_s=0.02))
    jobs = [await harness.enqueue("test_ask_model") for _ in range(40)]
    most = 0
    async with harness.worker(worker_concurrency=2, claim_batch_size=2) as worker:

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, worker.slots.used)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        for job in jobs:
            await harness.until(job.id, JobStatus.SUCCEEDED, within=60)
        # A job's outcome is stored a moment before its attempt ends and gives the slot back.
        await wait_for(lambda: worker.slots.used == 0, within=5, interval=0.005)
        watcher.cancel()
    assert 1 <= most <= 2


async def test_while_jobs_wait_on_the_model_a_quarter_of_the_slots_is_kept_for_them(
    db: Database, db_url: str
) -> None:
    # With eight slots and a job waiting on the model, new work gets six: a burst of jobs
    # coming back must not wait for what a claim just brought to finish submitting.
    provider_time = [0.0]
    provider = OfflineProvider(latency_s=1.0, clock=lambda: provider_time[0])
    harness = Harness(db, fast_settings(db_url), provider)
    waiting = await harness.enqueue("test_ask_model")
    async with harness.worker(worker_concurrency=8) as worker:
        await wait_for(lambda: worker.tracker.outstanding == 1, within=10)
        resting = [
            await harness.enqueue("test_slow_no_timeout", {"seconds": 30}) for _ in range(10)
        ]

        async def six_running() -> bool:
            statuses = [(await harness.job(job.id)).status for job in resting]
            return statuses.count(JobStatus.RUNNING) == 6

        await wait_for(six_running, within=10)
        assert worker.slots.used == 6  # and two free, kept: no claim takes them
        assert worker.slots.free_for_new == 0
        statuses = [(await harness.job(job.id)).status for job in resting]
        assert statuses.count(JobStatus.PENDING) == 4
        provider_time[0] = 5.0  # the response ends: the job comes back to a kept slot
        await harness.until(waiting.id, JobStatus.SUCCEEDED)
        # Nothing waits on the model any more, so nothing is kept: all eight slots work.
        await wait_for(lambda: worker.slots.used == 8, within=10)


class _RowHolder:
    """Another transaction, holding job rows locked until `release()` (PostgreSQL): the
    outcome of a held job cannot be written meanwhile."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._open = False

    async def hold(self, job_id: str) -> None:
        if not self._open:
            await self._conn.execute("BEGIN")
            self._open = True
        await self._conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)

    async def release(self) -> None:
        await self._conn.execute("COMMIT")
        self._open = False


@contextlib.asynccontextmanager
async def _row_holder(db_url: str) -> AsyncIterator[_RowHolder]:
    conn = await asyncpg.connect(plain_postgres_dsn(db_url))
    try:
        yield _RowHolder(conn)
    finally:
        await conn.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_outcome_waiting_for_its_write_gives_its_slot_to_the_next_job(
    harness: Harness, db_url: str
) -> None:
    # One slot. The first job's outcome cannot be written (another transaction holds its
    # row), yet the second job runs in the slot the first gave back; its row is held too,
    # so both of the writer's statements wait. The third runs in the slot the second gave
    # back, and ends as two outcomes wait, as many as the worker has slots for each batch
    # the writer may have at the database: it keeps its slot, and new jobs wait for the
    # writes instead of piling up more.
    first = await harness.enqueue("test_slow_no_timeout", {"seconds": 3})
    async with (
        _row_holder(db_url) as rows,
        harness.worker(worker_concurrency=1, claim_batch_size=1) as worker,
    ):
        await harness.until(first.id, JobStatus.RUNNING)
        await rows.hold(first.id)
        await wait_for(lambda: worker.unwritten_outcomes == 1, within=10)
        second = await harness.enqueue("test_slow_no_timeout", {"seconds": 2})
        await harness.until(second.id, JobStatus.RUNNING)
        await rows.hold(second.id)
        await wait_for(lambda: worker.unwritten_outcomes == 2, within=10)
        third = await harness.enqueue("test_slow_no_timeout", {"seconds": 0})
        await wait_for(lambda: worker.unwritten_outcomes == 3, within=10)
        assert (await harness.job(first.id)).status == JobStatus.RUNNING
        assert (worker.slots.used, worker.slots.free_for_new) == (1, 0)
        fourth = await harness.enqueue("test_slow_no_timeout", {"seconds": 0})
        await rows.release()
        for job in (first, second, third, fourth):
            await harness.until(job.id, JobStatus.SUCCEEDED)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_outcome_stuck_at_the_database_does_not_hold_back_other_jobs_outcomes(
    harness: Harness, db_url: str
) -> None:
    # The first job's row is held by another transaction, so writing its outcome waits;
    # the writer's other statement writes the second job's meanwhile.
    first = await harness.enqueue("test_slow_no_timeout", {"seconds": 1})
    async with (
        _row_holder(db_url) as rows,
        harness.worker(worker_concurrency=2, claim_batch_size=1) as worker,
    ):
        await harness.until(first.id, JobStatus.RUNNING)
        await rows.hold(first.id)
        await wait_for(lambda: worker.unwritten_outcomes == 1, within=10)
        second = await harness.enqueue("test_slow_no_timeout", {"seconds": 0})
        await harness.until(second.id, JobStatus.SUCCEEDED)
        assert (await harness.job(first.id)).status == JobStatus.RUNNING
        await rows.release()
        await harness.until(first.id, JobStatus.SUCCEEDED)


async def test_a_lost_response_is_submitted_again(db: Database, settings: Settings) -> None:
    harness = Harness(db, settings, OfflineProvider(latency_s=0.05))
    job = await harness.enqueue("test_ask_model")
    # A response id persisted by a previous process whose engine is gone.
    await queue_store.claim_jobs(
        db, worker_id="ghost", limit=1, lease_seconds=0.01, now=datetime.now(UTC)
    )
    await steps_store.record_submitted(
        db,
        job_id=job.id,
        key="ask",
        provider="offline",
        model="m",
        response_id="resp_gone",
        status="queued",
        attempt=1,
        now=datetime.now(UTC),
    )
    async with harness.worker():
        done = await harness.until(job.id, JobStatus.SUCCEEDED)
    assert done.attempts == 2
    assert harness.provider.submitted == 1
    (call,) = await steps_store.list_calls(db, job.id)
    assert (call.status, call.response_id != "resp_gone") == ("completed", True)


async def test_shutdown_hands_running_jobs_back_without_counting_the_attempt(
    harness: Harness,
) -> None:
    job = await harness.enqueue("test_slow_no_timeout", {"seconds": 60})
    async with harness.worker(shutdown_grace_seconds=0.2):
        await harness.until(job.id, JobStatus.RUNNING)
    released = await harness.job(job.id)
    assert (released.status, released.attempts, released.lease_owner) == (
        JobStatus.PENDING,
        0,
        None,
    )
    assert (await harness.event_kinds(job.id))[-1] == "released"


async def test_shutdown_lets_short_jobs_finish(harness: Harness) -> None:
    job = await harness.enqueue("test_slow_no_timeout", {"seconds": 0.3})
    async with harness.worker(shutdown_grace_seconds=5):
        await harness.until(job.id, JobStatus.RUNNING)
    assert (await harness.job(job.id)).status == JobStatus.SUCCEEDED


async def test_an_idle_worker_is_woken_by_push_not_polling(harness: Harness) -> None:
    # Idle polling every 30 s: only the wake-up signal can make pickup fast.
    async with harness.worker(idle_poll_seconds=30):
        await asyncio.sleep(0.2)  # let it go idle
        created = time.monotonic()
        job = await harness.enqueue("noop")
        await harness.until(job.id, JobStatus.SUCCEEDED, within=5)
        assert time.monotonic() - created < 1.0


async def test_a_job_whose_worker_died_is_finished_by_another(harness: Harness) -> None:
    job = await harness.enqueue("test_flaky", {"fail_times": 0})
    # "dead" claims the job and is never heard from again.
    await queue_store.claim_jobs(
        harness.db, worker_id="dead", limit=1, lease_seconds=0.3, now=datetime.now(UTC)
    )
    async with harness.worker():
        done = await harness.until(job.id, JobStatus.SUCCEEDED)
    assert done.attempts == 2
    assert "lease_expired" in await harness.event_kinds(job.id)


async def test_builtin_types_run_end_to_end(harness: Harness) -> None:
    classify = await harness.enqueue(
        "classify_leads",
        {
            "leads": [
                {"id": str(i), "notes": "budget approved" if i % 2 else "not interested"}
                for i in range(25)
            ],
            "labels": ["hot", "cold"],
        },
    )
    report = await harness.enqueue("generate_report", {"user_id": "u_7", "period": "2026-10"})
    async with harness.worker():
        classified = await harness.until(classify.id, JobStatus.SUCCEEDED, JobStatus.FAILED)
        reported = await harness.until(report.id, JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert classified.status == JobStatus.SUCCEEDED, classified.error_message
    labels = {c["id"]: c["label"] for c in classified.result["classifications"]}
    assert labels["1"] == "hot"
    assert labels["2"] == "cold"
    assert classified.result["label_counts"] == {"hot": 12, "cold": 13}
    assert len(await steps_store.list_calls(harness.db, classify.id)) == 3  # batches of 10
    assert reported.status == JobStatus.SUCCEEDED, reported.error_message
    # Two background rounds: the tool call, then the answer after our tool output.
    calls = await steps_store.list_calls(harness.db, report.id)
    assert [c.key for c in calls] == ["narrative", "narrative/round/1"]
    assert reported.result["transaction_count"] > 0
    assert reported.result["total_spent"] == pytest.approx(
        sum(c["amount"] for c in reported.result["by_category"])
    )


async def test_a_job_held_but_not_run_is_handed_on_not_kept_forever(
    db: Database, db_url: str
) -> None:
    # An attempt that ended without writing its outcome leaves its job running under this
    # worker's name. The heartbeat must stop renewing it, so the reaper gives it back and it
    # runs to the end (before, the lease was renewed for as long as the worker lived).
    harness = Harness(db, fast_settings(db_url), OfflineProvider(latency_s=0.01))
    job = await harness.enqueue("noop")
    async with harness.worker() as worker:
        orphan = await harness.enqueue("noop", run_at=datetime.now(UTC) + timedelta(hours=1))
        async with db.write() as tx:
            await tx.conn.execute(
                sa.update(jobs_table)
                .where(jobs_table.c.id == orphan.id)
                .values(
                    status="running",
                    lease_owner=worker.id,
                    lease_expires_at=datetime.now(UTC) + timedelta(seconds=2),
                    attempts=1,
                    run_at=datetime.now(UTC),
                )
            )
        await harness.until(job.id, JobStatus.SUCCEEDED)
        done = await harness.until(orphan.id, JobStatus.SUCCEEDED, within=15)
    assert done.attempts == 2  # the lost attempt counts; the second one ran here
    assert "lease_expired" in await harness.event_kinds(orphan.id)


async def test_stopping_lets_a_housekeeping_round_finish(db: Database, db_url: str) -> None:
    # A heartbeat or reap cut off mid-transaction could leave SQLite's write lock held for
    # the next process; stopping waits for the round that has begun instead.
    harness = Harness(db, fast_settings(db_url), OfflineProvider(latency_s=0.01))
    rounds: list[str] = []

    async def slow_round() -> None:
        rounds.append("begun")
        await asyncio.sleep(0.3)
        rounds.append("finished")

    async with harness.worker() as worker:
        housekeeping = asyncio.create_task(worker.leases.every(0.01, slow_round))
        await wait_for(lambda: rounds)
    # The worker has stopped: the round that had begun finished, and no other began.
    await asyncio.wait_for(housekeeping, timeout=1)
    assert rounds == ["begun", "finished"]


async def test_a_worker_takes_over_the_jobs_of_a_dead_worker_on_its_host(
    db: Database, db_url: str
) -> None:
    # A worker killed with -9 and started again by its supervisor: the dead one's lease
    # would hold its job for an hour, but its process is gone and it has gone quiet, so the
    # new one hands the job on. Left alone: a worker whose process lives (this one's), and
    # one whose PID is not a process here but which still heartbeats — a worker in another
    # container sharing this host name, its PIDs of its own namespace; taking its job would
    # run it twice.
    import os
    import socket

    from backburner.store import workers as workers_store
    from backburner.store.schema import workers as workers_table

    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    elsewhere_pid = gone.pid  # no process here has it now, as in another PID namespace
    now = datetime.now(UTC)
    host = socket.gethostname()
    for worker_id, pid in (
        ("dead-1", gone.pid),
        ("alive-1", os.getpid()),
        ("elsewhere-1", elsewhere_pid),
    ):
        await workers_store.register_worker(
            db, worker_id=worker_id, hostname=host, pid=pid, concurrency=4, now=now
        )
    settings = fast_settings(db_url, lease_seconds=3600)
    harness = Harness(db, settings, OfflineProvider(latency_s=0.01))
    orphan = await harness.enqueue("test_flaky", {"fail_times": 0})
    held = await harness.enqueue("test_flaky", {"fail_times": 0})
    elsewhere = await harness.enqueue("test_flaky", {"fail_times": 0})
    for job, owner in ((orphan, "dead-1"), (held, "alive-1"), (elsewhere, "elsewhere-1")):
        async with db.write() as tx:
            await tx.conn.execute(
                sa.update(jobs_table)
                .where(jobs_table.c.id == job.id)
                .values(
                    status="running",
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(hours=1),
                    attempts=1,
                )
            )

    async def heartbeat_elsewhere() -> None:
        while True:
            async with db.write() as tx:
                await tx.conn.execute(
                    sa.update(workers_table)
                    .where(workers_table.c.id == "elsewhere-1")
                    .values(heartbeat_at=datetime.now(UTC))
                )
            await asyncio.sleep(settings.heartbeat_seconds)

    beating = asyncio.create_task(heartbeat_elsewhere())
    try:
        async with harness.worker():
            done = await harness.until(orphan.id, JobStatus.SUCCEEDED, within=10)
            # Rounds of take-over went by (the dead one's job was handed on and ran).
            still = await harness.job(held.id)
            other = await harness.job(elsewhere.id)
    finally:
        beating.cancel()
    assert done.attempts == 2
    assert "lease_expired" in await harness.event_kinds(orphan.id)
    assert (still.status, still.lease_owner) == (JobStatus.RUNNING, "alive-1")
    assert (other.status, other.lease_owner) == (JobStatus.RUNNING, "elsewhere-1")
