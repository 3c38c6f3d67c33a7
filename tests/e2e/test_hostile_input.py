"""Odd bytes and odd values get a 4xx problem+json and store nothing, on both databases:
NUL bytes, lone surrogates, huge dates and numbers, deep nesting, values of the wrong type."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import sqlalchemy as sa

from backburner.store import Database
from backburner.store import jobs as jobs_store
from backburner.store.schema import audit_events
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


# Valid, but odd: stored as sent (creates on SQLite go straight to its driver, bound).
ODD_TEXT = "𝄞 \u2028 \u202e'); DROP TABLE jobs;-- \\ \" \t é"


async def test_odd_but_valid_creates_together_are_stored_as_sent_and_keys_stay_per_owner(
    api_only: httpx.AsyncClient, keys: Keys, db: Database
) -> None:
    agent = "ag\xe9nt \"'); DROP TABLE audit_events;--"  # a header is latin-1
    bodies = [
        {
            "type": "noop",
            "payload": {"echo": f"{ODD_TEXT} {n}"},
            "idempotency_key": f"{ODD_TEXT}{n}",
        }
        for n in range(12)
    ]
    # Together: the creates that arrive at once are written as a group.
    answers = await asyncio.gather(
        *(
            api_only.post("/api/jobs", json=body, headers={"User-Agent": agent.encode("latin-1")})
            for body in bodies
        )
    )
    assert [a.status_code for a in answers] == [201] * 12, [a.text for a in answers]
    for body, answer in zip(bodies, answers, strict=True):
        job_id = answer.json()["job_id"]
        view = (await api_only.get(f"/api/jobs/{job_id}")).json()
        assert view["idempotency_key"] == body["idempotency_key"]
        stored_job = await jobs_store.get_job(db, job_id)
        assert stored_job is not None
        assert stored_job.payload["echo"] == body["payload"]["echo"]  # type: ignore[index]
    async with db.read() as conn:
        stored = (
            await conn.execute(
                sa.select(audit_events.c.user_agent, audit_events.c.detail).where(
                    audit_events.c.action == "job.created"
                )
            )
        ).all()
    assert sorted(stored) == [(agent, {"type": "noop"})] * 12

    # Bob's create with alice's key makes bob's own job; alice's is not his to see.
    bobs = await api_only.post("/api/jobs", json=bodies[0], headers=auth(keys.bob))
    assert bobs.status_code == 201
    assert bobs.json()["job_id"] != answers[0].json()["job_id"]
    theirs = await api_only.get(f"/api/jobs/{answers[0].json()['job_id']}", headers=auth(keys.bob))
    assert theirs.status_code == 404
    again = await api_only.post("/api/jobs", json=bodies[0])
    assert (again.status_code, again.json()["job_id"]) == (200, answers[0].json()["job_id"])
