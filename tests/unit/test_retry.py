"""Retry decisions and backoff are pure functions: no database, no clock."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from backburner.errors import (
    ErrorInfo,
    InvalidInput,
    InvalidModelOutput,
    JobTimeout,
    ProviderRejected,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    RequestTooLarge,
    ResponseFailed,
    Retry,
)
from backburner.jobs import RetryPolicy
from backburner.worker.retry import (
    backoff_delay,
    classify_error,
    decide_after_failure,
    is_throttled_or_unavailable,
    provider_wait,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, base_delay=2.0, max_delay=60.0, jitter=0.5)


def test_backoff_doubles_per_attempt_and_is_capped() -> None:
    no_jitter = [backoff_delay(a, POLICY, 0.0) for a in range(1, 8)]
    assert no_jitter == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_jitter_only_shortens_and_by_at_most_its_fraction() -> None:
    delays = [backoff_delay(3, POLICY, random.Random(seed).random()) for seed in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 50  # actually spread out


@pytest.mark.parametrize(
    ("error", "kind", "retryable"),
    [
        (ConnectionError("reset"), "transient", True),
        (TimeoutError(), "transient", True),
        (ProviderUnavailable("502"), "provider_unavailable", True),
        (RateLimited("slow down", retry_after=7), "rate_limited", True),
        (ProviderRejected("401 bad key"), "provider_rejected", False),
        (InvalidInput("bad"), "invalid_input", False),
        (JobTimeout("too slow"), "timeout", False),
        (QuotaExhausted("no credit"), "insufficient_quota", False),
        (RequestTooLarge("50k > 30k TPM"), "request_too_large", False),
        (ResponseFailed("server_error", transient=True), "response_failed", True),
        (ResponseFailed("invalid_prompt"), "response_failed", False),
        (InvalidModelOutput("not the schema, twice"), "invalid_output", False),
        # A bug or bad data in the handler's own code: permanent by default.
        (KeyError("bug"), "handler_error", False),
        (ValueError("bad number"), "handler_error", False),
        (TypeError("None is not a list"), "handler_error", False),
        (ExceptionGroup("batches", [TimeoutError(), ValueError("bug")]), "handler_error", False),
        (ExceptionGroup("batches", [ProviderUnavailable("502")]), "provider_unavailable", True),
    ],
)
def test_errors_are_classified_by_what_they_mean(
    error: BaseException, kind: str, retryable: bool
) -> None:
    info = classify_error(error, POLICY)
    assert (info.kind, info.retryable) == (kind, retryable)


def test_policy_can_ask_to_retry_unknown_errors_and_timeouts() -> None:
    lenient = RetryPolicy(retry_unknown_errors=True, retry_on_timeout=True)
    assert classify_error(KeyError("bug"), lenient).retryable
    assert classify_error(JobTimeout("slow"), lenient).retryable


def test_provider_waits_grow_jitter_down_and_honour_the_hint() -> None:
    assert provider_wait(1, None, 0.0) == pytest.approx(0.5)
    assert provider_wait(3, None, 0.0) == pytest.approx(2.0)
    assert provider_wait(30, None, 0.0) == pytest.approx(30.0)  # capped
    assert provider_wait(3, None, 0.999) == pytest.approx(1.0, abs=0.01)  # half off at most
    assert provider_wait(1, 7.0, 0.5) == 7.0  # never sooner than retry-after
    assert provider_wait(30, 0.1, 0.0) == pytest.approx(30.0)
    # An operator's ceiling (BACKBURNER_PROVIDER_RETRY_MAX_SECONDS) caps the growth, not the hint.
    assert provider_wait(30, None, 0.0, ceiling=4.0) == pytest.approx(4.0)
    assert provider_wait(2, None, 0.0, ceiling=4.0) == pytest.approx(1.0)
    assert provider_wait(30, 9.0, 0.0, ceiling=4.0) == 9.0


def test_only_throttling_and_blips_are_waited_out_inside_an_attempt() -> None:
    assert is_throttled_or_unavailable(RateLimited("429", retry_after=1))
    assert is_throttled_or_unavailable(ProviderUnavailable("503"))
    for permanent in (QuotaExhausted("q"), RequestTooLarge("big"), ProviderRejected("400")):
        assert not is_throttled_or_unavailable(permanent)


def test_policy_can_name_extra_transient_errors() -> None:
    class Hiccup(Exception):
        pass

    policy = RetryPolicy(retry_unknown_errors=False, retry_on=(Hiccup,))
    assert classify_error(Hiccup("x"), policy).retryable


def test_transient_error_is_retried_later() -> None:
    decision = decide_after_failure(
        ErrorInfo("transient", "x", True), 1, POLICY, NOW, random.Random(1)
    )
    assert decision.retry
    assert decision.run_at is not None
    assert NOW + timedelta(seconds=1) <= decision.run_at <= NOW + timedelta(seconds=2)


def test_permanent_error_fails_at_once() -> None:
    decision = decide_after_failure(ErrorInfo("invalid_input", "x", False), 1, POLICY, NOW)
    assert not decision.retry
    assert "not retryable" in decision.reason


def test_no_retry_past_max_attempts() -> None:
    decision = decide_after_failure(ErrorInfo("transient", "x", True), 5, POLICY, NOW)
    assert not decision.retry
    assert "5/5" in decision.reason


def test_retry_after_is_never_undercut() -> None:
    info = classify_error(RateLimited("429", retry_after=30.0), POLICY)
    decision = decide_after_failure(info, 1, POLICY, NOW, random.Random(1))
    assert decision.run_at == NOW + timedelta(seconds=30)


def test_handler_can_ask_for_a_specific_delay() -> None:
    info = classify_error(Retry("later", defer=12.5), POLICY)
    decision = decide_after_failure(info, 1, POLICY, NOW, random.Random(3))
    assert decision.run_at == NOW + timedelta(seconds=12.5)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)


def test_only_jobs_running_before_a_renewal_can_be_judged_lost() -> None:
    from backburner.worker.leases import lost_leases

    first, second = object(), object()
    before = {"a": object(), "b": object(), "d": object(), "e": first}
    # "b" was reaped by another worker; "c" was claimed while the renewal ran; "d" ended
    # meanwhile; "e" failed, was retried and claimed again as a new attempt meanwhile (its
    # new lease came after the renewal began: stopping it stranded the job until reaped).
    now = {"a": before["a"], "b": before["b"], "c": object(), "e": second}
    assert lost_leases(before, now, held={"a", "c"}) == ["b"]
    assert lost_leases({"e": first}, {"e": first}, held=set()) == ["e"]


def test_a_held_job_not_running_here_is_orphaned_at_the_second_heartbeat() -> None:
    from backburner.worker.leases import orphaned_leases

    # "n" was claimed as the renewal ran and is not started yet: only a suspect.
    orphaned, suspects = orphaned_leases({"a", "n"}, {"a": 1}, set())
    assert (orphaned, suspects) == (set(), {"n"})
    # Next heartbeat: "n" runs now (cleared); "x" is held, not running, suspected before.
    orphaned, suspects = orphaned_leases({"a", "n", "x"}, {"a": 1, "n": 2}, {"n", "x"})
    assert (orphaned, suspects) == ({"x"}, set())


def test_a_response_may_queue_for_longer_in_a_discounted_window() -> None:
    from backburner.worker.context import queued_limit

    assert queued_limit(None, 900) == 900
    assert queued_limit("soonest", 900) == 900
    assert queued_limit("2h", 900) == 900 + 7200
    assert queued_limit("8h", 60) == 60 + 8 * 3600


def test_a_response_given_up_on_as_stuck_is_a_transient_failure() -> None:
    from backburner.providers.base import ResponseSnapshot
    from backburner.worker.context import STUCK, ensure_completed, worth_asking_again

    stuck = ResponseSnapshot(
        id="resp_1", status="cancelled", error_code=STUCK, error_message="still queued after 9s"
    )
    assert worth_asking_again(stuck)
    with pytest.raises(ProviderUnavailable) as raised:
        ensure_completed(stuck)
    assert classify_error(raised.value, POLICY).retryable
    cancelled = ResponseSnapshot(id="resp_2", status="cancelled")
    assert not worth_asking_again(cancelled)
    failed = ResponseSnapshot(id="resp_3", status="failed", error_code="server_error")
    assert worth_asking_again(failed)
    with pytest.raises(ResponseFailed) as transient:
        ensure_completed(failed)
    assert classify_error(transient.value, POLICY).retryable
