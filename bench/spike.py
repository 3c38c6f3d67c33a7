"""A spike: 100,000 jobs created through the bulk endpoint as fast as it goes, drained by
4 worker processes, on PostgreSQL. Prints the enqueue rate, queue latency (created →
started) p50/p99, the drain time, and whether every job ran exactly once.

    python bench/spike.py                          # 100,000 jobs, 4 workers
    python bench/spike.py --jobs 20000 --workers 2

Loopback only; bounded by --jobs and a timeout.
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
import contextlib
import tempfile
import time
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa
from bench_support import (
    KEYRING,
    clean_env,
    describe,
    drop_database,
    free_port,
    fresh_database,
    process,
    wait_http,
)

from backburner.store import Database, Role
from backburner.store import keys as keys_store
from backburner.store.schema import job_events, jobs

BATCH = 1000


async def enqueue(base: str, key: str, count: int, clients: int) -> float:
    """Seconds to create `count` jobs through POST /api/jobs/batch."""
    starts = asyncio.Queue[int]()
    for start in range(0, count, BATCH):
        starts.put_nowait(start)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:

        async def sender() -> None:
            while not starts.empty():
                start = starts.get_nowait()
                size = min(BATCH, count - start)
                answer = await client.post(
                    "/api/jobs/batch", json={"jobs": [{"type": "noop"}] * size}
                )
                answer.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        return time.perf_counter() - began


async def measure(url: str, count: int, workers: int, clients: int) -> dict[str, float]:
    db = Database(url, sealer=KEYRING)
    _, key = await keys_store.create_key(db, owner="spike", role=Role.MEMBER, now=datetime.now(UTC))
    port = free_port()
    env = clean_env() | {
        "BACKBURNER_DATABASE_URL": url,
        "BACKBURNER_LOG_LEVEL": "WARNING",
        "BACKBURNER_AUTH_CACHE_SECONDS": "30",
        "BACKBURNER_MAX_REQUEST_BYTES": str(8 * 1024 * 1024),
    }
    base = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(process("serve", "--no-worker", "--port", str(port), env=env))
        await wait_http(f"{base}/healthz")
        for _ in range(workers):
            stack.enter_context(process("worker", env=env))
        began = time.perf_counter()
        enqueue_seconds = await enqueue(base, key, count, clients)
        deadline = time.monotonic() + 1800
        while True:
            async with db.read() as conn:
                done = (
                    await conn.execute(
                        sa.select(sa.func.count()).where(jobs.c.status == "succeeded")
                    )
                ).scalar_one()
            if done >= count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {count} jobs done in 30 minutes")
            await asyncio.sleep(0.25)
        drained = time.perf_counter() - began
    async with db.read() as conn:
        waited = sa.extract("epoch", jobs.c.started_at - jobs.c.created_at)
        p50, p99 = (
            await conn.execute(
                sa.select(
                    sa.func.percentile_cont(0.5).within_group(waited),
                    sa.func.percentile_cont(0.99).within_group(waited),
                )
            )
        ).one()
        starts = (
            sa.select(job_events.c.job_id, sa.func.count().label("n"))
            .where(job_events.c.kind == "started")
            .group_by(job_events.c.job_id)
            .subquery()
        )
        once, more = (
            await conn.execute(
                sa.select(
                    sa.func.count().filter(starts.c.n == 1), sa.func.count().filter(starts.c.n > 1)
                )
            )
        ).one()
    await db.close()
    return {
        "enqueue_rate": count / enqueue_seconds,
        "latency_p50": float(p50),
        "latency_p99": float(p99),
        "drained": drained,
        "once": int(once),
        "more": int(more),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4, help="concurrent batch requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        url = await fresh_database("postgresql", Path(workdir))
        try:
            found = await measure(url, args.jobs, args.workers, args.clients)
        finally:
            await drop_database(url)
    print(f"\nbench/spike.py — {describe()}")
    print(
        f"{args.jobs:,} no-op jobs through POST /api/jobs/batch ({BATCH:,} a request, "
        f"{args.clients} clients, one API process), drained by {args.workers} worker "
        "processes, PostgreSQL\n"
    )
    print("enqueue | queue latency p50 / p99 | drained in | ran once | ran more than once")
    print("--- | --- | --- | --- | ---")
    print(
        f"{found['enqueue_rate']:,.0f} jobs/s | {found['latency_p50']:.1f} / "
        f"{found['latency_p99']:.1f} s | {found['drained']:.1f} s | {found['once']:,} | "
        f"{found['more']:,}"
    )


if __name__ == "__main__":
    asyncio.run(main())
