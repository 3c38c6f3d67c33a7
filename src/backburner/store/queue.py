"""The worker's side of the queue: claim, leases, progress, finish, reap.

Every status this module writes comes from the state machine (`transitions`); the
PostgreSQL forms of the hottest statements (`postgres.py`) are built from the same rules
and tested against these portable ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from backburner.store import postgres
from backburner.store.database import CHANNEL_JOBS, CHANNEL_OUTBOX, Database
from backburner.store.events import add_events, event_row, transition_row
from backburner.store.models import Job, Outcome
from backburner.store.outbox import owe_notifications
from backburner.store.schema import jobs, owner_limits, workers
from backburner.store.transitions import TERMINAL_STATUSES, Event, JobStatus, next_state

PENDING = JobStatus.PENDING.value
RUNNING = JobStatus.RUNNING.value


# --- Claim and lease ----------------------------------------------------------------------


@dataclass(frozen=True)
class OwnerCaps:
    """Per-owner limits on running jobs: `default` for every owner (None: no limit), and
    whether any owner has a limit of its own (rows in `owner_limits`)."""

    default: int | None = None
    per_owner: bool = False

    @property
    def active(self) -> bool:
        return self.default is not None or self.per_owner


async def claim_jobs(
    db: Database,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    now: datetime,
    types: Sequence[str] | None = None,
    caps: OwnerCaps | None = None,
) -> list[Job]:
    """Take up to `limit` runnable jobs, highest priority first, for this worker.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on or take the
    same row. SQLite: the single writer lock makes the select-then-update atomic.
    With owner caps in force, an owner at its limit is skipped (its jobs wait, others'
    go ahead) and a batch takes no more of an owner's jobs than it has room for. The cap
    is exact on SQLite; on PostgreSQL two workers claiming at the same instant may each
    fill the same room once, so it can be passed by at most one batch.
    """
    if db.native_statements and not (caps is not None and caps.active):
        args = postgres.claim_args(
            worker_id=worker_id, limit=limit, lease_seconds=lease_seconds, now=now, types=types
        )
        if db.queue_lane:  # one statement, its plan made once by the index (_connect_args)
            async with db.asyncpg_connection(queue=True) as conn:
                records = await conn.fetch(postgres.CLAIM, *args)
        else:
            async with db.asyncpg_connection() as conn:
                await conn.execute(postgres.CLAIM_PLAN)  # opens the claim's transaction
                try:
                    records = await conn.fetch(postgres.CLAIM, *args)
                    await conn.execute("COMMIT")
                except BaseException:
                    if not conn.is_closed():
                        with contextlib.suppress(Exception):
                            await conn.execute("ROLLBACK")
                    raise
        claimed = [postgres.job_from_record(record, db.sealer) for record in records]
        claimed.sort(key=lambda job: (-job.priority, job.run_at, job.id))
        return claimed
    if caps is not None and caps.active:
        picked = _fair_pick(now, limit, types, caps)
    else:
        picked = (
            sa.select(jobs.c.id)
            .where(jobs.c.status == PENDING, jobs.c.run_at <= now)
            .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if types:
            picked = picked.where(jobs.c.type.in_(list(types)))
    picked_cte = picked.cte("picked")
    claim = (
        sa.update(jobs)
        .where(jobs.c.id.in_(sa.select(picked_cte.c.id)), jobs.c.status == PENDING)
        .values(
            status=next_state(JobStatus.PENDING, Event.STARTED).value,
            substate=None,
            lease_owner=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=jobs.c.attempts + 1,
            started_at=sa.func.coalesce(jobs.c.started_at, now),
            updated_at=now,
        )
        .returning(*jobs.c)
    )
    async with db.write() as tx:
        rows = (await tx.conn.execute(claim)).mappings().all()
        claimed = [Job.from_row(row) for row in rows]
        await add_events(
            tx,
            [
                transition_row(
                    job.id,
                    JobStatus.PENDING,
                    Event.STARTED,
                    now,
                    attempt=job.attempts,
                    data={"worker": worker_id},
                )
                for job in claimed
            ],
        )
    claimed.sort(key=lambda job: (-job.priority, job.run_at, job.id))
    return claimed


def _fair_pick(
    now: datetime, limit: int, types: Sequence[str] | None, caps: OwnerCaps
) -> sa.Select[tuple[str]]:
    """The ids to claim when owners have running-job caps: room per owner is its cap less
    what it has running; owners without room are skipped while scanning the queue."""
    no_limit = 2**31 - 1
    default = sa.literal(caps.default, sa.Integer) if caps.default is not None else sa.null()
    busy = (
        sa.select(jobs.c.owner, sa.func.count().label("n"))
        .where(jobs.c.status == RUNNING)
        .group_by(jobs.c.owner)
        .cte("busy")
    )
    owners = sa.union(sa.select(busy.c.owner), sa.select(owner_limits.c.owner)).subquery()
    room = (
        sa.select(
            owners.c.owner,
            (
                sa.func.coalesce(owner_limits.c.max_running, default)
                - sa.func.coalesce(busy.c.n, 0)
            ).label("room"),
        )
        .select_from(
            owners.outerjoin(busy, busy.c.owner == owners.c.owner).outerjoin(
                owner_limits, owner_limits.c.owner == owners.c.owner
            )
        )
        .cte("room")
    )
    candidates = (
        sa.select(jobs.c.id, jobs.c.owner, jobs.c.priority, jobs.c.run_at)
        .where(
            jobs.c.status == PENDING,
            jobs.c.run_at <= now,
            jobs.c.owner.not_in(sa.select(room.c.owner).where(room.c.room <= 0)),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=jobs)
    )
    if types:
        candidates = candidates.where(jobs.c.type.in_(list(types)))
    listed = candidates.cte("candidates")
    ranked = sa.select(
        listed.c.id,
        listed.c.owner,
        sa.func.row_number()
        .over(
            partition_by=listed.c.owner,
            order_by=(listed.c.priority.desc(), listed.c.run_at, listed.c.id),
        )
        .label("rank"),
    ).subquery()
    return (
        sa.select(ranked.c.id)
        .select_from(ranked.outerjoin(room, room.c.owner == ranked.c.owner))
        .where(ranked.c.rank <= sa.func.coalesce(room.c.room, default, no_limit))
    )


async def has_owner_caps(db: Database) -> bool:
    """Whether any owner has a running-job cap of its own."""
    query = sa.select(
        sa.select(owner_limits.c.owner).where(owner_limits.c.max_running.is_not(None)).exists()
    )
    async with db.read() as conn:
        return bool((await conn.execute(query)).scalar())


async def next_due_at(db: Database) -> datetime | None:
    """When the earliest pending job becomes runnable (for an idle worker's sleep)."""
    query = sa.select(sa.func.min(jobs.c.run_at)).where(jobs.c.status == PENDING)
    async with db.read() as conn:
        value = (await conn.execute(query)).scalar()
    if value is None:
        return None
    return value  # type: ignore[no-any-return]


async def extend_leases(
    db: Database,
    *,
    worker_id: str,
    lease_seconds: float,
    now: datetime,
    skip: Collection[str] = (),
) -> set[str]:
    """Renew the lease on every job this worker holds, except `skip` (jobs it holds but no
    longer runs: their leases run out and the reaper hands them on); returns the ids
    renewed."""
    mine = sa.select(jobs.c.id).where(jobs.c.lease_owner == worker_id, jobs.c.status == RUNNING)
    if skip:
        mine = mine.where(jobs.c.id.not_in(list(skip)))
    # Rows locked in id order, as finishing locks them: two transactions that take the
    # same rows in one order cannot deadlock (the plain UPDATE locked in scan order).
    locked = mine.order_by(jobs.c.id).with_for_update().cte("locked")
    renew = (
        sa.update(jobs)
        .where(jobs.c.id == locked.c.id)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(jobs.c.id)
    )
    beat = sa.update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now)
    async with db.write() as tx:
        held = set((await tx.conn.execute(renew)).scalars().all())
        await tx.conn.execute(beat)
    return held


async def cancel_requested_ids(db: Database, *, worker_id: str) -> set[str]:
    query = sa.select(jobs.c.id).where(
        jobs.c.lease_owner == worker_id,
        jobs.c.status == RUNNING,
        jobs.c.cancel_requested.is_(True),
    )
    async with db.read() as conn:
        return set((await conn.execute(query)).scalars().all())


_FINISH = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        substate=None,
        result=sa.bindparam("b_result", type_=jobs.c.result.type),
        result_object=sa.bindparam("b_result_object", type_=sa.String()),
        result_bytes=sa.bindparam("b_result_bytes", type_=sa.BigInteger()),
        error_message=sa.bindparam("b_error_message"),
        error_kind=sa.bindparam("b_error_kind"),
        error_retryable=sa.bindparam("b_error_retryable", type_=sa.Boolean()),
        completed_at=sa.bindparam("b_completed_at", type_=jobs.c.completed_at.type),
        run_at=sa.func.coalesce(sa.bindparam("b_run_at", type_=jobs.c.run_at.type), jobs.c.run_at),
        progress=sa.func.coalesce(sa.bindparam("b_progress", type_=sa.Float()), jobs.c.progress),
        retry_count=jobs.c.retry_count + sa.bindparam("b_retry_inc", type_=sa.Integer()),
        attempts=jobs.c.attempts - sa.bindparam("b_attempt_dec", type_=sa.Integer()),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=sa.bindparam("b_now", type_=jobs.c.updated_at.type),
    )
)


def _finish_row(outcome: Outcome, now: datetime) -> postgres.FinishRow:
    """What the finish writes for an outcome at `now`, for both of its forms."""
    status = outcome.status
    data: dict[str, Any] = {}
    if outcome.error_kind:
        data["error_kind"] = outcome.error_kind
    if status == JobStatus.PENDING and outcome.run_at is not None:
        data["run_at"] = outcome.run_at.isoformat()
    return postgres.FinishRow(
        id=outcome.job_id,
        attempt=outcome.attempt,
        status=status,
        result=outcome.result,
        error_message=outcome.error_message,
        error_kind=outcome.error_kind,
        completed_at=now if status in TERMINAL_STATUSES else None,
        run_at=outcome.run_at if status == JobStatus.PENDING else None,
        progress=1.0 if status == JobStatus.SUCCEEDED else None,
        retry_inc=1 if outcome.count_as_retry else 0,
        attempt_dec=1 if outcome.give_back_attempt else 0,
        event=outcome.event,
        event_data=data or None,
        error_retryable=outcome.retryable,
        result_object=outcome.result_object,
        result_bytes=outcome.result_bytes,
    )


def _finish_params(row: postgres.FinishRow, now: datetime) -> dict[str, Any]:
    """The portable UPDATE's parameters (_FINISH) for a row."""
    return {
        "b_id": row.id,
        "b_status": row.status.value,
        "b_result": row.result,
        "b_result_object": row.result_object,
        "b_result_bytes": row.result_bytes,
        "b_error_message": row.error_message,
        "b_error_kind": row.error_kind,
        "b_error_retryable": row.error_retryable,
        "b_completed_at": row.completed_at,
        "b_run_at": row.run_at,
        "b_progress": row.progress,
        "b_retry_inc": row.retry_inc,
        "b_attempt_dec": row.attempt_dec,
        "b_now": now,
    }


def _finish_event(row: postgres.FinishRow, now: datetime) -> dict[str, Any]:
    return transition_row(
        row.id,
        JobStatus.RUNNING,
        row.event,
        now,
        attempt=row.attempt,
        message=row.error_message,
        data=row.event_data,
    )


async def finish_jobs(
    db: Database, *, worker_id: str, outcomes: Sequence[Outcome], now: datetime
) -> set[str]:
    """Record how attempts ended, in one transaction. Returns the ids applied; an outcome for
    a job this worker no longer holds (its lease expired and it was reaped) is dropped."""
    if not outcomes:
        return set()
    if db.native_statements:
        return await _finish_jobs_postgres(db, worker_id, outcomes, now)
    ids = [outcome.job_id for outcome in outcomes]
    held_q = (
        sa.select(jobs.c.id, jobs.c.attempts)
        .where(jobs.c.id.in_(ids), jobs.c.lease_owner == worker_id, jobs.c.status == RUNNING)
        .order_by(jobs.c.id)  # the one lock order (see extend_leases)
        .with_for_update()
    )
    async with db.write() as tx:
        held = {row[0]: row[1] for row in (await tx.conn.execute(held_q)).all()}
        applied = [o for o in outcomes if held.get(o.job_id) == o.attempt]
        if applied:
            rows = [_finish_row(o, now) for o in applied]
            await tx.conn.execute(_FINISH, [_finish_params(row, now) for row in rows])
            await add_events(tx, [_finish_event(row, now) for row in rows])
            if any(o.status == JobStatus.PENDING for o in applied):
                await tx.signal(CHANNEL_JOBS)
            ended = [o.job_id for o in applied if o.status in TERMINAL_STATUSES]
            if await owe_notifications(tx.conn, ended, now):
                await tx.signal(CHANNEL_OUTBOX)
    return {o.job_id for o in applied}


async def _finish_jobs_postgres(
    db: Database, worker_id: str, outcomes: Sequence[Outcome], now: datetime
) -> set[str]:
    async with db.asyncpg_connection(queue=True) as conn:
        args = postgres.finish_args(
            db.sealer, worker_id, [_finish_row(o, now) for o in outcomes], now
        )
        records = await conn.fetch(postgres.FINISH, *args)
        if any(record["status"] == PENDING for record in records):
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL_JOBS)
        if records and records[0]["owed"]:
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL_OUTBOX)
    return {record["id"] for record in records}


async def set_progress(
    db: Database,
    *,
    job_id: str,
    worker_id: str,
    fraction: float,
    message: str | None,
    attempt: int,
    now: datetime,
) -> bool:
    """Record progress; returns False when this worker no longer holds the job."""
    update = (
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.lease_owner == worker_id, jobs.c.status == RUNNING)
        .values(progress=fraction, progress_message=message, updated_at=now)
    )
    async with db.write() as tx:
        result = await tx.conn.execute(update)
        if result.rowcount == 0:
            return False
        await add_events(
            tx,
            [
                event_row(
                    job_id,
                    Event.PROGRESS,
                    now,
                    attempt=attempt,
                    message=message,
                    data={"progress": fraction},
                )
            ],
        )
    return True


@dataclass(frozen=True)
class ReapedJob:
    job_id: str
    status: JobStatus
    previous_worker: str | None
    type: str
    attempt: int


async def reap_expired_leases(db: Database, *, now: datetime, limit: int = 500) -> list[ReapedJob]:
    """Give back jobs whose worker stopped renewing its lease (it died or hung).

    The attempt counts: a job out of attempts fails as `lost`; one whose cancel was
    requested ends canceled; the rest go back to pending at once.
    """
    expired_q = (
        sa.select(jobs)
        .where(jobs.c.status == RUNNING, jobs.c.lease_expires_at < now)
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    reaped: list[ReapedJob] = []
    async with db.write() as tx:
        rows = (await tx.conn.execute(expired_q)).mappings().all()
        if not rows:
            return []
        params: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for row in rows:
            job = Job.from_row(row)
            outcome = _reap_outcome(job)
            finishing = _finish_row(outcome, now)
            params.append(_finish_params(finishing, now))
            events.append({**_finish_event(finishing, now), "data": {"worker": job.lease_owner}})
            reaped.append(
                ReapedJob(job.id, outcome.status, job.lease_owner, job.type, job.attempts)
            )
        await tx.conn.execute(_FINISH, params)
        await add_events(tx, events)
        if any(r.status == JobStatus.PENDING for r in reaped):
            await tx.signal(CHANNEL_JOBS)
        ended = [r.job_id for r in reaped if r.status in TERMINAL_STATUSES]
        if await owe_notifications(tx.conn, ended, now):
            await tx.signal(CHANNEL_OUTBOX)
    return reaped


def _reap_outcome(job: Job) -> Outcome:
    if job.cancel_requested:
        return Outcome(
            job.id,
            job.attempts,
            Event.CANCELED,
            error_kind="canceled",
            error_message="canceled; its worker was lost",
        )
    if job.attempts >= job.max_attempts:
        return Outcome(
            job.id,
            job.attempts,
            Event.FAILED,
            error_kind="lost",
            error_message=f"worker lost (lease expired) on the last of {job.max_attempts} attempts",
            retryable=True,
        )
    return Outcome(
        job.id,
        job.attempts,
        Event.LEASE_EXPIRED,
        error_kind="lost",
        error_message="worker lost (lease expired); job returned to the queue",
        retryable=True,
        count_as_retry=True,
    )
