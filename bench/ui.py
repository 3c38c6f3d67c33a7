"""Is the dashboard fast with a big table? Seeds 100,000 jobs (with their timelines and
model calls) into a fresh PostgreSQL database, starts `backburner serve --no-worker` on
loopback, and times the pages by their `Server-Timing` header (the service's own time,
without the HTTP client) and by the wall clock of a loopback client.

    python bench/ui.py                  # 100,000 jobs, 200 requests per page
    python bench/ui.py --jobs 20000 --requests 50

Loopback only; bounded by --jobs and --requests.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`: this folder goes last on
# the import path, so the standard library wins and `bench_support` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import asyncio
import json
import random
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from bench_support import (
    KEYRING,
    clean_env,
    describe,
    drop_database,
    free_port,
    fresh_database,
    percentile,
    process,
    wait_http,
)

from backburner.store import Database, Role
from backburner.store import keys as keys_store
from backburner.store.database import plain_postgres_dsn

TYPES = ("summarize_documents", "classify_leads", "generate_report", "noop")
OWNERS = ("alice", "bob", "carol")
# succeeded 94%, failed 3%, canceled 1%, pending 1.5%, running 0.5%
STATES = (("succeeded", 0.94), ("failed", 0.03), ("canceled", 0.01), ("pending", 0.015))
SUMMARY = {
    "summary": "The board approved the new timetable and the repair of the north pier. " * 4,
    "key_points": [f"Point {n}: something that was decided and why it matters." for n in range(6)],
    "documents": 3,
    "chunks": 4,
    "characters": 18_000,
}


def uuid7_at(moment: datetime) -> str:
    ms = int(moment.timestamp() * 1000)
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def state_of(draw: float) -> str:
    for state, share in STATES:
        if draw < share:
            return state
        draw -= share
    return "running"


def seed_rows(count: int, now: datetime) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Jobs over the last 30 days, newest last; 4 events each; 3 model calls per ended
    summary."""
    rng = random.Random(7)
    jobs, events, calls = [], [], []
    span = timedelta(days=30).total_seconds()
    for n in range(count):
        created = now - timedelta(seconds=span * (1 - n / count))
        job_id = uuid7_at(created)
        state = state_of(rng.random())
        job_type = TYPES[n % len(TYPES)]
        started = created + timedelta(seconds=rng.uniform(0.05, 2))
        ended = started + timedelta(seconds=rng.uniform(1, 60))
        done = state in ("succeeded", "failed", "canceled")
        result = json.dumps(SUMMARY) if state == "succeeded" else None
        jobs.append(
            (
                job_id,
                OWNERS[n % len(OWNERS)],
                job_type,
                state,
                "{}",
                result,
                "boom" if state == "failed" else None,
                "provider_error" if state == "failed" else None,
                created,  # run_at
                created,
                ended if done else started,
                started if state != "pending" else None,
                ended if done else None,
                1 if state != "pending" else 0,
                3,
                600.0,
                1.0 if state == "succeeded" else 0.3,
            )
        )
        kinds = [("created", None, "pending"), ("started", "pending", "running")]
        if done:
            kinds.append(("progress", None, None))
            kinds.append((state, "running", state))
        for kind, before, after in kinds if state != "pending" else kinds[:1]:
            events.append((job_id, ended if kind == state else created, kind, before, after, 1))
        if done and job_type == "summarize_documents":
            for step in range(3):
                calls.append(
                    (
                        job_id,
                        f"map/{step}",
                        "openai",
                        "gpt-4.1-mini",
                        f"resp_{secrets.token_hex(16)}",
                        "completed",
                        1,
                        rng.randint(200, 4000),
                        rng.randint(50, 600),
                        started,
                        ended,
                        0.0004,
                        0.0004,
                    )
                )
    return jobs, events, calls


def big_job(now: datetime, calls_count: int = 1000) -> tuple[tuple, list[tuple], list[tuple]]:
    """One of alice's summaries of 150 documents: `calls_count` model calls (map steps
    over the documents' parts, then reduce) and two timeline events per call."""
    rng = random.Random(11)
    created = now - timedelta(minutes=10)
    job_id = uuid7_at(created)
    documents = [str(uuid.uuid4()) for _ in range(150)]
    started, ended = created + timedelta(seconds=1), created + timedelta(minutes=6)
    job = (
        job_id,
        "alice",
        "summarize_documents",
        "succeeded",
        json.dumps({"document_ids": documents, "summary_style": "executive"}),
        json.dumps(SUMMARY),
        None,
        None,
        created,
        created,
        ended,
        started,
        ended,
        1,
        5,
        3600.0,
        1.0,
    )
    events = [(job_id, created, "created", None, "pending", 0)]
    calls = []
    for n in range(calls_count):
        key = f"map/{documents[n % 150]}/{n // 150}" if n < calls_count - 1 else "reduce/1/0"
        at = started + timedelta(seconds=n * 0.3)
        events.append((job_id, at, "model_call_submitted", None, None, 1))
        events.append((job_id, at + timedelta(seconds=2), "model_call_finished", None, None, 1))
        calls.append(
            (
                job_id,
                key,
                "openai",
                "gpt-4.1-mini",
                f"resp_{secrets.token_hex(16)}",
                "completed",
                1,
                rng.randint(2000, 4000),
                rng.randint(100, 400),
                at,
                at + timedelta(seconds=2),
                0.0006,
                0.0006,
            )
        )
    events.append((job_id, ended, "succeeded", "running", "succeeded", 1))
    return job, events, calls


async def seed(url: str, count: int) -> tuple[str, str, str, str]:
    """Fill the database; returns an admin key, a member key, one of the member's jobs and
    the member's job of 1,000 model calls."""
    now = datetime.now(UTC)
    jobs, events, calls = seed_rows(count, now)
    big, big_events, big_calls = big_job(now)
    jobs, events, calls = [*jobs, big], [*events, *big_events], [*calls, *big_calls]
    conn = await asyncpg.connect(plain_postgres_dsn(url))
    try:
        await conn.copy_records_to_table(
            "jobs",
            records=jobs,
            columns=[
                "id",
                "owner",
                "type",
                "status",
                "payload",
                "result",
                "error_message",
                "error_kind",
                "run_at",
                "created_at",
                "updated_at",
                "started_at",
                "completed_at",
                "attempts",
                "max_attempts",
                "timeout_seconds",
                "progress",
            ],
        )
        await conn.copy_records_to_table(
            "job_events",
            records=events,
            columns=["job_id", "at", "kind", "from_status", "to_status", "attempt"],
        )
        await conn.copy_records_to_table(
            "provider_calls",
            records=calls,
            columns=[
                "job_id",
                "key",
                "provider",
                "model",
                "response_id",
                "status",
                "attempt",
                "input_tokens",
                "output_tokens",
                "submitted_at",
                "completed_at",
                "cost_usd",
                "list_cost_usd",
            ],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    db = Database(url, sealer=KEYRING)
    try:
        _, admin = await keys_store.create_key(db, owner="admin", role=Role.ADMIN, now=now)
        _, member = await keys_store.create_key(db, owner="alice", role=Role.MEMBER, now=now)
    finally:
        await db.close()
    # A summary of alice's near the middle of the table, with its model calls.
    job = next(
        row[0]
        for row in jobs[len(jobs) // 2 :]
        if row[1] == "alice" and row[2] == "summarize_documents" and row[3] == "succeeded"
    )
    return admin, member, job, big[0]


async def timed(
    client: httpx.AsyncClient, path: str, requests: int
) -> tuple[list[float], list[float], int]:
    server, wall, size = [], [], 0
    for _ in range(requests):
        began = time.perf_counter()
        answer = await client.get(path)
        wall.append((time.perf_counter() - began) * 1000)
        answer.raise_for_status()
        server.append(float(answer.headers["server-timing"].split("dur=")[1]))
        size = len(answer.content)
    return server, wall, size


async def signed_in(base: str, key: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    answer = await client.get(f"/?token={key}", follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(f"Machine: {describe()}")
    with tempfile.TemporaryDirectory() as workdir:
        url = await fresh_database("postgresql", Path(workdir))
        try:
            began = time.perf_counter()
            admin, member, job_id, big_id = await seed(url, args.jobs)
            print(f"Seeded {args.jobs:,} jobs in {time.perf_counter() - began:.1f} s")
            port = free_port()
            env = clean_env() | {"BACKBURNER_DATABASE_URL": url, "BACKBURNER_LOG_LEVEL": "WARNING"}
            serve = ("serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
            with process(*serve, env=env):
                base = f"http://127.0.0.1:{port}"
                await wait_http(f"{base}/readyz")
                as_member = await signed_in(base, member)
                as_admin = await signed_in(base, admin)
                pages = [
                    ("recent jobs (member)", as_member, "/"),
                    ("recent jobs (admin, all owners)", as_admin, "/"),
                    ("recent jobs, failed + type filter", as_member, "/?status=failed&type=noop"),
                    ("recent jobs, queued (50 ETAs)", as_admin, "/?status=pending"),
                    ("job page (summary, 3 model calls)", as_member, f"/jobs/{job_id}"),
                    ("job page live part", as_member, f"/jobs/{job_id}?part=body"),
                    ("job page (1,000 model calls)", as_member, f"/jobs/{big_id}"),
                    ("  its live part", as_member, f"/jobs/{big_id}?part=body"),
                    ("operations (admin)", as_admin, "/ops"),
                ]
                print(
                    f"\n{args.requests} sequential requests per page after 10 to warm up; "
                    "milliseconds\n"
                )
                print(
                    f"{'page':36} {'server p50':>10} {'p95':>7} {'p99':>7} {'wall p50':>9}"
                    f" {'KB':>6}"
                )
                for name, client, path in pages:
                    await timed(client, path, 10)
                    requests = args.requests if path != "/ops" else max(10, args.requests // 10)
                    server, wall, size = await timed(client, path, requests)
                    print(
                        f"{name:36} {percentile(server, 50):10.1f} {percentile(server, 95):7.1f}"
                        f" {percentile(server, 99):7.1f} {percentile(wall, 50):9.1f}"
                        f" {size / 1024:6.0f}"
                    )
                await as_member.aclose()
                await as_admin.aclose()
        finally:
            await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
