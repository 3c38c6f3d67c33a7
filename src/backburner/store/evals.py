"""Evaluation runs and their items: written when a run starts, read while it runs, scored
once (a compare-and-set on the status, so two workers never score one run twice)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from backburner.store import audit
from backburner.store.audit import Actor, Target
from backburner.store.database import Database
from backburner.store.schema import eval_items, eval_runs, jobs, provider_calls
from backburner.store.transitions import TERMINAL_STATUSES

RUNNING = "running"  # the items' jobs are out
GRADING = "grading"  # the jobs have ended; the rubric grader's jobs are out
SCORED = "scored"


@dataclass(frozen=True)
class EvalRun:
    id: str
    owner: str
    job_type: str
    dataset: str
    dataset_sha256: str
    model: str
    completion_window: str | None
    label: str | None
    prompt_version: str
    rubric: bool
    status: str
    items: int
    schedule_id: str | None
    slot_at: datetime | None
    created_at: datetime
    ended_at: datetime | None
    cost_usd: float | None
    duration_seconds: float | None
    scores: dict[str, float] | None
    details: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Any) -> EvalRun:
        return cls(**dict(row))


@dataclass(frozen=True)
class NewItem:
    position: int
    item_id: str
    input: dict[str, Any]
    expected: dict[str, Any]


@dataclass(frozen=True)
class ItemState:
    """An item with where its job (and its grading job) stands; `input`, `expected` and
    `result` are empty unless read with `content`."""

    position: int
    item_id: str
    input: dict[str, Any]
    expected: dict[str, Any]
    job_id: str | None
    job_status: str | None
    result: Any
    grade_job_id: str | None
    scores: dict[str, float] | None
    error: str | None
    result_object: str | None = None  # the result is this object (too big for the row)

    @property
    def deleted(self) -> bool:
        """Its job was made and has since been deleted (by someone, or retention)."""
        return self.job_id is not None and self.job_status is None

    @property
    def ended(self) -> bool:
        return self.job_status in TERMINAL_STATUSES or self.deleted


async def insert_run(
    db: Database, run: dict[str, Any], items: Sequence[NewItem], *, actor: Actor
) -> tuple[EvalRun, bool]:
    """Write a run and its items (no jobs yet); with a schedule slot that already has its
    run, that run and False."""
    try:
        async with db.write() as tx:
            await tx.conn.execute(sa.insert(eval_runs).values(**run))
            await audit.record(
                tx.conn,
                actor,
                audit.Action.EVAL_STARTED,
                Target("eval_run", run["id"], run["owner"]),
                run["created_at"],
                detail={"type": run["job_type"], "model": run["model"], "items": run["items"]},
            )
            await tx.conn.execute(
                sa.insert(eval_items),
                [
                    {
                        "run_id": run["id"],
                        "position": item.position,
                        "item_id": item.item_id,
                        "input": item.input,
                        "expected": item.expected,
                    }
                    for item in items
                ],
            )
    except IntegrityError:
        if run.get("schedule_id") is None:
            raise
        query = sa.select(eval_runs).where(
            eval_runs.c.schedule_id == run["schedule_id"], eval_runs.c.slot_at == run["slot_at"]
        )
        async with db.read() as conn:
            return EvalRun.from_row((await conn.execute(query)).mappings().one()), False
    found = await get_run(db, run["id"])
    assert found is not None
    return found, True


def _set_per_item(column: str) -> sa.Update:
    """An UPDATE of one column of an item, by run and position (run as an executemany)."""
    return (
        sa.update(eval_items)
        .where(
            eval_items.c.run_id == sa.bindparam("b_run"),
            eval_items.c.position == sa.bindparam("b_position"),
        )
        .values({column: sa.bindparam("b_value")})
    )


def _per_item(run_id: str, values: dict[int, str]) -> list[dict[str, Any]]:
    return [{"b_run": run_id, "b_position": p, "b_value": v} for p, v in values.items()]


async def attach_jobs(db: Database, run_id: str, job_ids: dict[int, str]) -> None:
    """Record the job made for each item position."""
    if not job_ids:
        return
    async with db.write() as tx:
        await tx.conn.execute(_set_per_item("job_id"), _per_item(run_id, job_ids))


async def attach_grades(db: Database, run_id: str, grade_ids: dict[int, str]) -> None:
    """Record the grading job made for each item position, and that the run is grading."""
    async with db.write() as tx:
        if grade_ids:
            await tx.conn.execute(_set_per_item("grade_job_id"), _per_item(run_id, grade_ids))
        await tx.conn.execute(
            sa.update(eval_runs)
            .where(eval_runs.c.id == run_id, eval_runs.c.status == RUNNING)
            .values(status=GRADING)
        )


async def get_run(db: Database, run_id: str) -> EvalRun | None:
    async with db.read() as conn:
        row = (
            (await conn.execute(sa.select(eval_runs).where(eval_runs.c.id == run_id)))
            .mappings()
            .first()
        )
    return EvalRun.from_row(row) if row else None


async def list_runs(
    db: Database,
    *,
    limit: int,
    before: str | None = None,
    job_type: str | None = None,
) -> list[EvalRun]:
    """Runs newest first (their ids sort by creation time), after the run `before`."""
    query = sa.select(eval_runs).order_by(eval_runs.c.id.desc())
    if before is not None:
        query = query.where(eval_runs.c.id < before)
    if job_type is not None:
        query = query.where(eval_runs.c.job_type == job_type)
    async with db.read() as conn:
        rows = (await conn.execute(query.limit(limit))).mappings().all()
    return [EvalRun.from_row(row) for row in rows]


async def unfinished_runs(db: Database, *, limit: int = 50) -> list[EvalRun]:
    query = (
        sa.select(eval_runs)
        .where(eval_runs.c.status.in_([RUNNING, GRADING]))
        .order_by(eval_runs.c.created_at)
        .limit(limit)
    )
    async with db.read() as conn:
        return [EvalRun.from_row(row) for row in (await conn.execute(query)).mappings().all()]


async def item_states(db: Database, run_id: str, *, content: bool = True) -> list[ItemState]:
    """The run's items in order, each with its job's status; with `content`, also the
    item's input and expectations and the job's result (sealed columns, opened only when
    asked: the rounds that only count ended jobs need none of them)."""
    c = eval_items.c
    columns = [c.position, c.item_id, c.job_id, c.grade_job_id, c.scores, c.error, jobs.c.status]
    if content:
        columns += [c.input, c.expected, jobs.c.result, jobs.c.result_object]
    query = (
        sa.select(*columns)
        .select_from(eval_items.outerjoin(jobs, jobs.c.id == c.job_id))
        .where(c.run_id == run_id)
        .order_by(c.position)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        ItemState(
            position=row["position"],
            item_id=row["item_id"],
            input=row["input"] if content else {},
            expected=row["expected"] if content else {},
            job_id=row["job_id"],
            job_status=row["status"],
            result=row["result"] if content else None,
            grade_job_id=row["grade_job_id"],
            scores=row["scores"],
            error=row["error"],
            result_object=row["result_object"] if content else None,
        )
        for row in rows
    ]


async def job_states(db: Database, job_ids: Sequence[str]) -> dict[str, tuple[str, Any]]:
    """Status and result of some jobs (the grading jobs of a run)."""
    if not job_ids:
        return {}
    query = sa.select(jobs.c.id, jobs.c.status, jobs.c.result).where(jobs.c.id.in_(job_ids))
    async with db.read() as conn:
        return {row[0]: (row[1], row[2]) for row in (await conn.execute(query)).all()}


async def cost_of(db: Database, job_ids: Sequence[str]) -> float | None:
    """What the jobs' model calls cost (None: none priced)."""
    if not job_ids:
        return None
    query = sa.select(sa.func.sum(provider_calls.c.cost_usd)).where(
        provider_calls.c.job_id.in_(job_ids)
    )
    async with db.read() as conn:
        total = (await conn.execute(query)).scalar()
    return None if total is None else float(total)


async def last_job_end(db: Database, job_ids: Sequence[str]) -> datetime | None:
    if not job_ids:
        return None
    query = sa.select(sa.func.max(jobs.c.completed_at)).where(jobs.c.id.in_(job_ids))
    async with db.read() as conn:
        value: datetime | None = (await conn.execute(query)).scalar()  # max keeps the UTC type
    return value


@dataclass(frozen=True)
class ItemScore:
    position: int
    scores: dict[str, float]
    error: str | None


async def finish_run(
    db: Database,
    run_id: str,
    *,
    item_scores: Sequence[ItemScore],
    scores: dict[str, float],
    details: dict[str, Any],
    cost_usd: float | None,
    ended_at: datetime,
    duration_seconds: float,
) -> bool:
    """Store a run's scores, once: False when another process scored it first."""
    async with db.write() as tx:
        claimed = await tx.conn.execute(
            sa.update(eval_runs)
            .where(eval_runs.c.id == run_id, eval_runs.c.status != SCORED)
            .values(
                status=SCORED,
                scores=scores,
                details=details,
                cost_usd=cost_usd,
                ended_at=ended_at,
                duration_seconds=duration_seconds,
            )
        )
        if claimed.rowcount != 1:
            return False
        if item_scores:
            await tx.conn.execute(
                sa.update(eval_items)
                .where(
                    eval_items.c.run_id == sa.bindparam("b_run"),
                    eval_items.c.position == sa.bindparam("b_position"),
                )
                .values(scores=sa.bindparam("b_scores"), error=sa.bindparam("b_error"))
                .execution_options(synchronize_session=False),
                [
                    {
                        "b_run": run_id,
                        "b_position": i.position,
                        "b_scores": i.scores,
                        "b_error": i.error,
                    }
                    for i in item_scores
                ],
            )
    return True


async def scored_history(
    db: Database, *, job_type: str | None = None, limit: int = 200
) -> list[EvalRun]:
    """Scored runs, oldest first (the newest `limit`), for charts and alerts."""
    query = sa.select(eval_runs).where(eval_runs.c.status == SCORED)
    if job_type is not None:
        query = query.where(eval_runs.c.job_type == job_type)
    query = query.order_by(eval_runs.c.created_at.desc(), eval_runs.c.id.desc()).limit(limit)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [EvalRun.from_row(row) for row in reversed(rows)]


async def previous_scored(db: Database, run: EvalRun) -> EvalRun | None:
    """The scored run of the same type before this one (any model): what it is compared
    with by default."""
    query = (
        sa.select(eval_runs)
        .where(
            eval_runs.c.status == SCORED,
            eval_runs.c.job_type == run.job_type,
            eval_runs.c.id != run.id,
            eval_runs.c.created_at <= run.created_at,
        )
        .order_by(eval_runs.c.created_at.desc(), eval_runs.c.id.desc())
        .limit(1)
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return EvalRun.from_row(row) if row else None
