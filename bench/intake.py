"""How fast do jobs go in? The store's insert one at a time and in batches, and the HTTP
API's bulk endpoint, on SQLite and PostgreSQL. Prints one table.

    python bench/intake.py                      # 2,000 single, 20,000 in batches
    python bench/intake.py --single 500 --bulk 5000 --dialects postgresql

Loopback only; every loop is bounded by its count.
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
import tempfile
import time
from datetime import UTC, datetime

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

from backburner.store import Database, NewJob, Role
from backburner.store import jobs as jobs_store
from backburner.store import keys as keys_store

BATCH = 1000


def noop(index: int) -> NewJob:
    return NewJob(
        owner="bench",
        type="noop",
        payload={"echo": index},
        max_attempts=3,
        timeout_seconds=60,
    )


async def one_at_a_time(url: str, count: int, in_flight: int) -> float:
    db = Database(url, sealer=KEYRING)
    limit = asyncio.Semaphore(in_flight)
    now = datetime.now(UTC)

    async def one(index: int) -> None:
        async with limit:
            await jobs_store.insert_job(db, noop(index), now=now)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    await db.close()
    return count / elapsed


async def in_batches(url: str, count: int) -> float:
    db = Database(url, sealer=KEYRING)
    now = datetime.now(UTC)
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        batch = [noop(i) for i in range(start, min(count, start + BATCH))]
        await jobs_store.insert_jobs(db, batch, now=now)
    elapsed = time.perf_counter() - started
    await db.close()
    return count / elapsed


async def through_the_api(url: str, count: int, clients: int) -> tuple[float, float, float]:
    """Jobs/s through POST /api/jobs/batch (1,000 a request, `clients` at once), and the
    p50/p99 of one request in ms."""
    db = Database(url, sealer=KEYRING)
    _, key = await keys_store.create_key(db, owner="bench", role=Role.MEMBER, now=datetime.now(UTC))
    await db.close()
    port = free_port()
    env = clean_env() | {
        "BACKBURNER_DATABASE_URL": url,
        "BACKBURNER_LOG_LEVEL": "WARNING",
        "BACKBURNER_AUTH_CACHE_SECONDS": "30",
        "BACKBURNER_MAX_REQUEST_BYTES": str(8 * 1024 * 1024),
    }
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    with process("serve", "--no-worker", "--port", str(port), env=env):
        await wait_http(f"{base}/healthz")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
            starts = list(range(0, count, BATCH))
            queue: asyncio.Queue[int] = asyncio.Queue()
            for start in starts:
                queue.put_nowait(start)

            async def sender() -> None:
                while not queue.empty():
                    start = queue.get_nowait()
                    body = {
                        "jobs": [
                            {"type": "noop", "payload": {"echo": i}}
                            for i in range(start, min(count, start + BATCH))
                        ]
                    }
                    sent = time.perf_counter()
                    answer = await client.post("/api/jobs/batch", json=body)
                    answer.raise_for_status()
                    latencies.append((time.perf_counter() - sent) * 1000)

            started = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(clients)))
            elapsed = time.perf_counter() - started
    return count / elapsed, percentile(latencies, 50), percentile(latencies, 99)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2_000, help="jobs inserted one by one")
    parser.add_argument("--bulk", type=int, default=20_000, help="jobs inserted in batches")
    parser.add_argument("--clients", type=int, default=4, help="concurrent batch requests")
    parser.add_argument("--dialects", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for dialect in args.dialects.split(","):
            urls = [await fresh_database(dialect, Path(workdir)) for _ in range(4)]
            try:
                single = await one_at_a_time(urls[0], args.single, 1)
                parallel = await one_at_a_time(urls[1], args.single, 16)
                bulk = await in_batches(urls[2], args.bulk)
                api, p50, p99 = await through_the_api(urls[3], args.bulk, args.clients)
                rows.append((dialect, single, parallel, bulk, api, p50, p99))
            finally:
                for url in urls:
                    await drop_database(url)
    print(f"\nbench/intake.py — {describe()}")
    print(
        f"{args.single:,} jobs one by one (alone, then 16 in flight); {args.bulk:,} in batches "
        f"of {BATCH:,} (store, then POST /api/jobs/batch with {args.clients} clients)\n"
    )
    header = (
        "database",
        "insert_job alone (jobs/s)",
        "insert_job, 16 in flight (jobs/s)",
        "insert_jobs, batches (jobs/s)",
        "API batch (jobs/s)",
        "API batch request p50 / p99 (ms)",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for dialect, single, parallel, bulk, api, p50, p99 in rows:
        print(
            f"{dialect} | {single:,.0f} | {parallel:,.0f} | {bulk:,.0f} | {api:,.0f} | "
            f"{p50:,.0f} / {p99:,.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
