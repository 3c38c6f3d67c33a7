"""Provider faults cost nothing extra: throttling and blips are waited out inside the
attempt, transient failures are asked again, permanent ones fail the job with the
provider's word, and no model call is paid twice. The real SDK against the emulator over
HTTP, a real worker, both databases."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from backburner.providers import ModelRequest
from backburner.store import Database, JobStatus
from backburner.store import events as events_store
from backburner.store import jobs as jobs_store
from backburner.store import steps as steps_store
from backburner.worker.tracker import ResponseTracker
from tests.conftest import fast_settings, wait_for
from tests.running import finished, submit, worker_on
from tests.servers import emulated, emulator_stats, set_faults


async def test_429s_on_create_are_waited_out_inside_the_attempt(db: Database, db_url: str) -> None:
    settings = fast_settings(db_url)
    async with (
        emulated(share_429=1.0, retry_after_s=0.2) as (provider, base),
        worker_on(db, settings, provider),
    ):
        job = await submit(db)

        async def throttled_a_few_times() -> bool:
            return (await emulator_stats(base))["rate_limited"] >= 3

        await wait_for(throttled_a_few_times)
        waiting = await jobs_store.get_job(db, job.id)
        assert waiting is not None
        assert (waiting.status, waiting.attempts, waiting.retry_count) == (JobStatus.RUNNING, 1, 0)
        await set_faults(base, share_429=0.0)
        done = await finished(db, job.id)
        counters = await emulator_stats(base)
    assert done.status == JobStatus.SUCCEEDED
    assert (done.attempts, done.retry_count) == (1, 0)  # no attempt was used up
    assert counters["responses_created"] == 1


@pytest.mark.timeout(180)
@pytest.mark.parametrize("retry_after_header", [True, False])
async def test_a_provider_failing_half_its_requests_costs_no_attempt_and_no_double_call(
    db: Database, db_url: str, retry_after_header: bool
) -> None:
    # 429s (with retry-after, or only x-ratelimit-reset-*) and 500s on create, on every
    # poll and on cancel: each model call is still created once.
    settings = fast_settings(db_url)
    async with (
        emulated(
            share_429=0.25,
            share_500=0.25,
            retry_after_s=0.05,
            retry_after_header=retry_after_header,
            latency_s=0.3,
        ) as (provider, base),
        worker_on(db, settings, provider),
    ):
        jobs = [await submit(db) for _ in range(4)]
        report = await submit(db, "generate_report", {"user_id": "u_1", "period": "2026-09"})
        # Backoff doubles up to 2 s here (fast_settings): a run of failures costs seconds.
        done = [await finished(db, job.id, within=60) for job in [*jobs, report]]
        counters = await emulator_stats(base)
    assert [job.status for job in done] == [JobStatus.SUCCEEDED] * 5
    assert all((job.attempts, job.retry_count) == (1, 0) for job in done)
    calls = [c for job in done for c in await steps_store.list_calls(db, job.id)]
    assert counters["responses_created"] == len(calls) == 4 + 2  # the report: two rounds
    assert counters["rate_limited"] + counters["server_errors"] > 0


async def test_a_poll_that_fails_does_not_end_the_wait(db: Database, db_url: str) -> None:
    settings = fast_settings(db_url)
    async with (
        emulated(latency_s=1.0) as (provider, base),
        worker_on(db, settings, provider),
    ):
        job = await submit(db)

        async def submitted() -> bool:
            return (await emulator_stats(base))["responses_created"] == 1

        await wait_for(submitted)
        # Every poll now fails for a while; the response ends meanwhile.
        await set_faults(base, share_500=1.0)

        async def polls_failed() -> bool:
            return (await emulator_stats(base))["server_errors"] >= 5

        await wait_for(polls_failed)
        await set_faults(base, share_500=0.0)
        done = await finished(db, job.id)
        counters = await emulator_stats(base)
    assert done.status == JobStatus.SUCCEEDED
    assert (done.attempts, counters["responses_created"]) == (1, 1)


async def test_a_transiently_failed_response_is_asked_again_and_linked(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url)
    async with (
        emulated(share_failed=1.0, latency_s=0.1) as (provider, base),
        worker_on(db, settings, provider),
    ):
        job = await submit(db)

        async def failed_once() -> bool:
            return (await emulator_stats(base))["by_status"].get("failed", 0) >= 1

        await wait_for(failed_once)
        await set_faults(base, share_failed=0.0)
        done = await finished(db, job.id)
        counters = await emulator_stats(base)
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 1
    failed = counters["by_status"].get("failed", 0)
    assert counters["responses_created"] == 1 + failed
    (call,) = await steps_store.list_calls(db, job.id)
    assert call.status == "completed"
    submitted = [
        e.data or {}
        for e in await events_store.list_events(db, job.id)
        if e.kind == "model_call_submitted"
    ]
    assert len(submitted) == 1 + failed
    # Each new response names the failed one it replaces.
    assert [s["replaces"] for s in submitted[1:]] == [s["response_id"] for s in submitted[:-1]]


async def test_a_permanently_failed_response_fails_the_job_with_the_providers_word(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url)
    async with (
        emulated(share_failed_permanent=1.0, latency_s=0.05) as (provider, base),
        worker_on(db, settings, provider),
    ):
        done = await finished(db, (await submit(db)).id)
        counters = await emulator_stats(base)
    assert done.status == JobStatus.FAILED
    assert done.error_kind == "response_failed"
    assert done.error_message is not None
    assert "Invalid prompt" in done.error_message
    assert (done.attempts, done.retry_count, counters["responses_created"]) == (1, 0, 1)


async def test_insufficient_quota_fails_at_once_and_says_so(db: Database, db_url: str) -> None:
    settings = fast_settings(db_url)
    async with (
        emulated(share_insufficient_quota=1.0) as (provider, base),
        worker_on(db, settings, provider),
    ):
        done = await finished(db, (await submit(db)).id)
        counters = await emulator_stats(base)
    assert done.status == JobStatus.FAILED
    assert done.error_kind == "insufficient_quota"
    assert done.error_message is not None
    assert "quota" in done.error_message
    assert (done.attempts, counters["insufficient_quota"], counters["responses_created"]) == (
        1,
        1,
        0,
    )


async def test_siblings_of_a_failed_call_are_not_placed_after_their_attempt_ended(
    db: Database, db_url: str
) -> None:
    # Call 0 breaks while calls 1-3 are out and 4-7 wait for room. The handler uses a
    # plain asyncio.gather, so 4-7 would run on after the attempt ended: they must not be
    # placed then, and the next attempt must pick up 1-3 instead of paying for them again.
    settings = fast_settings(db_url)
    async with (
        emulated(latency_s=0.6) as (provider, base),
        worker_on(db, settings, provider),
    ):
        job = await submit(db, "test_fan_out", {"calls": 8, "parallel": 4, "break_after": 0.3})
        done = await finished(db, job.id)
        counters = await emulator_stats(base)
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 2
    assert counters["responses_created"] == 8  # each call once, across both attempts
    calls = await steps_store.list_calls(db, job.id)
    assert sorted(c.key for c in calls) == sorted(f"call/{i}" for i in range(8))
    first = [c for c in calls if c.attempt == 1]
    assert 1 <= len(first) <= 3  # placed by attempt 1, finished for attempt 2


async def test_a_handler_bug_fails_at_once_unless_its_type_names_it(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url)
    async with emulated() as (provider, _), worker_on(db, settings, provider):
        bug = await finished(db, (await submit(db, "test_buggy")).id)
        named = await finished(db, (await submit(db, "test_buggy_but_retried")).id)
    assert bug.status == JobStatus.FAILED
    assert (bug.error_kind, bug.attempts, bug.retry_count) == ("handler_error", 1, 0)
    assert bug.error_message is not None
    assert "KeyError" in bug.error_message
    # A type whose RetryPolicy names the error retries it, up to its attempts.
    assert named.status == JobStatus.FAILED
    assert (named.error_kind, named.attempts) == ("transient", 3)


async def test_a_429_that_never_clears_is_waited_out_only_for_the_jobs_time(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url)
    async with (
        emulated(share_429=1.0, retry_after_s=0.1) as (provider, _),
        worker_on(db, settings, provider),
    ):
        job = await submit(db, timeout_seconds=1.5)
        done = await finished(db, job.id, within=30)
    assert done.status == JobStatus.FAILED
    assert done.error_kind == "timeout"
    assert done.attempts == 1
    assert done.completed_at is not None
    assert done.completed_at - done.created_at < timedelta(seconds=20)


async def test_a_response_stuck_in_the_queue_is_cancelled_and_asked_again(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url, response_queued_limit_seconds=1.0)
    async with (
        emulated(share_stuck=1.0, latency_s=0.1) as (provider, base),
        worker_on(db, settings, provider),
    ):
        job = await submit(db)

        async def given_up_on_once() -> bool:
            return (await emulator_stats(base))["responses_cancelled"] >= 1

        await wait_for(given_up_on_once)
        await set_faults(base, share_stuck=0.0)
        done = await finished(db, job.id)
        counters = await emulator_stats(base)
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 1
    stuck = counters["responses_cancelled"]
    assert counters["responses_created"] == 1 + stuck  # every extra one explained
    finished_events = [
        e for e in await events_store.list_events(db, job.id) if e.kind == "model_call_finished"
    ]
    assert [e.data["status"] for e in finished_events if e.data] == ["cancelled"] * stuck + [
        "completed"
    ]
    assert all("still queued" in (e.message or "") for e in finished_events[:-1])


async def test_a_cancelled_jobs_response_records_what_the_provider_bills_for_it(
    db: Database, db_url: str
) -> None:
    settings = fast_settings(db_url)
    async with (
        emulated(latency_s=30.0) as (provider, base),
        worker_on(db, settings, provider),
    ):
        job = await submit(db)

        async def started() -> bool:
            return (await emulator_stats(base))["by_status"].get("in_progress", 0) == 1

        await wait_for(started)
        await jobs_store.request_cancel(db, job.id, owner=None, now=datetime.now(UTC))
        done = await finished(db, job.id)
    assert done.status == JobStatus.CANCELED
    (call,) = await steps_store.list_calls(db, job.id)
    assert call.status == "cancelled"
    # It had read its input before it was stopped: that much is billed, and recorded.
    assert call.input_tokens > 0
    assert call.output_tokens == 0
    assert call.cost_usd is not None
    assert call.cost_usd > 0


@pytest.mark.parametrize("fault", ["share_429", "share_500"])
async def test_a_nudged_poll_the_provider_refuses_stops_holding_claims_back(fault: str) -> None:
    # A webhook's response whose poll comes back 429 or 500 is no longer "waiting to be
    # looked at" (the claim loop waits on that): it is polled again later, on its backoff,
    # and the waiter still gets the response once the provider answers.
    async with emulated(latency_s=0.05) as (provider, base):
        tracker = ResponseTracker(provider, initial_delay=30, max_delay=60, max_retry_wait=0.2)
        polling = asyncio.create_task(tracker.run())
        try:
            placed = await provider.submit(ModelRequest(model="gpt-4.1-mini", input="Text."))
            waiter = asyncio.create_task(tracker.wait(placed.id))
            await wait_for(lambda: tracker.outstanding == 1, within=5, interval=0.01)
            await set_faults(base, **{fault: 1.0})
            tracker.nudge(placed.id)
            await asyncio.wait_for(tracker.until_looked_at(), timeout=10)
            assert tracker.hurrying == 0
            assert tracker.poll_failures >= 1
            assert not waiter.done()
            await set_faults(base, **{fault: 0.0})
            answered = await asyncio.wait_for(waiter, timeout=10)
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
    assert answered.status == "completed"
