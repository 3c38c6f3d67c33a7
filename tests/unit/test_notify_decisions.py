"""Notification decisions without a database: retries, the SSRF guard, signatures, and who
is owed which message."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from backburner.notify import messages, policy, signing
from backburner.notify.ssrf import (
    Allowed,
    UnsafeTarget,
    check_scheme,
    check_url,
    checked_addresses,
    is_public,
    normalised_host,
    safe_url,
)
from backburner.store import Job, JobStatus
from backburner.store.channels import Endpoint, OwnerChannels

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LINKS = messages.Links("https://bb.example")


def test_retries_back_off_by_three_with_jitter_up_to_three_hours() -> None:
    rng = random.Random(1)
    delays = [policy.retry_delay(n, 5.0, rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        expected = min(policy.MAX_DELAY_SECONDS, 5.0 * 3 ** (n - 1))
        assert 0.8 * expected <= delay <= 1.2 * expected
    # Fourteen tries fit in the default day of trying (give_up_at ends it after that).
    total = sum(min(policy.MAX_DELAY_SECONDS, 5.0 * 3 ** (n - 1)) for n in range(1, 15))
    assert 20 * 3600 < total < 24 * 3600


def test_next_step_succeeds_retries_and_gives_up() -> None:
    later = NOW + timedelta(hours=1)
    assert policy.next_step(ok=True, gone=False, attempts=1, now=NOW, give_up_at=later, base=5) == (
        "succeeded",
        None,
    )
    status, at = policy.next_step(
        ok=False, gone=False, attempts=1, now=NOW, give_up_at=later, base=5
    )
    assert status == "pending"
    assert at is not None
    assert NOW + timedelta(seconds=4) <= at <= NOW + timedelta(seconds=6)
    assert policy.next_step(ok=False, gone=True, attempts=1, now=NOW, give_up_at=later, base=5) == (
        "failed",
        None,
    )
    assert policy.next_step(
        ok=False, gone=False, attempts=9, now=NOW, give_up_at=later, base=5
    ) == ("failed", None)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("2606:4700:4700::1111", True),
    ],
)
def test_only_public_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_schemes_and_credentials() -> None:
    strict = Allowed.parse([], allow_http=False)
    assert check_scheme("https://example.com/x", strict) == ("https", "example.com", 443)
    for url in ("http://example.com", "ftp://example.com", "https://u:p@example.com", "https://"):
        with pytest.raises(UnsafeTarget):
            check_scheme(url, strict)
    relaxed = Allowed.parse([], allow_http=True)
    assert check_scheme("http://Example.com:8080/x", relaxed) == ("http", "example.com", 8080)


async def test_names_resolving_to_loopback_are_refused_unless_allow_listed() -> None:
    strict = Allowed.parse([], allow_http=True)
    with pytest.raises(UnsafeTarget, match="non-public"):
        await checked_addresses("localhost", 9, strict)
    by_name = Allowed.parse(["localhost"], allow_http=True)
    assert all(a.is_loopback for a in await checked_addresses("localhost", 9, by_name))
    by_network = Allowed.parse(["127.0.0.0/8"], allow_http=True)
    assert await checked_addresses("127.0.0.2", 80, by_network) == [
        ipaddress.ip_address("127.0.0.2")
    ]
    # Addresses written in the URL are checked before any request (aiohttp does not
    # resolve them, so the resolver would never see them).
    with pytest.raises(UnsafeTarget, match="not a public address"):
        check_url("https://10.0.0.1/x", strict)
    assert check_url("https://127.0.0.5:8443/x", by_network) == ("127.0.0.5", 8443)


def test_signatures_verify_with_standardwebhooks_during_rotation() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"id":"evt_1"}'
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([new, old], "evt_1", now, body)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret).verify(body, headers) == {"id": "evt_1"}
    stale = signing.headers([new], "evt_1", now - 3600, body)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new).verify(body, stale)


def job(**changes: object) -> Job:
    values: dict[str, object] = {
        "id": "j1",
        "owner": "acme",
        "type": "noop",
        "status": JobStatus.FAILED,
        "substate": None,
        "payload": {},
        "result": None,
        "error_message": "boom",
        "error_kind": "permanent",
        "error_retryable": False,
        "callback_url": "https://cb.example/hook",
        "priority": 0,
        "run_at": NOW,
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": NOW,
        "completed_at": NOW,
        "attempts": 1,
        "retry_count": 0,
        "max_attempts": 3,
        "timeout_seconds": 60.0,
        "lease_owner": None,
        "lease_expires_at": None,
        "cancel_requested": False,
        "progress": 0.0,
        "progress_message": None,
        "idempotency_key": None,
        "request_hash": None,
        "deadline_at": None,
        "notify": None,
        "model": None,
        "size": None,
    }
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


def owed(j: Job, channels: OwnerChannels | None = None, endpoints: list[Endpoint] | None = None):  # type: ignore[no-untyped-def]
    return messages.owed_deliveries(
        j,
        f"job.{j.status.value}",
        "evt_9",
        channels,
        endpoints or [],
        links=LINKS,
        inline_limit=100,
    )


def test_callbacks_endpoints_and_channels_owed() -> None:
    failed_only = Endpoint("e1", "acme", "https://ops.example", ["job.failed"], True, None, NOW)
    successes = Endpoint("e2", "acme", "https://app.example", ["job.succeeded"], True, None, NOW)
    items = owed(job(), endpoints=[failed_only, successes])
    assert [(i.channel, i.target) for i in items] == [
        ("webhook", "https://cb.example/hook"),
        ("webhook", "https://ops.example"),
    ]
    assert items[0].payload["error_message"] == "boom"
    # The error as GET /api/jobs/{id} gives it: whether sending the job again may help.
    assert items[0].payload["error"] == {"kind": "permanent", "message": "boom", "retryable": False}
    succeeded = owed(job(status=JobStatus.SUCCEEDED, error_message=None, error_kind=None))
    assert succeeded[0].payload["error"] is None
    channels = OwnerChannels(
        "acme", ["ops@acme.example"], "https://hooks.slack.com/x", None, ["job.failed"]
    )
    by_default = owed(job(callback_url=None), channels)
    assert [(i.channel, i.target) for i in by_default] == [
        ("email", "ops@acme.example"),
        ("slack", "https://hooks.slack.com/x"),
    ]
    asked = job(
        callback_url=None, status=JobStatus.SUCCEEDED, notify={"email": ["a@x.io"], "teams": True}
    )
    assert [i.channel for i in owed(asked, channels)] == ["email"]  # no Teams URL set


def test_large_results_are_linked_not_inlined() -> None:
    small = owed(job(status=JobStatus.SUCCEEDED, result={"a": 1}))[0].payload
    assert small["result"] == {"a": 1}
    assert small["result_url"] is None
    large = owed(job(status=JobStatus.SUCCEEDED, result={"text": "x" * 500}))[0].payload
    assert large["result"] is None
    assert large["result_url"] == "https://bb.example/api/jobs/j1/result"
    stored = owed(job(status=JobStatus.SUCCEEDED, result_object="results/j1/1-ab", result_bytes=9))
    assert stored[0].payload["result"] is None
    assert stored[0].payload["result_url"] == "https://bb.example/api/jobs/j1/result"


LOOPBACK_SPELLINGS = [
    "１２７.０.０.１",  # fullwidth digits
    "127。0。0。1",  # ideographic full stops
    "①②⑦.0.0.1",  # circled digits
    "127．0．0．1",  # fullwidth full stops
    "2130706433",  # one decimal number
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hex
    "0x7f000001",
    "127.1",  # short form
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::1]",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused_before_any_request(host: str) -> None:
    relaxed = Allowed.parse([], allow_http=True)
    for url in (f"https://{host}:8325/hook", f"http://{host}/hook"):
        with pytest.raises(UnsafeTarget, match="not a public address"):
            check_url(url, relaxed)
        with pytest.raises(UnsafeTarget):
            safe_url(url, relaxed)


@pytest.mark.parametrize(
    "host", ["１６９.２５４.１６９.２５４", "169。254。169。254", "2852039166", "0xa9fea9fe"]
)
def test_cloud_metadata_in_any_spelling_is_refused(host: str) -> None:
    with pytest.raises(UnsafeTarget, match="not a public address"):
        check_url(f"https://{host}/latest/meta-data", Allowed.parse([], allow_http=False))


def test_hosts_are_normalised_as_the_network_sees_them() -> None:
    assert normalised_host("１２７.０.０.１") == "127.0.0.1"
    assert normalised_host("Example.COM.") == "example.com"
    assert normalised_host("ｅｘａｍｐｌｅ.com") == "example.com"
    assert normalised_host("例え.テスト") == "xn--r8jz45g.xn--zckzah"
    assert normalised_host("hooks_test.example.com") == "hooks_test.example.com"
    assert normalised_host("deadbeef.cafe") == "deadbeef.cafe"  # hex-looking, still a name
    for bad in ("\ud800x.com", "a\u2028.com", "bad\x00.com", "a b.com", "-x.例え"):
        with pytest.raises(UnsafeTarget):
            normalised_host(bad)


def test_the_request_goes_to_the_url_the_guard_checked() -> None:
    allowed = Allowed.parse(["127.0.0.0/8"], allow_http=True)
    # An allow-listed loopback receiver still works, written any way.
    assert safe_url("http://１２７.０.０.１:8325/hook?x=1", allowed) == (
        "http://127.0.0.1:8325/hook?x=1"
    )
    assert safe_url("http://0x7f.1/hook", allowed) == "http://127.0.0.1/hook"
    public = Allowed.parse([], allow_http=False)
    assert safe_url("https://例え.テスト:443/p#frag", public) == "https://xn--r8jz45g.xn--zckzah/p"


def test_an_email_says_what_was_done_and_how_it_begins() -> None:
    summary = "The harbour board met on Tuesday. " * 30
    done = job(
        status=JobStatus.SUCCEEDED,
        type="summarize_documents",
        error_message=None,
        result={"summary": summary, "documents": 147, "chunks": 1066, "key_points": ["x"]},
    )
    message = messages.email_message(done, messages.Links("https://bb.example"), "a@example.com")
    assert "Documents: 147" in message["text"]
    assert "Summary: The harbour board met on Tuesday." in message["text"]
    assert message["text"].count("harbour") < 30  # the first lines, not all of it
    assert "<dt>Documents</dt><dd>147</dd>" in message["html"]
    assert "View result: https://bb.example/jobs/j1" in message["text"]
    hostile = job(
        status=JobStatus.SUCCEEDED,
        error_message=None,
        result={"summary": "<script>alert(1)</script>", "label_counts": {"hot": 2}},
    )
    html_body = messages.email_message(hostile, messages.Links("https://bb.example"), "a@x.io")[
        "html"
    ]
    assert "<script>" not in html_body
    assert "Labels</dt><dd>hot 2" in html_body
    assert messages.result_excerpt(job()) == []  # a failed job: its error, no excerpt
