"""PgQueuer as an adapter of the public PostgreSQL job-queue benchmark
(github.com/hardbyte/postgresql-job-queue-benchmarking), which has none: the issue that
asked for Backburner's adapter measured Backburner against PgQueuer there, and
`bench/queue.py` compares the two in one process each; this puts PgQueuer in the harness
beside the others, driven by the same contract code as Backburner's adapter
(`contract.py`: options, telemetry, pacing, sampling).

What runs is PgQueuer as its documentation runs it: jobs enqueued in batches of up to
PRODUCER_BATCH_MAX through `Queries.enqueue` with lists (one statement per batch), and
worked by a `QueueManager` on its own connection, in its default continuous mode, with
WORKER_COUNT jobs in flight (`max_concurrent_tasks`) and a dequeue batch of half that
(PgQueuer requires in-flight ≥ twice the batch). The schema is PgQueuer's own `install()`.
A job is an entrypoint that sleeps JOB_WORK_MS.

Run it alone (PostgreSQL on loopback; Ctrl-C ends it):

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/pgqueuer_bench \\
    PRODUCER_RATE=500 WORKER_COUNT=64 SAMPLE_EVERY_S=2 PRODUCER_PACING=adapter \\
        python bench/peer-harness/pgqueuer-bench/main.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.models import Job

sys.path.append(str(Path(__file__).resolve().parent.parent))  # contract.py, in this repository
import contract  # beside this file in the harness checkout and the image

SYSTEM = "pgqueuer"
ENTRYPOINT = "bench_job"
# The tables a job's life writes, for the harness's dead-tuple and bloat sampling.
EVENT_TABLES = ["public.pgqueuer", "public.pgqueuer_log"]


class PgQueuer:
    """PgQueuer's side of the contract: its bulk enqueue, and its queue's counts."""

    def __init__(self, conn: asyncpg.Connection, options: contract.Options) -> None:
        self.queries = Queries(AsyncpgDriver(conn))
        self.padding = "x" * options.payload_bytes
        self.seq = 0

    async def enqueue(self, count: int, enqueued_at: float) -> None:
        payloads: list[bytes | None] = [
            json.dumps(
                {"seq": self.seq + i, "enqueued_at": enqueued_at, "padding": self.padding}
            ).encode()
            for i in range(count)
        ]
        await self.queries.enqueue([ENTRYPOINT] * count, payloads, [0] * count)
        self.seq += count

    async def depth(self) -> contract.Depth:
        counts = {"queued": 0, "picked": 0}
        for row in await self.queries.queue_size():
            if row.entrypoint == ENTRYPOINT and row.status in counts:
                counts[row.status] += row.count
        return contract.Depth(counts["queued"], counts["picked"], 0)


def consumer(
    conn: asyncpg.Connection, options: contract.Options, counters: contract.Counters
) -> QueueManager:
    manager = QueueManager(Queries(AsyncpgDriver(conn)))

    @manager.entrypoint(ENTRYPOINT)
    async def bench_job(job: Job) -> None:
        counters.started(json.loads(job.payload or b"{}").get("enqueued_at", 0.0))
        if options.work_ms:
            await asyncio.sleep(options.work_ms / 1000)
        counters.completed += 1

    return manager


async def long_horizon(options: contract.Options, telemetry: contract.Telemetry) -> None:
    producing = await asyncpg.connect(options.database_url)
    working = await asyncpg.connect(options.database_url)
    queries = Queries(AsyncpgDriver(producing))
    if not await queries.has_table("pgqueuer"):
        await queries.install()
    telemetry.descriptor(
        event_tables=EVENT_TABLES,
        version=version("pgqueuer"),
        schema_version=version("pgqueuer"),
        db_name=urlsplit(options.database_url).path.lstrip("/") or SYSTEM,
    )
    counters = contract.Counters()
    manager = consumer(working, options, counters)
    in_flight = max(2, options.worker_count)
    running = asyncio.create_task(
        manager.run(batch_size=max(1, in_flight // 2), max_concurrent_tasks=in_flight)
    )
    try:
        await contract.run_until_stopped(PgQueuer(producing, options), options, counters, telemetry)
    finally:
        await contract.stop_within(running, manager.shutdown.set, seconds=4)
        await working.close()
        await producing.close()
        contract.log.info(
            "stopped: %d enqueued, %d completed", counters.enqueued, counters.completed
        )


if __name__ == "__main__":
    contract.main(SYSTEM, long_horizon)
