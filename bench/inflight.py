"""What does waiting cost? One worker process, N jobs each waiting on a background response
(emulator latency L seconds): peak RSS, CPU seconds while everything waits, provider requests
per second spent on polling, and completion → job-succeeded latency, once noticed by polling
and once by webhooks. Prints one table.

    python bench/inflight.py                       # 10,000 jobs, 60 s latency
    python bench/inflight.py --jobs 2000 --latency 20

Everything runs on loopback: a PostgreSQL database made for the run, `backburner emulator`,
`backburner worker`, and (webhook run) `backburner serve --no-worker` receiving the webhooks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# bench/queue.py is named like the standard library's `queue`: this folder goes last on
# the import path, so the standard library wins and `bench_support` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import asyncio
import base64
import secrets
import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from bench_support import (
    KEYRING,
    clean_env,
    describe,
    drop_database,
    free_port,
    fresh_database,
    percentile,
    process,
    process_cpu_seconds,
    wait_http,
)

from backburner.store import Database, JobStatus, NewJob
from backburner.store.schema import jobs as jobs_table
from backburner.store.schema import provider_calls


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def count(db: Database, query: sa.Select[tuple[int]]) -> int:
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar() or 0)


async def enqueue(db: Database, jobs: int) -> None:
    rows = [
        NewJob(
            owner="bench",
            type="classify_leads",
            max_attempts=3,
            timeout_seconds=3600,
            payload={
                "labels": ["hot", "cold"],
                "leads": [{"id": "1", "notes": f"lead {i}: budget approved"}],
            },
        )
        for i in range(jobs)
    ]
    limit = asyncio.Semaphore(16)
    from backburner.store import jobs as jobs_store

    async def one(new: NewJob) -> None:
        async with limit:
            await jobs_store.insert_job(db, new, now=datetime.now(UTC))

    await asyncio.gather(*(one(new) for new in rows))


async def run(mode: str, jobs: int, latency: float) -> dict[str, Any]:
    url = await fresh_database("postgresql", Path("."))
    db = Database(url, sealer=KEYRING)
    emulator_port, api_port = free_port(), free_port()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    base = clean_env()
    env = {
        **base,
        "BACKBURNER_DATABASE_URL": url,
        "BACKBURNER_LOG_LEVEL": "WARNING",
        "BACKBURNER_LOG_FORMAT": "json",
        "BACKBURNER_CLAIM_BATCH_SIZE": "250",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{emulator_port}/v1",
    }
    emulator_args = ["emulator", "--port", str(emulator_port), "--latency", str(latency)]
    if mode == "webhooks":
        # Webhooks notice completion; polling is only the safety net, so it can be rare.
        env["BACKBURNER_POLL_MAX_SECONDS"] = "30"
        env["OPENAI_WEBHOOK_SECRET"] = secret
        emulator_args += [
            "--webhook-url",
            f"http://127.0.0.1:{api_port}/webhooks/openai",
            "--webhook-secret",
            secret,
        ]
    try:
        await enqueue(db, jobs)
        with (
            process(*emulator_args, env=env),
            process("serve", "--no-worker", "--port", str(api_port), env=env),
        ):
            await wait_http(f"http://127.0.0.1:{emulator_port}/_emulator/stats")
            await wait_http(f"http://127.0.0.1:{api_port}/healthz")
            with process("worker", "--concurrency", "100", env=env) as worker:
                submitted = sa.select(sa.func.count()).select_from(provider_calls)
                deadline = time.monotonic() + 600
                while await count(db, submitted) < jobs:
                    if time.monotonic() > deadline:
                        raise RuntimeError("not every job submitted its call")
                    await asyncio.sleep(0.2)
                # Everything waits now: measure the waiting, well before the first completion.
                window = max(1.0, latency * 0.5)
                stats_url = f"http://127.0.0.1:{emulator_port}/_emulator/stats"
                # The emulator is busy under this load: give its counters time to answer.
                async with httpx.AsyncClient(timeout=60) as client:
                    polls_before = (await client.get(stats_url)).json()["responses_retrieved"]
                    cpu_before = process_cpu_seconds(worker.pid)
                    await asyncio.sleep(window)
                    cpu_after = process_cpu_seconds(worker.pid)
                    # peak_rss_mib reads /proc too: this bench is for Linux.
                    assert cpu_before is not None
                    assert cpu_after is not None
                    polls_after = (await client.get(stats_url)).json()["responses_retrieved"]
                done = sa.select(sa.func.count()).where(
                    jobs_table.c.status == JobStatus.SUCCEEDED.value
                )
                deadline = time.monotonic() + latency + 600
                while await count(db, done) < jobs:
                    if time.monotonic() > deadline:
                        raise RuntimeError("jobs did not all finish")
                    await asyncio.sleep(0.5)
                rss = peak_rss_mib(worker.pid)
                async with httpx.AsyncClient(timeout=60) as client:
                    final = (await client.get(stats_url)).json()
                webhooks = f"{final['webhooks_sent']} sent, {final['webhooks_failed']} failed"
                # The part of the lag before the service had the webhook.
                delivery = final.get("webhook_delivery_ms") or {"p50": None}
                if delivery["p50"] is not None:
                    webhooks += (
                        f"; accepted p50 {delivery['p50']:,.0f} / p99 {delivery['p99']:,.0f} ms"
                    )
                if final.get("webhook_attempt_failures"):
                    print("webhook attempts failed:", final["webhook_attempt_failures"])
        lag, during = await completion_lag(db, latency)
    finally:
        await db.close()
        await drop_database(url)
    return {
        "rss": rss,
        "cpu": cpu_after - cpu_before,
        "window": window,
        "polls_per_s": (polls_after - polls_before) / window,
        "p50": percentile(lag, 50),
        "p99": percentile(lag, 99),
        "webhooks": webhooks,
        "submitting": during,
    }


async def completion_lag(db: Database, latency: float) -> tuple[list[float], str]:
    """Milliseconds from each response completing (submitted + latency) to its job
    succeeding, and how long submitting them all took with the p99 of those that completed
    while the process was still submitting, and of the rest. `submitted_at` is stamped just
    after the emulator accepted the call, so the lag reads a few milliseconds low."""
    query = sa.select(provider_calls.c.submitted_at, jobs_table.c.completed_at).join(
        jobs_table, jobs_table.c.id == provider_calls.c.job_id
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    ready = timedelta(seconds=latency)
    last_submitted = max(submitted for submitted, _ in rows)
    span = (last_submitted - min(submitted for submitted, _ in rows)).total_seconds()
    lag, during, after = [], [], []
    for submitted, completed in rows:
        ms = (completed - (submitted + ready)).total_seconds() * 1000
        lag.append(ms)
        (during if submitted + ready < last_submitted else after).append(ms)
    parts = [f"{span:.0f} s"]
    for name, part in (("while submitting", during), ("after", after)):
        parts.append(f"{name}: {percentile(part, 99):,.0f} ms" if part else f"{name}: none")
    return lag, "; ".join(parts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=60.0)
    parser.add_argument("--modes", default="polling,webhooks")
    args = parser.parse_args()
    results = {mode: await run(mode, args.jobs, args.latency) for mode in args.modes.split(",")}
    print(f"\nbench/inflight.py — {describe()}")
    print(
        f"{args.jobs:,} jobs, each one background response of {args.latency:g} s, "
        "one `backburner worker` process (PostgreSQL, emulator on loopback)\n"
    )
    header = (
        "completion noticed by",
        "peak RSS (MiB)",
        "CPU while waiting (s per s)",
        "polling requests/s",
        "completion → succeeded p50 (ms)",
        "p99 (ms)",
        "webhooks",
        "submitting took; p99 of completions while submitting / after",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for mode, r in results.items():
        print(
            f"{mode} | {r['rss']:.0f} | {r['cpu'] / r['window']:.2f} | "
            f"{r['polls_per_s']:,.0f} | {r['p50']:,.0f} | {r['p99']:,.0f} | {r['webhooks']} | "
            f"{r['submitting']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
