"""Memoised step results and model calls of a job: what makes a re-run resume, not redo."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from backburner.store import postgres
from backburner.store.database import Database
from backburner.store.events import add_events, event_row
from backburner.store.models import (
    OUTSTANDING_CALL_STATUSES,
    RETRIED_CALL_STATUSES,
    SUBSTATE_WAITING_PROVIDER,
    ProviderCall,
    new_id,
)
from backburner.store.schema import job_steps, jobs, provider_calls
from backburner.store.sealed import seal_for, sealer_or_fail
from backburner.store.transitions import Event, JobStatus
from backburner.store.usage import TOKEN_COLUMNS, add_spend, month_of, token_sums

# A tool call's step keeps the call with its output, so what the model asked for can be
# checked afterwards (evaluations compare tool calls). Steps stored before this held the
# output alone; both read back as the output.
TOOL_CALL = "backburner.tool_call"


def tool_call_record(name: str, arguments: dict[str, Any], output: Any) -> dict[str, Any]:
    return {TOOL_CALL: 1, "name": name, "arguments": arguments, "output": output}


def is_tool_call_record(value: Any) -> bool:
    return isinstance(value, dict) and value.get(TOOL_CALL) == 1 and "output" in value


def tool_output(value: Any) -> Any:
    """A tool call step's output, whichever way it was stored."""
    return value["output"] if is_tool_call_record(value) else value


def tool_calls_of(steps: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool calls recorded in a job's steps ({"name", "arguments"}), in step-key order
    (steps from before calls were recorded are left out)."""
    return [
        {"name": value["name"], "arguments": value["arguments"]}
        for _key, value in sorted(steps.items())
        if is_tool_call_record(value)
    ]


async def load_steps(db: Database, job_id: str) -> dict[str, Any]:
    query = sa.select(job_steps.c.key, job_steps.c.value).where(job_steps.c.job_id == job_id)
    async with db.read() as conn:
        return {row[0]: row[1] for row in (await conn.execute(query)).all()}


async def save_step(db: Database, job_id: str, key: str, value: Any, *, now: datetime) -> Any:
    """Store a step's result. If another attempt stored it first, that value wins and is
    returned, so every reader sees one result per step."""
    try:
        async with db.write() as tx:
            await tx.conn.execute(
                sa.insert(job_steps).values(job_id=job_id, key=key, value=value, created_at=now)
            )
        return value
    except IntegrityError:
        query = sa.select(job_steps.c.value).where(
            job_steps.c.job_id == job_id, job_steps.c.key == key
        )
        async with db.read() as conn:
            return (await conn.execute(query)).scalar()


async def load_calls(db: Database, job_id: str) -> dict[str, ProviderCall]:
    query = sa.select(provider_calls).where(provider_calls.c.job_id == job_id)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return {row["key"]: ProviderCall.from_row(row) for row in rows}


async def list_calls(db: Database, job_id: str) -> list[ProviderCall]:
    """A job's model calls in the order they were placed, without their outputs (sealed;
    the worker's replay reads them with `load_calls`): what pages and the API show."""
    shown = [column for column in provider_calls.c if column.name != "output"]
    query = (
        sa.select(*shown, sa.null().label("output"))
        .where(provider_calls.c.job_id == job_id)
        .order_by(provider_calls.c.id)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [ProviderCall.from_row(row) for row in rows]


async def record_submitted(
    db: Database,
    *,
    job_id: str,
    key: str,
    provider: str,
    model: str,
    response_id: str,
    status: str,
    attempt: int,
    now: datetime,
    completion_window: str | None = None,
    service_tier: str | None = None,
    replaces: str | None = None,
) -> None:
    """Persist a response id the provider accepted, before anyone waits on it. A key that
    had a failed call before is overwritten: that call is over and this one replaces it
    (its tokens and cost stay counted; the event names the response it `replaces`)."""
    if db.native_statements:
        async with db.asyncpg_connection() as conn:
            await conn.execute(
                postgres.RECORD_SUBMITTED,
                job_id,
                key,
                provider,
                model,
                response_id,
                status,
                attempt,
                now,
                completion_window,
                service_tier,
                replaces,
            )
        return
    values = {
        "provider": provider,
        "model": model,
        "response_id": response_id,
        "status": status,
        "attempt": attempt,
        "output": None,
        "error_message": None,
        "submitted_at": now,
        "completed_at": None,
        "completion_window": completion_window,
        "service_tier": service_tier,
    }
    async with db.write() as tx:
        updated = await tx.conn.execute(
            sa.update(provider_calls)
            .where(provider_calls.c.job_id == job_id, provider_calls.c.key == key)
            .values(**values, responses=provider_calls.c.responses + 1)
        )
        if updated.rowcount == 0:
            await tx.conn.execute(
                sa.insert(provider_calls).values(job_id=job_id, key=key, **values)
            )
        await tx.conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
            .values(substate=SUBSTATE_WAITING_PROVIDER, updated_at=now)
        )
        await add_events(
            tx,
            [
                event_row(
                    job_id,
                    Event.MODEL_CALL_SUBMITTED,
                    now,
                    attempt=attempt,
                    data={
                        "key": key,
                        "response_id": response_id,
                        "model": model,
                        "completion_window": completion_window,
                        "replaces": replaces,
                    },
                )
            ],
        )


async def record_finished(
    db: Database,
    *,
    job_id: str,
    key: str,
    status: str,
    output: Any,
    error_message: str | None,
    usage: dict[str, int],
    attempt: int,
    now: datetime,
    owner: str,
    cost: tuple[float, float] | None = None,
) -> None:
    """Record how a model call ended; the job stops waiting once none is outstanding.
    `cost` (USD paid, USD at the standard price) is added to the call and to the owner's
    month in the same transaction."""
    cost_usd, list_cost_usd = cost if cost is not None else (None, None)
    month = month_of(now)
    if db.native_statements:
        async with db.asyncpg_connection() as conn:
            await conn.execute(
                postgres.RECORD_FINISHED,
                job_id,
                key,
                status,
                seal_for(provider_calls.c.output, sealer_or_fail(db.sealer), output),
                error_message,
                now,
                usage.get("input_tokens", 0),
                usage.get("cached_tokens", 0),
                usage.get("output_tokens", 0),
                usage.get("reasoning_tokens", 0),
                attempt,
                cost_usd,
                list_cost_usd,
                owner,
                month,
            )
        return
    c = provider_calls.c
    added = {
        name: getattr(c, name) + usage.get(name, 0)
        for name in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
    }
    if cost_usd is not None and list_cost_usd is not None:
        added["cost_usd"] = sa.func.coalesce(c.cost_usd, 0.0) + cost_usd
        added["list_cost_usd"] = sa.func.coalesce(c.list_cost_usd, 0.0) + list_cost_usd
        if status in RETRIED_CALL_STATUSES:
            added["retry_cost_usd"] = sa.func.coalesce(c.retry_cost_usd, 0.0) + cost_usd
    async with db.write() as tx:
        row = (
            await tx.conn.execute(
                sa.update(provider_calls)
                .where(c.job_id == job_id, c.key == key)
                .values(
                    status=status,
                    output=output,
                    error_message=error_message,
                    completed_at=now,
                    **added,
                )
                .returning(c.response_id)
            )
        ).first()
        still_waiting = (
            sa.select(c.id)
            .where(c.job_id == job_id, c.status.in_(OUTSTANDING_CALL_STATUSES))
            .exists()
        )
        await tx.conn.execute(
            sa.update(jobs)
            .where(
                jobs.c.id == job_id,
                jobs.c.substate == SUBSTATE_WAITING_PROVIDER,
                ~still_waiting,
            )
            .values(substate=None, updated_at=now)
        )
        if row is not None and cost_usd:
            await add_spend(tx.conn, owner, month, cost_usd)
        await add_events(
            tx,
            [
                event_row(
                    job_id,
                    Event.MODEL_CALL_FINISHED,
                    now,
                    attempt=attempt,
                    message=error_message,
                    data={
                        "key": key,
                        "status": status,
                        "response_id": row[0] if row else None,
                        **{name: usage.get(name, 0) for name in TOKEN_COLUMNS},
                        "cost_usd": cost_usd,
                    },
                )
            ],
        )


async def usage_totals(db: Database, job_id: str) -> dict[str, Any]:
    c = provider_calls.c
    query = sa.select(
        sa.func.count(),
        *token_sums(),
        sa.func.sum(c.cost_usd),
        sa.func.sum(c.list_cost_usd),
        sa.func.coalesce(sa.func.sum(c.responses), 0),
        sa.func.sum(c.retry_cost_usd),
    ).where(c.job_id == job_id)
    async with db.read() as conn:
        calls, *tokens, cost, list_cost, responses, retry_cost = (await conn.execute(query)).one()
    return {
        "model_calls": int(calls),
        "responses": int(responses),
        **{name: int(total) for name, total in zip(TOKEN_COLUMNS, tokens, strict=True)},
        "cost_usd": None if cost is None else float(cost),
        "list_cost_usd": None if list_cost is None else float(list_cost),
        "retry_cost_usd": float(retry_cost or 0.0),
    }


async def record_call_outside_a_job(
    db: Database,
    *,
    owner: str,
    job_type: str,
    provider: str,
    model: str,
    response_id: str,
    usage: dict[str, int],
    cost: tuple[float, float] | None,
    now: datetime,
) -> None:
    """Record a model call made for an owner outside any job (the quick path): its tokens
    and cost count in usage reports and metrics, and its cost in the owner's month."""
    cost_usd, list_cost_usd = cost if cost is not None else (None, None)
    async with db.write() as tx:
        await tx.conn.execute(
            sa.insert(provider_calls).values(
                job_id=new_id(),
                key="quick",
                provider=provider,
                model=model,
                response_id=response_id,
                status="completed",
                attempt=1,
                submitted_at=now,
                completed_at=now,
                owner=owner,
                job_type=job_type,
                cost_usd=cost_usd,
                list_cost_usd=list_cost_usd,
                **{name: usage.get(name, 0) for name in TOKEN_COLUMNS},
            )
        )
        if cost_usd:
            await add_spend(tx.conn, owner, month_of(now), cost_usd)
