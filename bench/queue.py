"""How fast is the queue? Enqueue through the API, no-op completion with one worker
process, and pickup latency, on SQLite and PostgreSQL; PgQueuer on the same PostgreSQL
database for comparison. Prints one table.

    make bench-queue            # or: python bench/queue.py --jobs 10000

Loopback only; every loop is bounded by --jobs and a timeout.
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
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
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
    postgres_cpu_seconds,
    process,
    process_cpu_seconds,
    wait_http,
)

from backburner.store import Database, JobStatus, NewJob, Role
from backburner.store import jobs as jobs_store
from backburner.store import keys as keys_store
from backburner.store.database import plain_postgres_dsn
from backburner.store.schema import jobs as jobs_table

# Claim batch size and jobs in flight per worker: the same for Backburner and PgQueuer.
BATCH = 100
CONCURRENCY = 200
ANALYZE = False


def env_for(db_url: str, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            "BACKBURNER_DATABASE_URL": db_url,
            "BACKBURNER_LOG_LEVEL": "WARNING",
            "BACKBURNER_LOG_FORMAT": "json",
            "BACKBURNER_CLAIM_BATCH_SIZE": str(BATCH),
            "BACKBURNER_AUTH_CACHE_SECONDS": "30",
        }
    )
    env.update(extra)
    return env


# --- Measurements ------------------------------------------------------------------------------


async def enqueue_through_api(db_url: str, count: int, concurrency: int = 32) -> float:
    """Jobs/s created by POST /api/jobs against `serve --no-worker` (real HTTP)."""
    db = Database(db_url, sealer=KEYRING)
    _, key = await keys_store.create_key(db, owner="bench", role=Role.MEMBER, now=datetime.now(UTC))
    await db.close()
    port = free_port()
    with process("serve", "--no-worker", "--port", str(port), env=env_for(db_url)):
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/healthz")
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=base, limits=limits, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            await client.post("/api/jobs", json={"type": "noop"})  # warm up
            remaining = iter(range(count))

            async def sender() -> None:
                for _ in remaining:
                    response = await client.post("/api/jobs", json={"type": "noop"})
                    response.raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            return count / (time.perf_counter() - started)


async def insert_noops(db: Database, count: int) -> None:
    limit = asyncio.Semaphore(16 if db.dialect == "postgresql" else 1)
    now = datetime.now(UTC)

    async def one() -> None:
        async with limit:
            await jobs_store.insert_job(
                db,
                NewJob(owner="bench", type="noop", payload={}, max_attempts=3, timeout_seconds=60),
                now=now,
            )

    await asyncio.gather(*(one() for _ in range(count)))


async def count_status(db: Database, status: JobStatus) -> int:
    query = sa.select(sa.func.count()).where(jobs_table.c.status == status.value)
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar() or 0)


@dataclass
class Drain:
    """A drain's rate and, where /proc tells, CPU per job (µs): the consumer's (the worker
    process, or this one for PgQueuer) and PostgreSQL's."""

    per_second: float
    consumer_us: float | None = None
    postgres_us: float | None = None

    def cpu(self) -> str:
        return " / ".join(
            "—" if us is None else f"{us:,.0f}" for us in (self.consumer_us, self.postgres_us)
        )


def _per_job(before: float | None, after: float | None, count: int) -> float | None:
    return None if before is None or after is None else (after - before) / count * 1e6


async def completion_throughput(db_url: str, count: int) -> Drain:
    """No-op jobs/s completed by one `backburner worker` process, from the first job
    started to the last finished (process start-up excluded), and the CPU it and
    PostgreSQL spent per job from the first job finished to the last."""
    db = Database(db_url, sealer=KEYRING)
    try:
        await insert_noops(db, count)
        if ANALYZE and db.dialect == "postgresql":
            async with db.read() as conn:
                await conn.execute(sa.text("ANALYZE jobs"))
        with process("worker", "--concurrency", str(CONCURRENCY), env=env_for(db_url)) as child:
            deadline = time.monotonic() + 600
            while (done_before := await count_status(db, JobStatus.SUCCEEDED)) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("worker did not start in time")
                await asyncio.sleep(0.005)
            worker_before, server_before = process_cpu_seconds(child.pid), postgres_cpu_seconds()
            while await count_status(db, JobStatus.SUCCEEDED) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("worker did not finish in time")
                await asyncio.sleep(0.05)
            worker_after, server_after = process_cpu_seconds(child.pid), postgres_cpu_seconds()
        query = sa.select(
            sa.func.min(jobs_table.c.started_at), sa.func.max(jobs_table.c.completed_at)
        )
        async with db.read() as conn:
            first, last = (await conn.execute(query)).one()
        measured = count - done_before
        return Drain(
            count / (last - first).total_seconds(),
            _per_job(worker_before, worker_after, measured),
            _per_job(server_before, server_after, measured) if db.dialect == "postgresql" else None,
        )
    finally:
        await db.close()


async def pickup_latency(db_url: str, samples: int) -> tuple[float, float]:
    """Enqueue → handler start (ms) with an idle worker. PostgreSQL: a separate worker
    process woken by NOTIFY. SQLite: the embedded worker of `serve`, enqueued over HTTP."""
    db = Database(db_url, sealer=KEYRING)
    latencies: list[float] = []
    try:
        if db.dialect == "postgresql":
            with process("worker", env=env_for(db_url, BACKBURNER_IDLE_POLL_SECONDS="30")):
                # A first job, not sampled, waits out the worker's start-up (a few seconds on
                # a busy machine): the samples measure an idle worker, not a starting one.
                for _ in range(samples + 1):
                    job, _ = await jobs_store.insert_job(
                        db,
                        NewJob(
                            owner="bench",
                            type="noop",
                            payload={},
                            max_attempts=1,
                            timeout_seconds=60,
                        ),
                        now=datetime.now(UTC),
                    )
                    latencies.append(await _started_after(db, job.id, wait=60))
                latencies.pop(0)
        else:
            _, key = await keys_store.create_key(
                db, owner="bench", role=Role.MEMBER, now=datetime.now(UTC)
            )
            port = free_port()
            env = env_for(db_url, BACKBURNER_IDLE_POLL_SECONDS="30")
            with process("serve", "--port", str(port), env=env):
                base = f"http://127.0.0.1:{port}"
                await wait_http(f"{base}/healthz")
                async with httpx.AsyncClient(
                    base_url=base, headers={"Authorization": f"Bearer {key}"}
                ) as client:
                    for _ in range(samples + 1):  # the first, as above, not sampled
                        job_id = (await client.post("/api/jobs", json={"type": "noop"})).json()[
                            "job_id"
                        ]
                        latencies.append(await _started_after(db, job_id, wait=60))
                    latencies.pop(0)
    finally:
        await db.close()
    return percentile(latencies, 50), percentile(latencies, 99)


async def _started_after(db: Database, job_id: str, *, wait: float) -> float:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        job = await jobs_store.get_job(db, job_id)
        if job is not None and job.started_at is not None:
            await asyncio.sleep(0.01)  # space samples; the worker is idle again
            return (job.started_at - job.created_at).total_seconds() * 1000
        await asyncio.sleep(0.002)
    raise RuntimeError("job was not picked up")


async def pgqueuer_throughput(db_url: str, count: int) -> Drain:
    """PgQueuer, its own enqueue and dequeue, a no-op entrypoint, same database."""
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    dsn = plain_postgres_dsn(db_url)
    conn = await asyncpg.connect(dsn)
    await Queries(AsyncpgDriver(conn)).install()
    queries = Queries(AsyncpgDriver(conn))
    for start in range(0, count, 1000):
        size = min(1000, count - start)
        await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
    if ANALYZE:
        await conn.execute("ANALYZE pgqueuer")
    worker_conn = await asyncpg.connect(dsn)
    manager = QueueManager(Queries(AsyncpgDriver(worker_conn)))
    done = 0

    @manager.entrypoint("noop")
    async def noop(job: object) -> None:
        nonlocal done
        done += 1

    started = time.perf_counter()
    client_before, server_before = time.process_time(), postgres_cpu_seconds()
    await asyncio.wait_for(
        manager.run(
            batch_size=BATCH, mode=QueueExecutionMode.drain, max_concurrent_tasks=CONCURRENCY
        ),
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    client_after, server_after = time.process_time(), postgres_cpu_seconds()
    await worker_conn.close()
    await conn.close()
    if done != count:
        raise RuntimeError(f"PgQueuer ran {done} of {count} jobs")
    return Drain(
        count / elapsed,
        _per_job(client_before, client_after, count),
        _per_job(server_before, server_after, count),
    )


async def drains_in_turns(workdir: str, jobs: int, pairs: int) -> tuple[list[Drain], list[Drain]]:
    """Backburner's and PgQueuer's drains of `jobs` no-op jobs, `pairs` times each, in turns
    (ours first, then theirs first, ...), each on a fresh database."""
    ours: list[Drain] = []
    theirs: list[Drain] = []
    for pair in range(pairs):
        order = [(completion_throughput, ours), (pgqueuer_throughput, theirs)]
        for drain, into in order if pair % 2 == 0 else reversed(order):
            url = await fresh_database("postgresql", Path(workdir))
            try:
                into.append(await drain(url, jobs))
            finally:
                await drop_database(url)
    return ours, theirs


def median_drain(drains: list[Drain]) -> Drain:
    """The median of each figure of the drains (each on its own)."""

    def median_of(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return Drain(
        statistics.median(d.per_second for d in drains),
        median_of([d.consumer_us for d in drains]),
        median_of([d.postgres_us for d in drains]),
    )


# --- Report --------------------------------------------------------------------------------------


async def main() -> None:
    global BATCH, CONCURRENCY, ANALYZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    parser.add_argument("--api-jobs", type=int, default=3_000, help="jobs enqueued via HTTP")
    parser.add_argument("--samples", type=int, default=200, help="pickup latency samples")
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help="claim batch size, the same for Backburner and PgQueuer",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help="jobs in flight per worker, the same for both",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE each queue's table before its drain (the steady state: autovacuum "
        "does it within a minute or so of a burst; without it the planner sees the table "
        "as it was before the jobs went in)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="PostgreSQL: drains of Backburner and PgQueuer taken in turns this many times "
        "(each pair in the other order than the one before), each on fresh databases; the "
        "table gives medians and every pair's ratio (a machine's speed drifts within minutes)",
    )
    args = parser.parse_args()
    BATCH, CONCURRENCY, ANALYZE = args.batch, args.concurrency, args.analyze
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for dialect in args.dialects.split(","):
            urls = [await fresh_database(dialect, Path(workdir)) for _ in range(2)]
            try:
                enqueue = await enqueue_through_api(urls[0], args.api_jobs)
                p50, p99 = await pickup_latency(urls[1], args.samples)
            finally:
                for url in urls:
                    await drop_database(url)
            if dialect == "postgresql":
                ours, theirs = await drains_in_turns(workdir, args.jobs, args.pairs)
                complete, their = median_drain(ours), median_drain(theirs)
                ratios = [a.per_second / b.per_second for a, b in zip(ours, theirs, strict=True)]
                versus = f"{statistics.median(ratios):.2f}x ({their.per_second:,.0f}/s)"
                if len(ratios) > 1:
                    versus += "; pairs " + ", ".join(f"{r:.2f}" for r in ratios)
                their_cpu = their.cpu()
            else:
                url = await fresh_database(dialect, Path(workdir))
                try:
                    complete = await completion_throughput(url, args.jobs)
                finally:
                    await drop_database(url)
                versus, their_cpu = "n/a", "n/a"
            rows.append((dialect, enqueue, complete, p50, p99, versus, their_cpu))
    print(f"\nbench/queue.py — {describe()}")
    print(
        f"{args.jobs:,} no-op jobs per completion run (one worker process; claim batch "
        f"{BATCH} and concurrency {CONCURRENCY}, the same for PgQueuer); {args.api_jobs:,} "
        f"jobs enqueued via HTTP; {args.samples} pickup samples\n"
    )
    header = (
        "database",
        "enqueue via API (jobs/s)",
        "no-op completed (jobs/s)",
        "pickup p50 (ms)",
        "pickup p99 (ms)",
        "vs PgQueuer (completed)",
        "CPU per no-op job, µs: worker / PostgreSQL",
        "PgQueuer's: consumer / PostgreSQL",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for dialect, enqueue, complete, p50, p99, versus, their_cpu in rows:
        print(
            f"{dialect} | {enqueue:,.0f} | {complete.per_second:,.0f} | {p50:.1f} | {p99:.1f} | "
            f"{versus} | {complete.cpu()} | {their_cpu}"
        )


if __name__ == "__main__":
    # On asyncio's own event loop, not uvloop (which Backburner's worker runs on, and which
    # PgQueuer's CLI picks where installed): PgQueuer's drain runs in this process and was
    # faster on asyncio's loop here (20,000 jobs at batch 100: 9,051-11,266 against
    # 8,248-8,802 jobs/s on uvloop, its consumer at 56-63 against 67-70 us a job).
    asyncio.run(main())
