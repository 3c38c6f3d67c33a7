"""Provider chaos: does the work finish, and what did the faults cost?

The same work runs twice on loopback, once clean and once with the emulator misbehaving
(5% 429s, 2% 500s, 2% responses failed with a transient code, 1% stuck in the queue,
5% webhooks lost) and the one `backburner worker` process SIGKILLed twice (a supervisor
starts it again at once). The work: a summarize_documents job over 150 documents, a
classify_leads job over 5,000 leads, and 200 generate_report jobs whose model calls a tool.

It prints one table, clean and chaos side by side: jobs that succeeded, distinct model
calls, responses created and every extra creation explained (failed and asked again,
stuck and asked again, created but never recorded because the worker died in between),
the tokens the emulator billed, and wall time.

    python bench/chaos.py                    # the whole work, 2 s responses
    python bench/chaos.py --scale 0.2        # a fifth of it, for a quick look

Everything runs on loopback: a PostgreSQL database made for each run, `backburner
emulator`, `backburner serve --no-worker` (receiving OpenAI's webhooks) and `backburner
worker`.
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
import base64
import os
import random
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from bench_support import (
    BACKBURNER,
    KEYRING,
    clean_env,
    describe,
    drop_database,
    free_port,
    fresh_database,
    process,
    wait_http,
)

from backburner.store import Database, NewJob
from backburner.store import documents as documents_store
from backburner.store import jobs as jobs_store
from backburner.store.schema import job_events, provider_calls
from backburner.store.schema import jobs as jobs_table

FAULTS = [
    "--share-429",
    "0.05",
    "--retry-after",
    "0.5",
    "--share-500",
    "0.02",
    "--share-failed",
    "0.02",
    "--share-stuck",
    "0.01",
    "--share-webhook-lost",
    "0.05",
]
RISKS = ["supplier concentration", "currency exposure", "a pending lawsuit", "key-person risk"]


@dataclass
class Run:
    name: str
    jobs: int = 0
    succeeded: int = 0
    calls: int = 0
    created: int = 0
    failed_transient: int = 0
    stuck: int = 0
    unrecorded: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    webhooks_lost: int = 0
    billed_tokens: int = 0
    wall_seconds: float = 0.0
    kills: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def extra(self) -> int:
        return self.created - self.calls

    @property
    def explained(self) -> int:
        return self.failed_transient + self.stuck + self.unrecorded


def report_text(index: int, rng: random.Random) -> str:
    company = f"Company {index:03d} {rng.choice(['Ltd', 'GmbH', 'SA', 'Inc'])}"
    revenue = f"EUR {rng.randint(2, 900)}.{rng.randint(0, 9)} million"
    risk = rng.choice(RISKS)
    body = [
        f"Annual report of {company}. Revenue for the year was {revenue}.",
        f"The main risk the board names is {risk}.",
    ]
    for paragraph in range(12):
        body.append(
            f"Section {paragraph + 1}: operations continued across {rng.randint(2, 40)} sites; "
            f"headcount moved to {rng.randint(50, 5000)} people and margins to "
            f"{rng.randint(2, 30)} percent, with investment in {rng.choice(RISKS)} controls."
        )
    return "\n\n".join(body)


async def put_work(db: Database, scale: float) -> list[str]:
    """The run's jobs, enqueued at once; their ids."""
    rng = random.Random(11)
    now = datetime.now(UTC)
    documents = [
        (
            await documents_store.take_document(
                db,
                owner="acme",
                filename=f"report-{i:03d}.txt",
                content_type="text/plain",
                size_bytes=len(text),
                text=text,
                now=now,
            )
        )[0]  # each report's text is its own: always a new document
        for i, text in ((i, report_text(i, rng)) for i in range(max(2, int(150 * scale))))
    ]
    leads = [
        {
            "id": f"l{i}",
            "name": f"Lead {i}",
            "company": f"Firm {i}",
            "notes": rng.choice(["hot prospect", "cold, no budget", "warm intro", "asked price"]),
        }
        for i in range(max(25, int(5000 * scale)))
    ]
    work: list[tuple[str, dict[str, Any]]] = [
        ("summarize_documents", {"document_ids": [d.id for d in documents]}),
        ("classify_leads", {"leads": leads, "labels": ["hot", "warm", "cold"]}),
    ]
    work += [
        ("generate_report", {"user_id": f"u_{i}", "period": f"2026-{1 + i % 9:02d}"})
        for i in range(max(1, int(200 * scale)))
    ]
    ids = []
    for job_type, payload in work:
        job, _ = await jobs_store.insert_job(
            db,
            NewJob(
                owner="acme",
                type=job_type,
                payload=payload,
                max_attempts=10,
                timeout_seconds=3600,
            ),
            now=datetime.now(UTC),
        )
        ids.append(job.id)
    return ids


async def ended(db: Database, ids: list[str]) -> tuple[int, int]:
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(jobs_table.c.status, sa.func.count())
                .where(jobs_table.c.id.in_(ids))
                .group_by(jobs_table.c.status)
            )
        ).all()
    by_status = {status: int(count) for status, count in rows}
    done = sum(by_status.get(s, 0) for s in ("succeeded", "failed", "canceled"))
    return done, by_status.get("succeeded", 0)


async def run(
    name: str, *, chaos: bool, scale: float, latency: float, queued_limit: float, workdir: Path
) -> Run:
    result = Run(name)
    url = await fresh_database("postgresql", workdir)
    emulator_port, api_port = free_port(), free_port()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    env = {
        **clean_env(),
        "BACKBURNER_DATABASE_URL": url,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{emulator_port}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_WEBHOOK_SECRET": secret,
        "BACKBURNER_LOG_LEVEL": "WARNING",
        # A killed worker's jobs come back when its lease runs out: keep that short.
        "BACKBURNER_LEASE_SECONDS": "10",
        "BACKBURNER_HEARTBEAT_SECONDS": "2",
        "BACKBURNER_REAP_INTERVAL_SECONDS": "2",
        # Responses here leave the queue within 50 ms; one queued for this long is stuck.
        "BACKBURNER_RESPONSE_QUEUED_LIMIT_SECONDS": str(queued_limit),
        "BACKBURNER_NOTIFY_DISPATCHER": "false",
    }
    emulator_args = [
        "emulator",
        "--port",
        str(emulator_port),
        "--latency",
        str(latency),
        "--latency-jitter",
        str(latency / 2),
        "--seed",
        "5",
        "--webhook-url",
        f"http://127.0.0.1:{api_port}/webhooks/openai",
        "--webhook-secret",
        secret,
        *(FAULTS if chaos else []),
    ]
    db = Database(url, sealer=KEYRING)
    try:
        with (
            process(*emulator_args, env=env),
            process("serve", "--no-worker", "--port", str(api_port), env=env),
        ):
            await wait_http(f"http://127.0.0.1:{emulator_port}/_emulator/stats")
            await wait_http(f"http://127.0.0.1:{api_port}/healthz")
            ids = await put_work(db, scale)
            result.jobs = len(ids)
            started = time.monotonic()
            worker = start_worker(env)
            kill_at = [0.25, 0.55] if chaos else []
            try:
                while True:
                    done, _ = await ended(db, ids)
                    if done == len(ids):
                        break
                    if kill_at and done >= kill_at[0] * len(ids):
                        kill_at.pop(0)
                        worker.send_signal(signal.SIGKILL)
                        worker.wait()
                        result.kills += 1
                        worker = start_worker(env)  # as a supervisor would, at once
                    if time.monotonic() - started > 1800:
                        result.failures.append("did not finish within 30 minutes")
                        break
                    await asyncio.sleep(0.5)
                result.wall_seconds = time.monotonic() - started
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
            _, result.succeeded = await ended(db, ids)
            await account(db, result, f"http://127.0.0.1:{emulator_port}")
    finally:
        await db.close()
        await drop_database(url)
    return result


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [BACKBURNER, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def account(db: Database, result: Run, emulator: str) -> None:
    """Who created what: the emulator's list of responses against what we recorded."""
    async with httpx.AsyncClient(timeout=60) as client:
        stats = (await client.get(f"{emulator}/_emulator/stats")).json()
        responses = (await client.get(f"{emulator}/_emulator/responses")).json()["data"]
    async with db.read() as conn:
        result.calls = int(
            (await conn.execute(sa.select(sa.func.count()).select_from(provider_calls))).scalar()
            or 0
        )
        submitted = {
            (row.data or {}).get("response_id")
            for row in await conn.execute(
                sa.select(job_events.c.data).where(job_events.c.kind == "model_call_submitted")
            )
        }
        messages = [
            row.message or ""
            for row in await conn.execute(
                sa.select(job_events.c.message).where(job_events.c.kind == "model_call_finished")
            )
        ]
    result.created = stats["responses_created"]
    result.rate_limited = stats["rate_limited"]
    result.server_errors = stats["server_errors"]
    result.webhooks_lost = stats["webhooks_lost"]
    result.billed_tokens = sum(r["billed_tokens"] for r in responses)
    result.failed_transient = sum(
        1 for r in responses if r["status"] == "failed" and r["fate"] == "failed"
    )
    result.stuck = sum(1 for m in messages if m.startswith("still queued"))
    result.unrecorded = sum(1 for r in responses if r["id"] not in submitted)


def table(runs: list[Run]) -> str:
    clean, chaos = runs
    rows = [
        ("jobs succeeded", *(f"{r.succeeded} of {r.jobs}" for r in runs)),
        ("worker SIGKILLs", *(str(r.kills) for r in runs)),
        ("distinct model calls", *(str(r.calls) for r in runs)),
        ("responses created", *(str(r.created) for r in runs)),
        ("  extra creations", *(str(r.extra) for r in runs)),
        ("  failed (transient), asked again", *(str(r.failed_transient) for r in runs)),
        ("  stuck in the queue, asked again", *(str(r.stuck) for r in runs)),
        ("  created, never recorded (kill)", *(str(r.unrecorded) for r in runs)),
        ("  unexplained", *(str(r.extra - r.explained) for r in runs)),
        ("429s / 500s answered", *(f"{r.rate_limited} / {r.server_errors}" for r in runs)),
        ("webhooks lost", *(str(r.webhooks_lost) for r in runs)),
        ("tokens billed (emulator)", *(f"{r.billed_tokens:,}" for r in runs)),
        ("  vs clean", "1.00x", f"{chaos.billed_tokens / max(1, clean.billed_tokens):.3f}x"),
        ("wall time", *(f"{r.wall_seconds:.1f} s" for r in runs)),
        ("  vs clean", "1.00x", f"{chaos.wall_seconds / max(0.001, clean.wall_seconds):.2f}x"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'':<{width}}{'clean':>16}{'chaos':>16}"]
    lines += [f"{label:<{width}}{a:>16}{b:>16}" for label, a, b in rows]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the work to run")
    parser.add_argument("--latency", type=float, default=2.0, help="seconds a response takes")
    parser.add_argument(
        "--queued-limit",
        type=float,
        default=10.0,
        help="BACKBURNER_RESPONSE_QUEUED_LIMIT_SECONDS for the worker (900 by default)",
    )
    args = parser.parse_args()
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    print(f"machine: {describe()}")
    print(
        f"work: {max(2, int(150 * args.scale))} documents, {max(25, int(5000 * args.scale))} "
        f"leads, {max(1, int(200 * args.scale))} reports; responses take {args.latency:g} s "
        f"(+ up to {args.latency / 2:g} s); a response queued {args.queued_limit:g} s is stuck"
    )
    runs = [
        await run(
            name,
            chaos=name == "chaos",
            scale=args.scale,
            latency=args.latency,
            queued_limit=args.queued_limit,
            workdir=workdir,
        )
        for name in ("clean", "chaos")
    ]
    print(table(runs))
    clean, chaos = runs
    aims = {
        "every job succeeds": all(r.succeeded == r.jobs for r in runs),
        "every extra creation explained": chaos.extra <= chaos.explained,
        "billed tokens <= 1.05x clean": chaos.billed_tokens <= 1.05 * clean.billed_tokens,
        "wall time <= 1.5x clean": chaos.wall_seconds <= 1.5 * clean.wall_seconds,
    }
    for aim, held in aims.items():
        print(f"{'met' if held else 'NOT MET':>8}  {aim}")
    for r in runs:
        for failure in r.failures:
            print(f"{r.name}: {failure}")


if __name__ == "__main__":
    asyncio.run(main())
