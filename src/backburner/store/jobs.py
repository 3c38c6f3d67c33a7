"""The clients' commands on jobs: enqueue, read, list, cancel, retry.

The jobs table is the queue: inserting the row *is* the enqueue, in one transaction with
its "created" event and the wake-up signal. The worker's side of the queue (claim, leases,
finish, reap) is in `queue.py`; the ETA's reads are in `positions.py`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.errors import Conflict, NotFound
from backburner.store import audit, objects, postgres
from backburner.store.audit import Actor, Target
from backburner.store.database import (
    CHANNEL_CANCEL,
    CHANNEL_JOBS,
    CHANNEL_OUTBOX,
    Database,
    Tx,
    is_outage,
)
from backburner.store.events import add_events, event_row, transition_row
from backburner.store.models import Job, NewJob, new_id
from backburner.store.outbox import owe_notifications
from backburner.store.schema import (
    audit_events,
    deliveries,
    delivery_attempts,
    job_events,
    job_feedback,
    job_steps,
    jobs,
    notifications,
    provider_calls,
)
from backburner.store.transitions import Event, JobStatus, next_state, sources_of

# --- Enqueue ------------------------------------------------------------------------------


async def insert_job(
    db: Database, new: NewJob, *, now: datetime, actor: Actor | None = None
) -> tuple[Job, bool]:
    """Enqueue a job. Returns the job and whether it was created (False: the owner's
    idempotency key named an existing job, which is returned instead). With `actor`, the
    creation is audited in the same transaction."""
    if db.native_statements or db.dialect == "sqlite":
        return await _group_commit_of(db).insert(new, now, actor)
    try:
        async with db.write() as tx:
            if new.idempotency_key is not None:
                existing = await _by_idempotency_key(tx.conn, new.owner, new.idempotency_key)
                if existing is not None:
                    return existing, False
            job_id = new_id()
            values = _row_of(new, job_id, now)
            row = (
                (await tx.conn.execute(sa.insert(jobs).values(values).returning(*jobs.c)))
                .mappings()
                .one()
            )
            await add_events(tx, [transition_row(job_id, None, Event.CREATED, now, attempt=0)])
            await audit.record(
                tx.conn,
                actor,
                audit.Action.JOB_CREATED,
                Target("job", job_id, new.owner),
                now,
                detail={"type": new.type},
            )
            await tx.signal(CHANNEL_JOBS)
            return Job.from_row(row), True
    except IntegrityError:
        # Two requests with one idempotency key raced (PostgreSQL); the other one won.
        if new.idempotency_key is None:
            raise
        async with db.read() as conn:
            existing = await _by_idempotency_key(conn, new.owner, new.idempotency_key)
        if existing is None:
            raise
        return existing, False


async def _insert_job_postgres(
    db: Database, new: NewJob, *, now: datetime, actor: Actor | None
) -> tuple[Job, bool]:
    """One round trip (autocommit, one statement), unless the key named an existing job."""
    job_id = new_id()
    args = postgres.insert_job_args(db.sealer, job_id, new, now, actor)
    async with db.asyncpg_connection(queue=True) as conn:
        made = await conn.fetchval(postgres.INSERT_JOB, *args)
    if made is not None:
        db.wake(CHANNEL_JOBS)
        return as_inserted(job_id, new, now), True
    assert new.idempotency_key is not None  # only a key's conflict inserts nothing
    async with db.read() as read:
        existing = await _by_idempotency_key(read, new.owner, new.idempotency_key)
    if existing is None:  # deleted in between: try again, as a new job
        return await _insert_job_postgres(db, new, now=now, actor=actor)
    return existing, False


# The columns a new job's row does not set (`_row_of`), as the table's defaults leave them.
_UNSET_AT_CREATION: dict[str, Any] = {
    "substate": None,
    "result": None,
    "error_message": None,
    "error_kind": None,
    "error_retryable": None,
    "started_at": None,
    "completed_at": None,
    "attempts": 0,
    "retry_count": 0,
    "lease_owner": None,
    "lease_expires_at": None,
    "cancel_requested": False,
    "progress": 0.0,
    "progress_message": None,
    "result_object": None,
    "result_bytes": None,
}


def as_inserted(job_id: str, new: NewJob, now: datetime) -> Job:
    """The row every form of the insert writes for `new` at `now`, known without reading
    it back (decoding returned rows, the payload opened again, was a fifth of a bulk
    create's time). tests/integration/test_enqueue_together.py holds it to the row as read
    back, every column set, on both databases."""
    return _as_written(_row_of(new, job_id, now))


def _as_written(row: dict[str, Any]) -> Job:
    """The job a new row's values (`_row_of`) make: the rest as the table's defaults leave
    them, times in UTC and the timeout a float, as the row reads."""
    values = row | _UNSET_AT_CREATION
    for name in ("run_at", "created_at", "updated_at", "deadline_at"):
        if values[name] is not None:
            values[name] = values[name].astimezone(UTC)
    values["timeout_seconds"] = float(values["timeout_seconds"])
    return Job.from_values(values)


class KeysReused(Exception):
    """Idempotency keys of a batch that name existing jobs made by different requests."""

    def __init__(self, indexes: list[int]) -> None:
        super().__init__(f"idempotency keys reused at {indexes}")
        self.indexes = indexes


def _row_of(new: NewJob, job_id: str, now: datetime) -> dict[str, Any]:
    return {
        "id": job_id,
        "owner": new.owner,
        "type": new.type,
        "status": next_state(None, Event.CREATED).value,
        "payload": new.payload,
        "callback_url": new.callback_url,
        "priority": new.priority,
        "run_at": new.run_at or now,
        "created_at": now,
        "updated_at": now,
        "max_attempts": new.max_attempts,
        "timeout_seconds": new.timeout_seconds,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "deadline_at": new.deadline_at,
        "notify": new.notify,
        "model": new.model,
        "size": new.size,
        "origin": new.origin,
    }


async def insert_jobs(
    db: Database, batch: Sequence[NewJob], *, now: datetime, actor: Actor | None = None
) -> list[tuple[Job, bool]]:
    """Enqueue many jobs in one transaction (all or none): for each, in order, the job and
    whether it was created (False: its owner's idempotency key named an existing job).
    KeysReused (before anything is written) when a key names a job of another request."""
    insert = _insert_batch_postgres if db.native_statements else _insert_batch
    for attempt in range(2):
        try:
            return await insert(db, batch, now=now, actor=actor)
        except (IntegrityError, asyncpg.UniqueViolationError):
            # Another request created one of these idempotency keys meanwhile: once more,
            # and the keys it made are found as existing.
            if attempt or not any(new.idempotency_key for new in batch):
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Plan:
    """A batch against the jobs its keys already name: per item, the existing job or the
    id of a new one."""

    answers: list[Job | None]
    fresh: list[tuple[str, NewJob]]


def _plan(
    batch: Sequence[NewJob], existing: dict[tuple[str, str], Job], *, refuse_reused: bool = True
) -> _Plan:
    """`refuse_reused=False`: a key that names a job of another request answers with that
    job (single creates, whose caller compares the requests), instead of KeysReused."""
    answers: list[Job | None] = []
    fresh: list[tuple[str, NewJob]] = []
    for new in batch:
        found = existing.get((new.owner, new.idempotency_key)) if new.idempotency_key else None
        answers.append(found)
        if found is None:
            fresh.append((new_id(), new))
    reused = [
        index
        for index, (new, found) in enumerate(zip(batch, answers, strict=True))
        if found is not None and found.request_hash != new.request_hash
    ]
    if reused and refuse_reused:
        raise KeysReused(reused)  # before anything is written: all or none
    return _Plan(answers, fresh)


def _answered(plan: _Plan, made: dict[str, Job]) -> list[tuple[Job, bool]]:
    new_ids = iter(job_id for job_id, _ in plan.fresh)
    return [
        (found, False) if found is not None else (made[next(new_ids)], True)
        for found in plan.answers
    ]


async def _insert_batch(
    db: Database, batch: Sequence[NewJob], *, now: datetime, actor: Actor | None
) -> list[tuple[Job, bool]]:
    """The portable form: rows, events and audit records as three batched statements."""
    async with db.write() as tx:
        plan = _plan(batch, await _by_idempotency_keys(tx.conn, batch))
        made = await _write_new(tx, [(job_id, new, now, actor) for job_id, new in plan.fresh])
    return _answered(plan, made)


async def _write_new(
    tx: Tx, fresh: Sequence[tuple[str, NewJob, datetime, Actor | None]]
) -> dict[str, Job]:
    """New jobs' rows, "created" events and audit records (each with its own time and
    actor), as three batched statements, and the wake-up; the jobs by id."""
    if not fresh:
        return {}
    rows = [_row_of(new, job_id, now) for job_id, new, now, _ in fresh]
    await tx.insert_many(jobs, rows)
    await add_events(
        tx,
        [
            transition_row(job_id, None, Event.CREATED, now, attempt=0)
            for job_id, _, now, _ in fresh
        ],
    )
    await tx.insert_many(
        audit_events,
        audit.rows_of_each(
            audit.Action.JOB_CREATED,
            [
                (actor, Target("job", job_id, new.owner), {"type": new.type}, now)
                for job_id, new, now, actor in fresh
            ],
        ),
    )
    await tx.signal(CHANNEL_JOBS)
    return {row["id"]: _as_written(row) for row in rows}


# A group commit takes at most this many single enqueues in one transaction.
GROUP_COMMIT_MAX = 500

# Groups written at once on PostgreSQL: creates beyond these go together in the next free
# one. (SQLite has one writer: one group at a time.)
POSTGRES_GROUPS_IN_FLIGHT = 4


@dataclass
class _Asked:
    new: NewJob
    now: datetime
    actor: Actor | None
    answer: asyncio.Future[tuple[Job, bool]]


class _GroupCommit:
    """Single enqueues gathered into groups, each written in one transaction.

    SQLite has one writer: each create waited for the transactions before it, and each
    of those handed five or six statements to the driver's thread one by one (~2.6 ms a
    create; 180 creates a second through the API, whatever the concurrency). The creates
    that arrive while a transaction runs go together in the next one, written as a batch
    (three statements however many), each with its own time, actor and idempotency key;
    a create that finds the writer idle goes at once, so nothing waits on a timer.
    PostgreSQL: up to POSTGRES_GROUPS_IN_FLIGHT statements at once, a create that finds
    one free written at once by its own task (one statement, as alone); the creates that
    arrive while all are busy go together in the next free one (one statement and one
    commit for the group instead of one each: ~40% of a create's CPU under load was its
    own statement and commit). A group that fails is written again one create at a time,
    so a bad job fails only its own request. A key repeated within a group waits for the
    next one, which finds the job the first made (on PostgreSQL, groups in flight together
    meet at the key's unique index: one makes the job, the other finds it)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._postgres = db.native_statements
        self._max_busy = POSTGRES_GROUPS_IN_FLIGHT if self._postgres else 1
        self._waiting: list[_Asked] = []
        self._busy = 0  # groups being written, by a writer task or by a create itself
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writers: set[asyncio.Task[None]] = set()

    async def insert(self, new: NewJob, now: datetime, actor: Actor | None) -> tuple[Job, bool]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # The database outlived an event loop (a script's asyncio.run, then another):
            # what that loop left waiting went with it.
            self._loop, self._waiting, self._busy, self._writers = loop, [], 0, set()
        if self._postgres and self._busy < self._max_busy and not self._waiting:
            self._busy += 1
            try:
                return await _insert_job_postgres(self._db, new, now=now, actor=actor)
            finally:
                self._busy -= 1
                self._start_writer()  # for what came meanwhile
        answer: asyncio.Future[tuple[Job, bool]] = loop.create_future()
        self._waiting.append(_Asked(new, now, actor, answer))
        self._start_writer()
        return await answer

    def _start_writer(self) -> None:
        if self._waiting and self._busy < self._max_busy and self._loop is not None:
            self._busy += 1
            writer = self._loop.create_task(self._write_all(), name="enqueue-group-commit")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)

    def _next_group(self) -> list[_Asked]:
        group: list[_Asked] = []
        later: list[_Asked] = []
        keys: set[tuple[str, str]] = set()
        for asked in self._waiting:
            if asked.answer.done():  # its request went away before it was written
                continue
            key = (asked.new.owner, asked.new.idempotency_key or "")
            if len(group) >= GROUP_COMMIT_MAX or (asked.new.idempotency_key and key in keys):
                later.append(asked)
                continue
            keys.add(key)
            group.append(asked)
        self._waiting = later
        return group

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                group = self._next_group()
                if not group:
                    continue
                try:
                    await self._write(group)
                except BaseException as error:  # cancelled at shutdown: no create waits
                    for asked in group:
                        if not asked.answer.done():
                            asked.answer.set_exception(error)
                    raise
        finally:
            self._busy -= 1

    async def _write(self, group: list[_Asked]) -> None:
        try:
            if self._postgres:
                answers = await _insert_group_postgres(self._db, group)
            else:
                answers = await _insert_group(self._db, group)
        except Exception as error:
            if len(group) == 1 or is_outage(error):
                # The database out of reach fails every create alike: no point in asking
                # it again one by one, each waiting out its own connection attempt.
                for asked in group:
                    if not asked.answer.done():
                        asked.answer.set_exception(error)
                return
            for asked in group:  # one at a time: only the bad create fails
                await self._write([asked])
            return
        for asked, answer in zip(group, answers, strict=True):
            if not asked.answer.done():  # its request may have gone away meanwhile
                asked.answer.set_result(answer)


_group_commits: weakref.WeakKeyDictionary[Database, _GroupCommit] = weakref.WeakKeyDictionary()


def _group_commit_of(db: Database) -> _GroupCommit:
    group_commit = _group_commits.get(db)
    if group_commit is None:
        group_commit = _group_commits[db] = _GroupCommit(db)
    return group_commit


async def _insert_group(db: Database, group: Sequence[_Asked]) -> list[tuple[Job, bool]]:
    """A group of single enqueues in one transaction: per create, the job its key already
    names (the caller compares the requests), or a new one with its own time and actor."""
    batch = [asked.new for asked in group]
    async with db.write() as tx:
        plan = _plan(batch, await _by_idempotency_keys(tx.conn, batch), refuse_reused=False)
        to_make = [a for a, found in zip(group, plan.answers, strict=True) if found is None]
        made = await _write_new(
            tx,
            [
                (job_id, new, asked.now, asked.actor)
                for (job_id, new), asked in zip(plan.fresh, to_make, strict=True)
            ],
        )
    return _answered(plan, made)


async def _insert_group_postgres(db: Database, group: Sequence[_Asked]) -> list[tuple[Job, bool]]:
    """PostgreSQL: the group in one statement (INSERT_GROUP); a create whose key named an
    existing job is answered with that job, as INSERT_JOB's caller would be."""
    if len(group) == 1:
        only = group[0]
        return [await _insert_job_postgres(db, only.new, now=only.now, actor=only.actor)]
    ids = [new_id() for _ in group]
    args = postgres.insert_group_args(
        db.sealer, [(job_id, a.new, a.now, a.actor) for job_id, a in zip(ids, group, strict=True)]
    )
    async with db.asyncpg_connection(queue=True) as conn:
        made = {record["id"] for record in await conn.fetch(postgres.INSERT_GROUP, *args)}
    if made:
        db.wake(CHANNEL_JOBS)
    answers: list[tuple[Job, bool]] = []
    for job_id, asked in zip(ids, group, strict=True):
        if job_id in made:
            answers.append((as_inserted(job_id, asked.new, asked.now), True))
        else:  # its key named a job: asked alone, which answers with that job (rare)
            answers.append(
                await _insert_job_postgres(db, asked.new, now=asked.now, actor=asked.actor)
            )
    return answers


async def _insert_batch_postgres(
    db: Database, batch: Sequence[NewJob], *, now: datetime, actor: Actor | None
) -> list[tuple[Job, bool]]:
    """PostgreSQL: the keys looked up in one statement, then rows, events, audit records
    and the wake-up in one more, the batch passed as arrays."""
    keyed = [(new.owner, new.idempotency_key) for new in batch if new.idempotency_key]
    async with db.asyncpg_connection() as conn, conn.transaction():
        existing: dict[tuple[str, str], Job] = {}
        if keyed:
            owners, keys = zip(*keyed, strict=True)
            for record in await conn.fetch(postgres.JOBS_BY_KEYS, list(owners), list(keys)):
                job = postgres.job_from_record(record, db.sealer)
                existing[(job.owner, job.idempotency_key or "")] = job
        plan = _plan(batch, existing)
        if plan.fresh:
            args = postgres.insert_jobs_args(db.sealer, plan.fresh, now, actor)
            made = await conn.fetchval(postgres.INSERT_JOBS, *args)
            assert made == len(plan.fresh)  # a key taken meanwhile raised instead
    return _answered(plan, {job_id: as_inserted(job_id, new, now) for job_id, new in plan.fresh})


async def _by_idempotency_keys(
    conn: AsyncConnection, batch: Sequence[NewJob]
) -> dict[tuple[str, str], Job]:
    """The jobs the batch's idempotency keys already name, by (owner, key)."""
    keys = [(new.owner, new.idempotency_key) for new in batch if new.idempotency_key]
    if not keys:
        return {}
    query = sa.select(jobs).where(
        sa.tuple_(jobs.c.owner, jobs.c.idempotency_key).in_([tuple(key) for key in keys])
    )
    return {
        (row["owner"], row["idempotency_key"]): Job.from_row(row)
        for row in (await conn.execute(query)).mappings().all()
    }


async def _by_idempotency_key(conn: AsyncConnection, owner: str, key: str) -> Job | None:
    query = sa.select(jobs).where(jobs.c.owner == owner, jobs.c.idempotency_key == key)
    row = (await conn.execute(query)).mappings().first()
    return Job.from_row(row) if row else None


async def get_job(db: Database, job_id: str, *, owner: str | None = None) -> Job | None:
    """The job, or None if it does not exist or (with `owner`) belongs to someone else."""
    query = sa.select(jobs).where(jobs.c.id == job_id)
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return Job.from_row(row) if row else None


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    more: bool  # older jobs follow the last of these


async def list_jobs(
    db: Database,
    *,
    owner: str | None,
    status: JobStatus | None = None,
    type: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> JobPage:
    """Newest first, keyset-paginated on the time-ordered id: the page after the job
    `before` is the one that starts below it."""
    query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit + 1)
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    if status is not None:
        query = query.where(jobs.c.status == status.value)
    if type is not None:
        query = query.where(jobs.c.type == type)
    if before is not None:
        query = query.where(jobs.c.id < before)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return JobPage([Job.from_row(row) for row in rows[:limit]], len(rows) > limit)


async def _lock_owned_job(conn: AsyncConnection, job_id: str, owner: str | None) -> Job:
    query = sa.select(jobs).where(jobs.c.id == job_id).with_for_update()
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return Job.from_row(row)


async def request_cancel(
    db: Database, job_id: str, *, owner: str | None, now: datetime, actor: Actor | None = None
) -> Job:
    """Cancel a job: a pending one at once; a running one is flagged and its worker told.
    Cancelling a job that already ended is a conflict."""
    async with db.write() as tx:
        job = await _lock_owned_job(tx.conn, job_id, owner)
        if job.status.is_terminal:
            raise Conflict(f"job {job_id} already ended as {job.status.value}; nothing to cancel")
        if job.status == JobStatus.PENDING:
            values: dict[str, Any] = {
                "status": next_state(job.status, Event.CANCELED).value,
                "completed_at": now,
                "error_kind": "canceled",
                "error_message": "canceled before it started",
            }
            event = transition_row(job_id, job.status, Event.CANCELED, now, attempt=job.attempts)
        else:
            if job.cancel_requested:
                return job
            values = {"cancel_requested": True}
            event = event_row(job_id, Event.CANCEL_REQUESTED, now, attempt=job.attempts)
            await tx.signal(CHANNEL_CANCEL, job_id)
        update = (
            sa.update(jobs)
            .where(jobs.c.id == job_id)
            .values(updated_at=now, **values)
            .returning(*jobs.c)
        )
        row = (await tx.conn.execute(update)).mappings().one()
        await add_events(tx, [event])
        await audit.record(
            tx.conn, actor, audit.Action.JOB_CANCELED, Target("job", job_id, job.owner), now
        )
        if row["status"] == JobStatus.CANCELED.value and await owe_notifications(
            tx.conn, [job_id], now
        ):
            await tx.signal(CHANNEL_OUTBOX)
    return Job.from_row(row)


async def retry_job(
    db: Database, job_id: str, *, owner: str | None, now: datetime, actor: Actor | None = None
) -> Job:
    """Run a failed or canceled job again, from its memoised steps; recorded as an event."""
    async with db.write() as tx:
        job = await _lock_owned_job(tx.conn, job_id, owner)
        if job.status not in sources_of(Event.RETRIED):
            raise Conflict(
                f"job {job_id} is {job.status.value}; only failed or canceled jobs can be retried"
            )
        update = (
            sa.update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                status=next_state(job.status, Event.RETRIED).value,
                substate=None,
                result=None,
                error_message=None,
                error_kind=None,
                error_retryable=None,
                completed_at=None,
                cancel_requested=False,
                attempts=0,
                retry_count=jobs.c.retry_count + 1,
                progress=0.0,
                progress_message=None,
                run_at=now,
                updated_at=now,
            )
            .returning(*jobs.c)
        )
        row = (await tx.conn.execute(update)).mappings().one()
        await audit.record(
            tx.conn, actor, audit.Action.JOB_RETRIED, Target("job", job_id, job.owner), now
        )
        await add_events(
            tx,
            [
                transition_row(
                    job_id,
                    job.status,
                    Event.RETRIED,
                    now,
                    attempt=0,
                    message="retry requested by a client",
                )
            ],
        )
        await tx.signal(CHANNEL_JOBS)
    return Job.from_row(row)


# --- Deletion -----------------------------------------------------------------------------


async def delete_job(
    db: Database, job_id: str, *, owner: str | None, now: datetime, actor: Actor
) -> list[str]:
    """Delete an ended job and everything stored of it: its events, memoised steps,
    notifications and deliveries, and the content of its model calls. The calls' usage
    stays (its cost was spent), as a call outside any job: owner and type, no content.
    Returns the provider's response ids, for the caller to delete there. A job that has
    not ended is a Conflict (cancel it first)."""
    async with db.write() as tx:
        job = await _lock_owned_job(tx.conn, job_id, owner)
        if not job.status.is_terminal:
            raise Conflict(f"job {job_id} is {job.status.value}; it can be deleted once it ends")
        calls = provider_calls.c
        response_ids = list(
            (
                await tx.conn.execute(sa.select(calls.response_id).where(calls.job_id == job_id))
            ).scalars()
        )
        await tx.conn.execute(
            sa.update(provider_calls)
            .where(calls.job_id == job_id)
            .values(owner=job.owner, job_type=job.type, output=None, error_message=None)
        )
        delivery_ids = sa.select(deliveries.c.id).where(deliveries.c.job_id == job_id)
        await tx.conn.execute(
            sa.delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(delivery_ids))
        )
        for table in (deliveries, notifications, job_steps, job_events, job_feedback):
            await tx.conn.execute(sa.delete(table).where(table.c.job_id == job_id))
        await tx.conn.execute(sa.delete(jobs).where(jobs.c.id == job_id))
        await objects.doom(tx.conn, [job.result_object], now)
        await audit.record(
            tx.conn,
            actor,
            audit.Action.JOB_DELETED,
            Target("job", job_id, job.owner),
            now,
            detail={"type": job.type, "provider_responses": len(response_ids)},
        )
    return response_ids
