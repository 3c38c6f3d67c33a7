"""The shared rate limiter's decisions: a token bucket that shrinks on 429 and grows back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from backburner.worker.ratelimit import (
    MAX_WAIT_SECONDS,
    MIN_SCALE,
    RECOVERY_SECONDS,
    RECOVERY_STEP,
    REFILL_SHARE,
    Limits,
    full_bucket,
    limits_for,
    refilled,
    settled,
    take,
    throttled,
)

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LIMITS = Limits(rpm=60, tpm=6_000)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_limits_come_from_the_model_or_the_wildcard() -> None:
    configured = {"gpt-4.1": {"rpm": 10}, "*": {"tpm": 100}}
    assert limits_for(configured, "gpt-4.1") == Limits(rpm=10, tpm=None)
    assert limits_for(configured, "other") == Limits(rpm=None, tpm=100)
    assert limits_for({}, "gpt-4.1") is None


def test_a_full_bucket_grants_until_empty_then_says_how_long_to_wait() -> None:
    bucket = full_bucket("k", Limits(rpm=2, tpm=None), T0)
    bucket, wait = take(bucket, Limits(rpm=2, tpm=None), 10, T0)
    assert wait == 0
    bucket, wait = take(bucket, Limits(rpm=2, tpm=None), 10, T0)
    assert wait == 0
    told, wait = take(bucket, Limits(rpm=2, tpm=None), 10, T0)
    # 2 per minute: one request every 30 s, refilled at 97% of that pace.
    assert wait == pytest.approx(30.0 / REFILL_SHARE)
    # Nothing taken; only the wait is counted (for /metrics).
    assert told == replace(bucket, waits=1, waited_seconds=pytest.approx(30.0 / REFILL_SHARE))
    _, again = take(told, Limits(rpm=2, tpm=None), 10, T0)
    assert again == pytest.approx(30.0 / REFILL_SHARE)


def test_a_long_wait_is_asked_again_after_at_most_a_minute() -> None:
    blocked = replace(
        full_bucket("k", LIMITS, T0), blocked_until=T0 + timedelta(minutes=10), waits=4
    )
    told, wait = take(blocked, LIMITS, 10, T0)
    assert wait == MAX_WAIT_SECONDS
    assert (told.waits, told.waited_seconds) == (5, MAX_WAIT_SECONDS)


def test_tokens_limit_waits_for_enough_tokens() -> None:
    bucket = full_bucket("k", LIMITS, T0)
    bucket, wait = take(bucket, LIMITS, 5_000, T0)
    assert wait == 0
    _, wait = take(bucket, LIMITS, 3_000, T0)
    # 1,000 left, 2,000 more needed at 97 tokens/s.
    assert wait == pytest.approx(20.0 / REFILL_SHARE)
    refill = refilled(bucket, LIMITS, later(20.7))
    _, wait = take(refill, LIMITS, 3_000, later(20.7))
    assert wait == 0


def test_a_call_bigger_than_the_budget_waits_for_a_full_bucket_not_forever() -> None:
    bucket, _ = take(full_bucket("k", LIMITS, T0), LIMITS, 6_000, T0)
    _, wait = take(bucket, LIMITS, 50_000, T0)
    assert wait == pytest.approx(60.0)


def test_refill_never_exceeds_the_scaled_budget() -> None:
    bucket = full_bucket("k", LIMITS, T0)
    assert refilled(bucket, LIMITS, later(3_600)).requests == 60
    half = replace(throttled(bucket, None, T0), requests=30.0)  # full at half the scale
    soon = refilled(half, LIMITS, later(2))
    assert soon.scale == pytest.approx(0.5 + 2 * RECOVERY_STEP / RECOVERY_SECONDS)
    assert soon.requests == pytest.approx(60 * soon.scale)  # capped at its scale's budget
    # An hour on, the scale has grown back and so has the budget.
    assert refilled(half, LIMITS, later(3_600)).requests == 60


def test_a_bucket_refilled_for_the_wait_it_was_told_admits_the_call() -> None:
    # Rounding must not leave it a hair short, to be told to wait a hair more, for ever.
    limits = Limits(rpm=5, tpm=None)
    bucket = throttled(full_bucket("k", limits, T0), 1.0, T0)
    now = later(1)
    for _ in range(3):
        bucket = refilled(bucket, limits, now)
        bucket, wait = take(bucket, limits, 10, now)
        if wait == 0:
            break
        assert wait >= 0.01
        now += timedelta(seconds=wait)
    assert wait == 0


def test_a_429_halves_the_budget_and_blocks_for_retry_after() -> None:
    bucket = full_bucket("k", LIMITS, T0)
    hit = throttled(bucket, 7.0, T0)
    assert hit.scale == 0.5
    assert hit.blocked_until == later(7)
    assert hit.requests <= 0
    _, wait = take(refilled(hit, LIMITS, later(1)), LIMITS, 1, later(1))
    assert wait == pytest.approx(6.0)
    # 429s apart in time are congestion each time: down to the floor.
    for i in range(1, 21):
        hit = throttled(hit, None, later(11 * i))
    assert hit.scale == MIN_SCALE


def test_a_burst_of_429s_halves_the_budget_once() -> None:
    bucket = full_bucket("k", LIMITS, T0)
    for i in range(30):  # thirty calls that went out together, thirty 429s
        bucket = throttled(bucket, 2.0, later(i * 0.01))
    assert bucket.scale == 0.5
    assert bucket.blocked_until == later(0.29 + 2.0)


def test_success_charges_the_real_tokens_and_grows_the_budget_back() -> None:
    bucket = throttled(full_bucket("k", LIMITS, T0), None, T0)
    after = settled(bucket, LIMITS, extra_tokens=250)
    assert after.tokens == bucket.tokens - 250
    assert after.scale == pytest.approx(0.55)
    refund = settled(bucket, LIMITS, extra_tokens=-100)
    assert refund.tokens == bucket.tokens + 100
    for _ in range(30):
        after = settled(after, LIMITS, 0)
    assert after.scale == 1.0
    # A refund on a full bucket does not lift it past the budget.
    full = full_bucket("k", LIMITS, T0)
    assert settled(full, LIMITS, extra_tokens=-500).tokens == 6_000


def test_a_low_limit_hit_by_many_429s_still_admits_a_call_and_heals_with_time() -> None:
    limits = Limits(rpm=5, tpm=None)
    bucket = full_bucket("k", limits, T0)
    for i in range(20):
        bucket = throttled(bucket, 1.0, T0 + timedelta(seconds=11 * i))
    assert bucket.scale == MIN_SCALE  # 0.25 requests a minute, were it not for the floor
    # Never less than one request: within a minute or so a call goes through.
    soon = later(11 * 19 + 65)
    bucket = refilled(bucket, limits, soon)
    taken, wait = take(bucket, limits, 1, soon)
    assert wait == 0
    assert taken.requests == pytest.approx(bucket.requests - 1)
    # With no success at all, time alone grows the budget back to its configured size.
    assert refilled(taken, limits, later(11 * 19 + 65 + 120)).scale == 1.0


def test_a_bucket_shrunk_before_a_restart_heals_after_it() -> None:
    shrunk = replace(full_bucket("k", LIMITS, T0), scale=0.125, requests=0.75, tokens=0.0)
    healed = refilled(shrunk, LIMITS, later(600))
    assert healed.scale == 1.0
    _, wait = take(healed, LIMITS, 100, later(600))
    assert wait == 0
