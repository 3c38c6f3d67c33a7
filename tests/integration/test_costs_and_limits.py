"""Cost, deadlines, budgets, owner caps and the shared rate limit, with the real SDK
against the emulator over HTTP and a real worker on each database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from backburner.providers.base import Usage
from backburner.providers.pricing import DEFAULT_PRICES, cost_of
from backburner.store import Database, Job, JobStatus
from backburner.store import jobs as jobs_store
from backburner.store import ratelimits as ratelimits_store
from backburner.store import steps as steps_store
from backburner.store import usage as usage_store
from backburner.worker.ratelimit import RECOVERY_STEP, REFILL_SHARE, RateLimiter
from backburner.worker.retry import provider_wait
from tests.conftest import fast_settings, wait_for
from tests.running import finished, submit, worker_on
from tests.servers import emulated, emulator_stats


async def test_each_call_is_priced_and_the_job_and_owner_add_up(db: Database, db_url: str) -> None:
    settings = fast_settings(db_url)
    async with emulated() as (provider, _), worker_on(db, settings, provider):
        jobs = [await submit(db) for _ in range(3)]
        done = [await finished(db, job.id) for job in jobs]
    assert all(job.status == JobStatus.SUCCEEDED for job in done)
    calls = [call for job in jobs for call in await steps_store.list_calls(db, job.id)]
    price = DEFAULT_PRICES[settings.model]
    for call in calls:
        usage = Usage(
            input_tokens=call.input_tokens,
            cached_tokens=call.cached_tokens,
            output_tokens=call.output_tokens,
        )
        expected = cost_of(usage, price, "soonest", settings.window_discounts)
        assert call.completion_window == "soonest"
        assert call.cost_usd == pytest.approx(expected.usd)
        assert call.cost_usd is not None
        assert call.cost_usd > 0
    totals = await steps_store.usage_totals(db, jobs[0].id)
    assert totals["cost_usd"] == pytest.approx(calls[0].cost_usd)
    month = usage_store.month_of(datetime.now(UTC))
    spent = await usage_store.spent(db, "alice", month)
    assert spent == pytest.approx(sum(call.cost_usd or 0 for call in calls))
    report = await usage_store.usage_report(db, owner="alice")
    assert [(line.type, line.model_calls) for line in report] == [("test_ask_model", 3)]
    assert report[0].cost_usd == pytest.approx(spent)


async def test_unpriced_models_report_no_cost_rather_than_a_wrong_one(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url, model="house-model-7")
    async with emulated() as (provider, _), worker_on(db, settings, provider):
        job = await finished(db, (await submit(db)).id)
    assert job.status == JobStatus.SUCCEEDED
    (call,) = await steps_store.list_calls(db, job.id)
    assert call.input_tokens > 0
    assert call.cost_usd is None
    assert (await usage_store.usage_report(db))[0].unpriced_calls == 1


@pytest.mark.parametrize(("deadline_hours", "window"), [(None, "soonest"), (3, "2h"), (12, "8h")])
async def test_a_deadline_buys_the_cheapest_window_that_meets_it(
    db: Database, db_url: str, deadline_hours: float | None, window: str
) -> None:
    settings = fast_settings(db_url)
    async with emulated() as (provider, base), worker_on(db, settings, provider):
        job = await finished(db, (await submit(db, deadline_hours=deadline_hours)).id)
        counters = await emulator_stats(base)
    assert job.status == JobStatus.SUCCEEDED
    assert counters["completion_windows"][window] == 1
    # A discounted window's calls are grouped by the job for the provider's queue priority.
    expected = {} if window == "soonest" else {job.id: 1}
    assert counters["continuation_ids"] == expected
    (call,) = await steps_store.list_calls(db, job.id)
    assert call.completion_window == window
    assert call.cost_usd is not None
    assert call.list_cost_usd is not None
    discount = settings.window_discounts.get(window, 0.0)
    assert call.cost_usd == pytest.approx(call.list_cost_usd * (1 - discount))


async def test_a_spent_budget_stops_new_model_calls(db: Database, db_url: str) -> None:
    settings = fast_settings(db_url)
    await usage_store.set_limits(
        db, "alice", max_running=None, monthly_budget_usd=1e-9, now=datetime.now(UTC)
    )
    async with emulated() as (provider, base), worker_on(db, settings, provider):
        first = await finished(db, (await submit(db)).id)
        second = await finished(db, (await submit(db)).id)
        other = await finished(db, (await submit(db, owner="bob")).id)
        counters = await emulator_stats(base)
    # The first call started inside the budget; it spent it, so the second never starts.
    assert first.status == JobStatus.SUCCEEDED
    assert second.status == JobStatus.FAILED
    assert second.error_kind == "budget_exhausted"
    assert second.error_message is not None
    assert "budget" in second.error_message
    assert second.attempts == 1  # a spent budget is not worth retrying
    assert other.status == JobStatus.SUCCEEDED  # bob has no budget of his own
    assert counters["responses_created"] == 2
    assert await steps_store.list_calls(db, second.id) == []


async def test_an_owner_at_its_cap_waits_while_others_go_ahead(db: Database, db_url: str) -> None:
    settings = fast_settings(db_url, owner_max_running=2, worker_concurrency=20)
    async with emulated() as (provider, _), worker_on(db, settings, provider):
        greedy = [
            await submit(db, "test_slow_no_timeout", {"seconds": 0.6}, owner="greedy")
            for _ in range(6)
        ]
        polite = await submit(db, "test_slow_no_timeout", {"seconds": 0.1}, owner="polite")
        peak = 0
        while True:
            # One query: a snapshot, not six reads that could straddle a job's end and the
            # next one's start.
            running = await jobs_store.list_jobs(
                db, owner="greedy", status=JobStatus.RUNNING, limit=100
            )
            peak = max(peak, len(running.jobs))
            states = [await jobs_store.get_job(db, job.id) for job in greedy]
            if all(job and job.status.is_terminal for job in states):
                break
            await asyncio.sleep(0.02)
        polite_done = await finished(db, polite.id)
    ends = sorted(job.completed_at for job in states if job and job.completed_at)
    assert peak == 2
    # polite's job did not queue behind greedy's six: it ended before the last of them.
    assert polite_done.completed_at is not None
    assert polite_done.completed_at < ends[-1]


async def test_the_rate_budget_is_shared_by_every_worker(db: Database) -> None:
    configured = {"gpt-4.1-mini": {"rpm": 2}}
    first = RateLimiter(db, configured, lambda: datetime.now(UTC))
    second = RateLimiter(db, configured, lambda: datetime.now(UTC))
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)
        raise asyncio.CancelledError  # stop here; the wait it asked for is what we check

    assert await first.acquire("openai", "gpt-4.1-mini", 10) == 0
    assert await second.acquire("openai", "gpt-4.1-mini", 10) == 0
    with pytest.raises(asyncio.CancelledError):
        await first.acquire("openai", "gpt-4.1-mini", 10, waiting=record)
    assert waits
    assert 25 < waits[0] <= 30 / REFILL_SHARE  # one of 2 a minute, refilled at 97%
    # Another model has its own budget; an unconfigured one has none.
    assert await second.acquire("openai", "gpt-4.1", 10) == 0


async def test_a_429_shrinks_the_shared_budget_and_blocks_for_retry_after(
    db: Database, db_url: str
) -> None:
    # We were told 100 a minute; the provider really allows 2.
    settings = fast_settings(db_url, rate_limits={"*": {"rpm": 100}})
    async with emulated(rpm_limit=2) as (provider, base), worker_on(db, settings, provider):
        jobs = [await submit(db) for _ in range(3)]

        async def throttled() -> list[ratelimits_store.Bucket]:
            buckets = await ratelimits_store.list_buckets(db)
            return [b for b in buckets if b.scale < 1 and b.blocked_until is not None]

        (bucket,) = await wait_for(throttled, within=10)
        counters = await emulator_stats(base)
    assert bucket.key == "openai:gpt-4.1-mini"
    # Halved once; the two calls that got through may settle after the 429 (a step back up
    # each), and it grows back slowly with time: never more than those steps above half.
    assert 0.5 <= bucket.scale <= 0.5 + 2 * RECOVERY_STEP + 0.01
    assert bucket.blocked_until is not None
    assert bucket.blocked_until > datetime.now(UTC) + timedelta(seconds=20)
    assert counters["rate_limited"] >= 1
    assert counters["responses_created"] == 2
    # The throttled job waits inside its attempt: no attempt is used up by a 429.
    after = [await jobs_store.get_job(db, job.id) for job in jobs]
    assert all(job and job.retry_count == 0 and job.attempts <= 1 for job in after)
    assert all(job and job.status != JobStatus.FAILED for job in after)


async def test_within_its_configured_limit_the_provider_never_answers_429(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url, rate_limits={"*": {"rpm": 3}})
    async with emulated(rpm_limit=3) as (provider, base), worker_on(db, settings, provider):
        jobs = [await submit(db) for _ in range(4)]

        async def three_done() -> list[Job] | None:
            states = [await jobs_store.get_job(db, job.id) for job in jobs]
            done = [job for job in states if job and job.status == JobStatus.SUCCEEDED]
            running = [job for job in states if job and job.status == JobStatus.RUNNING]
            return done if (len(done), len(running)) == (3, 1) else None

        # Which of the four waits for the budget is up to the race for it.
        done = await wait_for(three_done, within=20)
        counters = await emulator_stats(base)
    assert all(job.status == JobStatus.SUCCEEDED for job in done)
    # The fourth waits its turn (about 20 s) instead of drawing a 429.
    assert counters["responses_created"] == 3
    assert counters["rate_limited"] == 0
    # ...and the wait is counted where /metrics and the operator page read it.
    (bucket,) = await ratelimits_store.list_buckets(db)
    assert bucket.waits >= 1
    assert bucket.waited_seconds > 0


async def test_a_job_type_can_have_its_own_model_and_is_priced_by_it(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url, models={"test_ask_model": "gpt-4.1-nano"})
    async with emulated() as (provider, _), worker_on(db, settings, provider):
        job = await finished(db, (await submit(db)).id)
        other = await finished(
            db, (await submit(db, "generate_report", {"user_id": "u_1", "period": "2026-09"})).id
        )
    (call,) = await steps_store.list_calls(db, job.id)
    assert call.model == "gpt-4.1-nano"
    usage = Usage(input_tokens=call.input_tokens, output_tokens=call.output_tokens)
    nano = cost_of(usage, DEFAULT_PRICES["gpt-4.1-nano"], "soonest", settings.window_discounts)
    assert call.cost_usd == pytest.approx(nano.usd)
    assert {c.model for c in await steps_store.list_calls(db, other.id)} == {settings.model}


async def test_at_rpm_5_many_429s_never_wedge_the_shared_budget(db: Database) -> None:
    # The limiter against the real store, in virtual time: every wait it asks for moves
    # the clock instead of sleeping. Fifty calls in a row draw a 429 (each after the
    # attempt's own backoff), yet the next call is admitted within about a minute, and
    # with the provider healthy again the budget is back to 5 a minute.
    now = [datetime(2026, 11, 30, 9, 0, tzinfo=UTC)]
    limiter = RateLimiter(db, {"*": {"rpm": 5}}, lambda: now[0])

    async def let_time_pass(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    for failures in range(1, 51):
        await limiter.acquire("openai", "gpt-4.1-mini", 10, waiting=let_time_pass)
        await limiter.throttle("openai", "gpt-4.1-mini", retry_after=1.0)
        await let_time_pass(provider_wait(failures, 1.0, 0.5))
    before = now[0]
    await limiter.acquire("openai", "gpt-4.1-mini", 10, waiting=let_time_pass)
    assert now[0] - before <= timedelta(seconds=65)
    # Healthy again: ten minutes of successes later, five calls a minute go through.
    for _ in range(60):
        await limiter.acquire("openai", "gpt-4.1-mini", 10, waiting=let_time_pass)
        await limiter.settle("openai", "gpt-4.1-mini", 10, 10)
    minute = now[0]
    for _ in range(5):
        await limiter.acquire("openai", "gpt-4.1-mini", 10, waiting=let_time_pass)
    assert now[0] - minute <= timedelta(seconds=65)
    (bucket,) = await ratelimits_store.list_buckets(db)
    assert bucket.scale == 1.0
