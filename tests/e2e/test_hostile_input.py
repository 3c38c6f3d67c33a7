"""Odd bytes and odd values get a 4xx problem+json and store nothing, on both databases:
NUL bytes, lone surrogates, huge dates and numbers, deep nesting, values of the wrong type."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Keys, auth
from tests.e2e.test_api_jobs import assert_problem

JSON = {"content-type": "application/json"}


def raw(text: str) -> bytes:
    """JSON text as sent, escapes and all (json.dumps would refuse some of these)."""
    return text.encode("utf-8", "surrogatepass")


BAD_JOBS = {
    "nul in payload": raw('{"type": "noop", "payload": {"echo": "a\\u0000b"}}'),
    "nul in a key": raw('{"type": "noop", "payload": {"a\\u0000": 1}}'),
    "raw nul": b'{"type": "noop", "payload": {"echo": "a\x00b"}}',
    "lone surrogate": raw('{"type": "noop", "payload": {"echo": "\\ud800"}}'),
    "lone low surrogate": raw('{"type": "noop", "payload": {"echo": "x\\udc00y"}}'),
    "surrogate in type": raw('{"type": "noop\\ud800"}'),
    "invalid utf-8": b'{"type": "noop", "payload": {"echo": "\xff\xfe"}}',
    "deep nesting": raw('{"type": "noop", "payload": {"echo": ' + "[" * 5000 + "]" * 5000 + "}}"),
    "very deep": raw(
        '{"type": "noop", "payload": ' + '{"a":' * 200_000 + "1" + "}" * 200_000 + "}"
    ),
    "huge int": raw('{"type": "noop", "payload": {"echo": ' + "9" * 5000 + "}}"),
    "huge float": raw('{"type": "noop", "payload": {"echo": 1e999}}'),
    "NaN": raw('{"type": "noop", "payload": {"echo": NaN}}'),
    "priority true": raw('{"type": "noop", "priority": true}'),
    "priority float": raw('{"type": "noop", "priority": 1.5}'),
    "priority huge": raw('{"type": "noop", "priority": 99999999999999999999}'),
    "far run_at and deadline": raw(
        '{"type": "noop", "run_at": "9999-12-31T23:59:59Z", "deadline_seconds": 86400}'
    ),
    "year zero": raw('{"type": "noop", "run_at": "0000-01-01T00:00:00Z"}'),
    "deadline NaN": raw('{"type": "noop", "deadline_seconds": NaN}'),
    "callback with quotes": raw('{"type": "noop", "callback_url": "https://example.com/\\"><x"}'),
    "e-mail with html": raw('{"type": "noop", "notify": {"email": ["<b>a@example.com"]}}'),
}


@pytest.mark.parametrize("body", BAD_JOBS.values(), ids=BAD_JOBS.keys())
async def test_a_hostile_job_body_is_a_4xx_and_stores_nothing(
    api_only: httpx.AsyncClient, body: bytes
) -> None:
    answer = await api_only.post("/api/jobs", content=body, headers=JSON)
    assert 400 <= answer.status_code < 500, answer.text
    assert_problem(answer, answer.status_code)
    assert (await api_only.get("/api/jobs")).json()["items"] == []


BAD_PATHS = [
    "/api/jobs/%00",
    "/api/jobs/a%00b/events",
    "/api/jobs/%ED%A0%80",
    "/api/jobs/%FF",
    "/api/jobs?status=%00",
    "/api/jobs?type=%ED%A0%80",
    "/api/jobs?cursor=%00",
    "/api/documents/%00",
    "/api/jobs?limit=99999999999999999999999",
]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_odd_bytes_in_paths_and_queries_are_a_4xx(
    api_only: httpx.AsyncClient, path: str
) -> None:
    answer = await api_only.get(path)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_owner_limits_take_numbers_not_booleans(
    api_only: httpx.AsyncClient, keys: Keys
) -> None:
    for body in (
        '{"monthly_budget_usd": false}',
        '{"monthly_budget_usd": NaN}',
        '{"monthly_budget_usd": -1}',
        '{"monthly_budget_usd": 1e999}',
    ):
        answer = await api_only.put(
            "/api/owners/alice/limits", content=body, headers={**JSON, **auth(keys.admin)}
        )
        assert_problem(answer, 422)
    limits = (await api_only.get("/api/owners/alice/limits", headers=auth(keys.admin))).json()
    assert limits["monthly_budget_usd"] is None


async def test_a_dashboard_form_with_a_nul_stores_nothing(
    api_only: httpx.AsyncClient, keys: Keys
) -> None:
    signed_in = await api_only.get(f"/?token={keys.alice}", follow_redirects=False)
    assert signed_in.status_code == 303
    for form in (
        {"type": "summarize_documents", "summary_style": "brief\x00"},
        {"type": "generate_report", "user_id": "u\x00", "period": "2026-01"},
    ):
        answer = await api_only.post(
            "/new", data=form, headers={"Authorization": "", "Origin": "http://test"}
        )
        assert answer.status_code == 422
        assert "cannot be stored" in answer.text
    assert (await api_only.get("/api/jobs")).json()["items"] == []
