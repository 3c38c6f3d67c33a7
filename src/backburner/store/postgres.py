"""PostgreSQL forms of the hottest statements: enqueueing a job, claiming and finishing a
batch of jobs, recording a model call submitted and finished.

Each is one statement (its events written by a CTE in the same statement), with the batch
passed as arrays through `unnest`, so a batch of hundreds of jobs costs one round trip and
almost no per-row Python. Same guarantees as the portable path: one event per transition,
the lease and attempt checked in the WHERE clause, SKIP LOCKED for concurrent claimers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from backburner.store.audit import Action, Actor
from backburner.store.database import CHANNEL_JOBS
from backburner.store.models import (
    OUTSTANDING_CALL_STATUSES,
    RETRIED_CALL_STATUSES,
    Job,
    NewJob,
)
from backburner.store.outbox import asks_for_notifications, owner_listens
from backburner.store.schema import jobs
from backburner.store.sealed import (
    SealedJson,
    SealedText,
    Sealer,
    open_json,
    open_text,
    seal_for,
    sealer_or_fail,
)
from backburner.store.transitions import TERMINAL_STATUSES, Event, JobStatus, next_state

_JSON_COLUMNS = {"payload", "result", "notify"}
# Every column, JSON ones as text: we decode them, whatever codecs the driver has.
_COLUMNS = ", ".join(
    f"j.{c.name}::text AS {c.name}" if c.name in _JSON_COLUMNS else f"j.{c.name}" for c in jobs.c
)

# How CLAIM is planned behind a transaction pooler, for its transaction only (elsewhere the
# queue's own connections have these settings for the session: Database.queue_lane): by
# the pending-queue index, in the index's order, whatever the statistics say. A table
# that has just taken a burst of jobs (or was never analysed) looks almost empty to the
# planner until autovacuum's next ANALYZE, up to a minute later; it then picks a bitmap
# scan that reads every pending row and sorts them all to hand out the first hundred.
# EXPLAIN ANALYZE at 25,000 pending: 42 ms a claim that way, 1.7 ms by the index; the
# worker slowed as its backlog grew.
CLAIM_PLAN = "BEGIN; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off"

CLAIM = f"""
WITH picked AS (
    SELECT ctid FROM jobs
    WHERE status = 'pending' AND run_at <= $1 AND ($5::text[] IS NULL OR type = ANY($5))
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs SET status = 'running', substate = NULL, lease_owner = $3,
        lease_expires_at = $4, attempts = jobs.attempts + 1,
        started_at = COALESCE(jobs.started_at, $1), updated_at = $1
    -- By ctid: a direct tuple lookup whatever the statistics say. The rows are locked
    -- by this statement (FOR UPDATE above), so their ctids cannot change under us.
    WHERE jobs.ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING jobs.*
), events AS (
    INSERT INTO job_events (job_id, at, kind, from_status, to_status, attempt, data)
    SELECT id, $1, 'started', 'pending', 'running', attempts,
           jsonb_build_object('worker', $3::text)
    FROM claimed
)
SELECT {_COLUMNS} FROM claimed AS j
"""


def _created_and_audited(at: str) -> str:
    """The CTEs after a `job` CTE of jobs just inserted (returning only id, owner, type and
    status: `RETURNING *` carried the whole row, payload and all, that nothing reads): their
    "created" events, and their audit records when an actor is given ($17-$23: kind, key
    id, owner, role, address, user agent, request id; no kind, no record)."""
    return f"""created AS (
    INSERT INTO job_events (job_id, at, kind, from_status, to_status, attempt)
    SELECT id, {at}, '{Event.CREATED.value}', NULL, status, 0 FROM job
), audited AS (
    INSERT INTO audit_events (at, actor_kind, actor_key_id, actor_owner, actor_role, action,
                              target_type, target_id, owner, client_address, user_agent,
                              request_id, detail)
    SELECT {at}, $17::text, $18::text, $19::text, $20::text, '{Action.JOB_CREATED.value}',
           'job', id, owner, $21::text, $22::text, $23::text, jsonb_build_object('type', type)
    FROM job WHERE $17::text IS NOT NULL
)"""


# Enqueue one job in one round trip: the row, its "created" event and its audit record
# (when there is an actor), in one statement. The wake-up is sent after it, coalesced
# (Database.wake): a NOTIFY in the statement made every insert's commit wait its turn for
# PostgreSQL's notification queue lock. An idempotency key that names an existing job
# inserts nothing and returns no row; otherwise the row's id (the caller knows the rest:
# `jobs.as_inserted`).
INSERT_JOB = f"""
WITH job AS (
    INSERT INTO jobs (id, owner, type, status, payload, callback_url, priority, run_at,
                      created_at, updated_at, max_attempts, timeout_seconds, idempotency_key,
                      request_hash, deadline_at, notify, model, size, origin)
    VALUES ($1, $2, $3, '{next_state(None, Event.CREATED).value}', $4::jsonb, $5, $6, $7,
            $16, $16, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $24)
    ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, owner, type, status
), {_created_and_audited("$16")}
SELECT j.id FROM job AS j
"""


# A batch of jobs, as arrays: rows, events, audit records and one wake-up in one statement,
# answering how many rows it made. Idempotency keys were looked up first (JOBS_BY_KEYS) in
# the same transaction.
INSERT_JOBS = f"""
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::int[], $7::timestamptz[], $8::int[], $9::float8[], $10::text[],
                         $11::text[], $12::timestamptz[], $13::text[], $14::text[],
                         $15::float8[], $24::text[])
        AS b(id, owner, type, payload, callback_url, priority, run_at, max_attempts,
             timeout_seconds, idempotency_key, request_hash, deadline_at, notify, model, size,
             origin)
), job AS (
    INSERT INTO jobs (id, owner, type, status, payload, callback_url, priority, run_at,
                      created_at, updated_at, max_attempts, timeout_seconds, idempotency_key,
                      request_hash, deadline_at, notify, model, size, origin)
    SELECT id, owner, type, '{next_state(None, Event.CREATED).value}', payload::jsonb,
           callback_url, priority, run_at, $16, $16, max_attempts, timeout_seconds,
           idempotency_key, request_hash, deadline_at, notify::jsonb, model, size, origin
    FROM batch
    RETURNING id, owner, type, status
), {_created_and_audited("$16")}, woken AS (
    SELECT pg_notify('{CHANNEL_JOBS}', '')
)
SELECT count(*) AS made, (SELECT count(*) FROM woken) AS woken FROM job
"""

# Single creates that arrived together (`jobs._GroupCommit`), in one statement: as
# INSERT_JOB for each, with its own time ($16) and actor ($17-$23) as arrays. A create
# whose idempotency key names an existing job inserts nothing; the ids returned are those
# made. The wake-up is sent after it (Database.wake), as for INSERT_JOB.
INSERT_GROUP = f"""
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::int[], $7::timestamptz[], $8::int[], $9::float8[], $10::text[],
                         $11::text[], $12::timestamptz[], $13::text[], $14::text[],
                         $15::float8[], $16::timestamptz[], $17::text[], $18::text[],
                         $19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
                         $24::text[])
        AS b(id, owner, type, payload, callback_url, priority, run_at, max_attempts,
             timeout_seconds, idempotency_key, request_hash, deadline_at, notify, model, size,
             at, actor_kind, actor_key_id, actor_owner, actor_role, client_address,
             user_agent, request_id, origin)
), job AS (
    INSERT INTO jobs (id, owner, type, status, payload, callback_url, priority, run_at,
                      created_at, updated_at, max_attempts, timeout_seconds, idempotency_key,
                      request_hash, deadline_at, notify, model, size, origin)
    SELECT id, owner, type, '{next_state(None, Event.CREATED).value}', payload::jsonb,
           callback_url, priority, run_at, at, at, max_attempts, timeout_seconds,
           idempotency_key, request_hash, deadline_at, notify::jsonb, model, size, origin
    FROM batch
    ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, owner, type, status, created_at
), created AS (
    INSERT INTO job_events (job_id, at, kind, from_status, to_status, attempt)
    SELECT id, created_at, '{Event.CREATED.value}', NULL, status, 0 FROM job
), audited AS (
    INSERT INTO audit_events (at, actor_kind, actor_key_id, actor_owner, actor_role, action,
                              target_type, target_id, owner, client_address, user_agent,
                              request_id, detail)
    SELECT b.at, b.actor_kind, b.actor_key_id, b.actor_owner, b.actor_role,
           '{Action.JOB_CREATED.value}', 'job', j.id, j.owner, b.client_address,
           b.user_agent, b.request_id, jsonb_build_object('type', j.type)
    FROM job AS j JOIN batch AS b ON b.id = j.id
    WHERE b.actor_kind IS NOT NULL
)
SELECT id FROM job
"""

JOBS_BY_KEYS = f"""
SELECT {_COLUMNS} FROM jobs AS j
JOIN unnest($1::text[], $2::text[]) AS k(owner, key)
  ON j.owner = k.owner AND j.idempotency_key = k.key
"""


def _actor_args(actor: Actor | None) -> tuple[str | None, ...]:
    if actor is None:
        return (None,) * 7
    return (
        actor.kind,
        actor.key_id,
        actor.owner,
        actor.role,
        actor.client_address,
        actor.user_agent,
        actor.request_id,
    )


def _job_values(keys: Sealer, job_id: str, new: NewJob, now: datetime) -> tuple[Any, ...]:
    """A new job's $1-$15 in INSERT_JOB, its columns' arrays in INSERT_JOBS."""
    return (
        job_id,
        new.owner,
        new.type,
        seal_for(jobs.c.payload, keys, new.payload),
        seal_for(jobs.c.callback_url, keys, new.callback_url),
        new.priority,
        new.run_at or now,
        new.max_attempts,
        new.timeout_seconds,
        new.idempotency_key,
        new.request_hash,
        new.deadline_at,
        seal_for(jobs.c.notify, keys, new.notify),
        new.model,
        new.size,
    )


def insert_jobs_args(
    sealer: Sealer | None, fresh: Sequence[tuple[str, NewJob]], now: datetime, actor: Actor | None
) -> tuple[Any, ...]:
    keys = sealer_or_fail(sealer)
    columns: list[list[Any]] = [[] for _ in range(15)]
    for job_id, new in fresh:
        for column, value in zip(columns, _job_values(keys, job_id, new, now), strict=True):
            column.append(value)
    return (*columns, now, *_actor_args(actor), [new.origin for _, new in fresh])


def insert_group_args(
    sealer: Sealer | None, creates: Sequence[tuple[str, NewJob, datetime, Actor | None]]
) -> tuple[Any, ...]:
    """INSERT_GROUP's arrays: per create, INSERT_JOB's values with its own time and actor."""
    keys = sealer_or_fail(sealer)
    columns: list[list[Any]] = [[] for _ in range(24)]
    for job_id, new, now, actor in creates:
        row = (*_job_values(keys, job_id, new, now), now, *_actor_args(actor), new.origin)
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return tuple(columns)


def insert_job_args(
    sealer: Sealer | None, job_id: str, new: NewJob, now: datetime, actor: Actor | None
) -> tuple[Any, ...]:
    return (
        *_job_values(sealer_or_fail(sealer), job_id, new, now),
        now,
        *_actor_args(actor),
        new.origin,  # $24
    )


def _condition_on_jobs(condition: sa.ColumnElement[bool]) -> str:
    """A portable condition on the jobs table as PostgreSQL text, so the raw statements
    below apply the very rule the portable path applies (one rule, two forms)."""
    query = sa.select(sa.literal(1)).select_from(jobs).where(condition)
    compiled = str(
        query.compile(
            dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
            compile_kwargs={"literal_binds": True},
        )
    )
    return compiled.split("\nWHERE ", 1)[1]


def _listed(values: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in sorted(values))


TERMINAL = _listed(TERMINAL_STATUSES)
OUTSTANDING = _listed(OUTSTANDING_CALL_STATUSES)
RETRIED = _listed(RETRIED_CALL_STATUSES)


class FinishRow(NamedTuple):
    """How one attempt's outcome is written (`queue._finish_row`): the values the portable
    finish binds and FINISH passes as arrays, in FINISH's order ($1-$14, then $17-$18)."""

    id: str
    attempt: int
    status: JobStatus
    result: Any
    error_message: str | None
    error_kind: str | None
    completed_at: datetime | None  # set when the outcome ends the job
    run_at: datetime | None  # a retry's next run
    progress: float | None
    retry_inc: int
    attempt_dec: int
    event: Event
    event_data: dict[str, Any] | None
    error_retryable: bool | None
    result_object: str | None
    result_bytes: int | None


# Each outcome's FinishRow as arrays, in this order.
FINISH = f"""
WITH outcome AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::timestamptz[], $8::timestamptz[], $9::float8[],
                         $10::int[], $11::int[], $12::text[], $13::text[], $14::bool[],
                         $17::text[], $18::int8[])
        AS o(id, attempt, status, result, error_message, error_kind, completed_at, run_at,
             progress, retry_inc, attempt_dec, event, event_data, error_retryable,
             result_object, result_bytes)
), locked AS (
    -- The rows locked in id order, as every statement locking several jobs does (the
    -- heartbeat too): the UPDATE below touches only rows this has locked already.
    -- Whether each is still this worker's attempt is read here, from the locked row, so
    -- that the UPDATE finds its rows by primary key alone: whatever plan PostgreSQL keeps
    -- for this statement, it cannot read them through an index of running jobs instead
    -- (planned for a table whose statistics saw none running, it did, stepping over the
    -- dead entries of every job finished since). Not by ctid, as the claim: a row another
    -- transaction updated meanwhile (a heartbeat) is locked in its new version, which
    -- this statement's snapshot cannot see; by key the UPDATE follows it there.
    SELECT jobs.id, jobs.attempts, jobs.lease_owner = $16 AND jobs.status = 'running' AS held
    FROM jobs WHERE jobs.id = ANY($1::text[]) ORDER BY jobs.id FOR UPDATE
), done AS (
    UPDATE jobs SET status = o.status, substate = NULL, result = o.result::jsonb,
        result_object = o.result_object, result_bytes = o.result_bytes,
        error_message = o.error_message, error_kind = o.error_kind,
        error_retryable = o.error_retryable, completed_at = o.completed_at,
        run_at = COALESCE(o.run_at, jobs.run_at),
        progress = COALESCE(o.progress, jobs.progress),
        retry_count = jobs.retry_count + o.retry_inc,
        attempts = jobs.attempts - o.attempt_dec,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = $15
    FROM outcome AS o JOIN locked ON locked.id = o.id AND locked.attempts = o.attempt
    WHERE jobs.id = o.id AND locked.held
    RETURNING jobs.id, o.status, o.attempt, o.error_message, o.event, o.event_data,
        jobs.owner, jobs.callback_url, jobs.notify
), events AS (
    INSERT INTO job_events (job_id, at, kind, from_status, to_status, attempt, message, data)
    SELECT id, $15, event, 'running', status, attempt, error_message, event_data::jsonb
    FROM done
), listening AS (
    -- The owners among these jobs whose endpoints or channels make every one of their
    -- jobs owe notifications: looked up once an owner, not once a job (that was ~4 us of
    -- PostgreSQL's CPU per no-op job finished; bench/queue.py).
    SELECT jobs.owner FROM (SELECT DISTINCT owner FROM done) AS jobs
    WHERE {_condition_on_jobs(owner_listens())}
), owed AS (
    -- The outbox rows of jobs that ended and owe notifications: the rule is
    -- outbox.owes_notification (the job's own part, or its owner's), compiled here and
    -- read off the rows the UPDATE returned (named `jobs` for the rule: owner,
    -- callback_url and notify as the UPDATE left them, which it does not change).
    INSERT INTO notifications (job_id, owner, event_type, created_at)
    SELECT jobs.id, jobs.owner, 'job.' || jobs.status, $15
    FROM done AS jobs
    WHERE jobs.status IN ({TERMINAL})
      AND ({_condition_on_jobs(asks_for_notifications())}
           OR jobs.owner IN (SELECT owner FROM listening))
    RETURNING 1
)
SELECT id, status, (SELECT count(*) FROM owed) AS owed FROM done
"""


def claim_args(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    now: datetime,
    types: Sequence[str] | None,
) -> tuple[Any, ...]:
    return (
        now,
        limit,
        worker_id,
        now + timedelta(seconds=lease_seconds),
        list(types) if types else None,
    )


# Each sealed column's name, place and kind, looked up once: a claim opens a hundred rows
# at a time, and asking the column objects each time was a third of opening a payload.
_OPENED = [
    (column.name, column.type.place, isinstance(column.type, SealedJson))
    for column in jobs.c
    if isinstance(column.type, SealedJson | SealedText)
]


def job_from_record(record: Any, sealer: Sealer | None) -> Job:
    """The job a returned row holds, its JSON decoded and its sealed values opened."""
    values = dict(record)
    for name in _JSON_COLUMNS:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    keys: Sealer | None = None
    for name, place, is_json in _OPENED:
        value = values[name]
        if value is not None:
            keys = keys or sealer_or_fail(sealer)
            values[name] = (
                open_json(keys, value, place) if is_json else open_text(keys, value, place)
            )
    return Job.from_values(values)


def finish_args(
    sealer: Sealer | None, worker_id: str, rows: Sequence[FinishRow], now: datetime
) -> tuple[Any, ...]:
    """FINISH's arguments: the outcomes' rows (computed once, in `queue`, for both forms)
    turned into its columns in one step, the results sealed and the events' data encoded."""
    if not rows:
        return (*([] for _ in range(14)), now, worker_id, [], [])
    columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
    columns[2] = [status.value for status in columns[2]]
    # An attempt that ends the job writes its result (JSON null for none); one that does
    # not (a retry, a hand-back) leaves it NULL.
    result_column = jobs.c.result
    columns[3] = [
        None
        if result is None and completed_at is None
        else seal_for(result_column, sealer_or_fail(sealer), result) or "null"
        for result, completed_at in zip(columns[3], columns[6], strict=True)
    ]
    columns[11] = [event.value for event in columns[11]]
    columns[12] = [json.dumps(data) if data else None for data in columns[12]]
    return (*columns[:14], now, worker_id, *columns[14:])


# A model call submitted: upsert the call, mark the job waiting, write the event.
RECORD_SUBMITTED = """
WITH call AS (
    INSERT INTO provider_calls (job_id, key, provider, model, response_id, status, attempt,
                                output, error_message, submitted_at, completed_at,
                                completion_window, service_tier)
    VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, NULL, $9, $10)
    ON CONFLICT (job_id, key) DO UPDATE SET
        provider = EXCLUDED.provider, model = EXCLUDED.model,
        response_id = EXCLUDED.response_id, status = EXCLUDED.status,
        attempt = EXCLUDED.attempt, output = NULL, error_message = NULL,
        submitted_at = EXCLUDED.submitted_at, completed_at = NULL,
        completion_window = EXCLUDED.completion_window,
        service_tier = EXCLUDED.service_tier,
        responses = provider_calls.responses + 1
    RETURNING job_id
), job AS (
    UPDATE jobs SET substate = 'waiting_provider', updated_at = $8
    WHERE id = $1 AND status = 'running'
)
INSERT INTO job_events (job_id, at, kind, attempt, data)
SELECT job_id, $8, 'model_call_submitted', $7,
       jsonb_build_object('key', $2::text, 'response_id', $5::text, 'model', $4::text,
                          'completion_window', $9::text, 'replaces', $11::text)
FROM call
"""

# A model call ended: record it, stop waiting if nothing else is outstanding, add its cost
# to the owner's month, write the event. Tokens and cost add up over every response a key
# had (a failed call was paid for too). The statement sees the rows as they were before
# it, hence `key <> $2`.
RECORD_FINISHED = f"""
WITH call AS (
    UPDATE provider_calls SET status = $3::text, output = $4::jsonb, error_message = $5,
        completed_at = $6, input_tokens = input_tokens + $7,
        cached_tokens = cached_tokens + $8, output_tokens = output_tokens + $9,
        reasoning_tokens = reasoning_tokens + $10,
        cost_usd = CASE WHEN $12::float8 IS NULL THEN cost_usd
                        ELSE COALESCE(cost_usd, 0) + $12::float8 END,
        list_cost_usd = CASE WHEN $13::float8 IS NULL THEN list_cost_usd
                             ELSE COALESCE(list_cost_usd, 0) + $13::float8 END,
        retry_cost_usd = CASE WHEN $12::float8 IS NULL OR $3::text NOT IN ({RETRIED})
                              THEN retry_cost_usd
                              ELSE COALESCE(retry_cost_usd, 0) + $12::float8 END
    WHERE job_id = $1 AND key = $2
    RETURNING job_id, response_id
), job AS (
    UPDATE jobs SET substate = NULL, updated_at = $6
    WHERE id = $1 AND substate = 'waiting_provider'
      AND NOT EXISTS (
          SELECT 1 FROM provider_calls
          WHERE job_id = $1 AND key <> $2 AND status IN ({OUTSTANDING}))
), spend AS (
    INSERT INTO owner_spend (owner, month, spent_usd)
    SELECT $14::text, $15::text, $12::float8 FROM call WHERE $12::float8 > 0
    ON CONFLICT (owner, month) DO UPDATE
        SET spent_usd = owner_spend.spent_usd + EXCLUDED.spent_usd
)
INSERT INTO job_events (job_id, at, kind, attempt, message, data)
SELECT $1, $6, 'model_call_finished', $11, $5,
       jsonb_build_object('key', $2::text, 'status', $3::text, 'response_id', response_id,
                          'input_tokens', $7::int, 'cached_tokens', $8::int,
                          'output_tokens', $9::int, 'reasoning_tokens', $10::int,
                          'cost_usd', $12::float8)
FROM call
"""
