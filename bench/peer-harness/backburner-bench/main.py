"""Backburner as an adapter of the public PostgreSQL job-queue benchmark
(github.com/hardbyte/postgresql-job-queue-benchmarking), so anyone can run it beside
PgQueuer, Procrastinate, pg-boss, Absurd, pgque, River and Oban on their own machine.

The harness's adapter contract (options, telemetry, pacing, sampling) is `contract.py`,
shared with the PgQueuer adapter beside this one.

What runs is Backburner's own queue, as a deployment runs it: jobs enqueued in batches of
up to PRODUCER_BATCH_MAX through `store.jobs.insert_jobs` (the bulk path behind
`POST /api/jobs/batch`: one statement per batch on PostgreSQL, each job with its "created"
event), and worked by a `Worker` with WORKER_COUNT slots — leases, heartbeats, events and
fair share all on. The schema is installed by Backburner's own migrations. A job is a
handler that sleeps JOB_WORK_MS.

Run it alone (PostgreSQL on loopback; Ctrl-C ends it):

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/backburner_bench \\
    PRODUCER_RATE=500 WORKER_COUNT=64 SAMPLE_EVERY_S=2 PRODUCER_PACING=adapter \\
        python bench/peer-harness/backburner-bench/main.py
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

sys.path.append(str(Path(__file__).resolve().parent.parent))  # contract.py, in this repository
import contract  # beside this file in the harness checkout and the image

from backburner import JobContext, JobRegistry, RetryPolicy
from backburner.config import Settings
from backburner.opening import open_database
from backburner.providers import OfflineProvider
from backburner.store import Database, NewJob, migrate
from backburner.store import jobs as jobs_store
from backburner.store import stats as stats_store
from backburner.worker import Worker

SYSTEM = "backburner"
JOB_TYPE = "bench_job"
OWNER = "bench"
# The tables a job's life writes, for the harness's dead-tuple and bloat sampling.
EVENT_TABLES = ["public.jobs", "public.job_events"]
# A fixed key for the bench database only (Backburner seals payloads at rest and will not
# open a PostgreSQL database without keys): the bench's payloads are synthetic. Give
# BACKBURNER_ENCRYPTION_KEYS to use your own.
BENCH_KEYS = (
    "bench:" + base64.urlsafe_b64encode(hashlib.sha256(b"backburner-bench").digest()).decode()
)


class BenchIn(BaseModel):
    seq: int
    enqueued_at: float  # time.time() when the producer made it
    padding: str = ""


class BenchOut(BaseModel):
    seq: int


def bench_registry(options: contract.Options, counters: contract.Counters) -> JobRegistry:
    registry = JobRegistry()

    @registry.job_type(
        JOB_TYPE,
        description="The harness's synthetic job: sleep JOB_WORK_MS.",
        expected_duration=max(0.001, options.work_ms / 1000),
        timeout=60,
        retry=RetryPolicy(max_attempts=3),
    )
    async def bench_job(ctx: JobContext, payload: BenchIn) -> BenchOut:
        if ctx.attempt == 1:  # pickup latency: enqueue to the first start
            counters.started(payload.enqueued_at)
        if options.work_ms:
            await asyncio.sleep(options.work_ms / 1000)
        counters.completed += 1
        return BenchOut(seq=payload.seq)

    return registry


class Backburner:
    """Backburner's side of the contract: the bulk insert behind POST /api/jobs/batch, and
    the queue's counts as `backburner queue stats` reads them."""

    def __init__(self, db: Database, options: contract.Options) -> None:
        self.db = db
        self.padding = "x" * options.payload_bytes
        self.seq = 0

    async def enqueue(self, count: int, enqueued_at: float) -> None:
        batch = [
            NewJob(
                owner=OWNER,
                type=JOB_TYPE,
                payload={"seq": self.seq + i, "enqueued_at": enqueued_at, "padding": self.padding},
                max_attempts=3,
                timeout_seconds=60,
            )
            for i in range(count)
        ]
        await jobs_store.insert_jobs(self.db, batch, now=datetime.now(UTC))
        self.seq += count

    async def depth(self) -> contract.Depth:
        queue = (await stats_store.queue_by_type(self.db, datetime.now(UTC))).get(JOB_TYPE)
        if queue is None:
            return contract.Depth(0, 0, 0)
        return contract.Depth(queue.ready, queue.running, queue.scheduled)


async def long_horizon(options: contract.Options, telemetry: contract.Telemetry) -> None:
    settings = Settings(
        database_url=options.database_url,
        encryption_keys=os.environ.get("BACKBURNER_ENCRYPTION_KEYS") or BENCH_KEYS,
        worker_concurrency=options.worker_count,
        claim_batch_size=min(1000, max(options.worker_count, 10)),
        notify_dispatcher=False,
        shutdown_grace_seconds=3,  # the contract: gone within 5 s of SIGTERM
    )
    db, settings = await open_database(
        settings, upgrade=True, listen=True, pool_size=settings.database_pool_size
    )
    telemetry.descriptor(
        event_tables=EVENT_TABLES,
        version=version("backburner"),
        schema_version=migrate.head_revision(),
        db_name=urlsplit(options.database_url).path.lstrip("/") or SYSTEM,
    )
    counters = contract.Counters()
    worker = Worker(db, bench_registry(options, counters), OfflineProvider(), settings)
    working = asyncio.create_task(worker.run())
    try:
        await contract.run_until_stopped(Backburner(db, options), options, counters, telemetry)
    finally:
        # The worker finishes what it holds and hands back the rest within its grace; past
        # it, leases left expire and are reclaimed.
        await contract.stop_within(working, worker.stop, seconds=4)
        await db.close()
        contract.log.info(
            "stopped: %d enqueued, %d completed", counters.enqueued, counters.completed
        )


if __name__ == "__main__":
    contract.main(SYSTEM, long_horizon)
