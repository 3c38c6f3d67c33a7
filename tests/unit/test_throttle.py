"""The API's request-rate decisions: a token bucket taken from in leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backburner.api.throttle import lease_size, take
from backburner.store.ratelimits import Bucket

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def bucket(requests: float, at: datetime = NOW) -> Bucket:
    return Bucket("api:k", requests, 0.0, 1.0, None, at)


def test_a_lease_is_granted_whole_or_in_part() -> None:
    after, granted, wait = take(bucket(10), 4, 60, NOW)
    assert (granted, wait, after.requests) == (4, 0.0, 6)
    after, granted, _ = take(bucket(2.5), 4, 60, NOW)
    assert (granted, after.requests) == (2, 0.5)


def test_an_empty_bucket_says_how_long_to_wait() -> None:
    _, granted, wait = take(bucket(0.25), 1, 60, NOW)
    assert granted == 0
    assert wait == pytest.approx(0.75)  # one a second refills the missing 0.75


def test_time_refills_the_bucket_up_to_a_minutes_worth() -> None:
    after, granted, _ = take(bucket(0, NOW - timedelta(seconds=5)), 1, 60, NOW)
    assert (granted, after.requests) == (1, 4)
    after, _, _ = take(bucket(0, NOW - timedelta(hours=1)), 1, 60, NOW)
    assert after.requests == 59
    # A clock that went backwards refills nothing.
    _, granted, _ = take(bucket(0, NOW + timedelta(seconds=5)), 1, 60, NOW)
    assert granted == 0


def test_a_process_leases_a_seconds_worth() -> None:
    assert [lease_size(rate) for rate in (1, 60, 119, 1200)] == [1, 1, 1, 20]
