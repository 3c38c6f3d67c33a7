"""Backburner as an adapter of the public PostgreSQL job-queue benchmark
(github.com/hardbyte/postgresql-job-queue-benchmarking), so anyone can run it beside
PgQueuer, Procrastinate, pg-boss, Absurd, pgque, River and Oban on their own machine.

The harness's adapter contract (its CONTRIBUTING_ADAPTERS.md): one long-running process
that produces and consumes jobs on the database in DATABASE_URL, configured by environment
variables, printing JSON lines on stdout — a descriptor at start, then every SAMPLE_EVERY_S
one record per metric (pickup latency percentiles over 30 s, enqueue and completion rates,
queue depth) — and exiting 0 within 5 s of SIGTERM. Logs go to stderr.

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
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

from hdrh.histogram import HdrHistogram
from pydantic import BaseModel

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
EVENT_INDEXES = [
    "public.ix_jobs_pending_queue",
    "public.ix_jobs_running_lease",
    "public.ix_jobs_status_id",
    "public.ix_jobs_lease_owner",
    "public.ix_job_events_job",
]
# Metrics that describe the whole queue, not this replica: only replica 0 reports them.
OBSERVER_METRICS = frozenset(
    {"queue_depth", "running_depth", "scheduled_depth", "total_backlog", "producer_target_rate"}
)
LATENCY_WINDOW_S = 30
# A fixed key for the bench database only (Backburner seals payloads at rest and will not
# open a PostgreSQL database without keys): the bench's payloads are synthetic. Give
# BACKBURNER_ENCRYPTION_KEYS to use your own.
BENCH_KEYS = (
    "bench:" + base64.urlsafe_b64encode(hashlib.sha256(b"backburner-bench").digest()).decode()
)

log = logging.getLogger("backburner-bench")


@dataclass(frozen=True)
class Options:
    """The harness's environment, with its documented defaults."""

    database_url: str
    scenario: str
    producer_mode: str  # "fixed" or "depth-target"
    producer_rate: int
    producer_pacing: str  # "harness": ENQUEUE tokens on stdin; "adapter": our own clock
    rate_control_file: str | None
    batch_max: int
    batch_ms: int
    target_depth: int
    worker_count: int
    payload_bytes: int
    work_ms: int
    sample_every_s: int
    instance_id: int

    @property
    def observer(self) -> bool:
        return self.instance_id == 0


def options_from(env: dict[str, str]) -> Options:
    def number(name: str, default: int, minimum: int = 0) -> int:
        return max(minimum, int(float(env.get(name) or default)))

    url = env.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL must be set")
    return Options(
        database_url=postgresql_url(url),
        scenario=env.get("SCENARIO", "long_horizon"),
        producer_mode=env.get("PRODUCER_MODE", "fixed"),
        producer_rate=number("PRODUCER_RATE", 800),
        producer_pacing=env.get("PRODUCER_PACING", "adapter"),
        rate_control_file=env.get("PRODUCER_RATE_CONTROL_FILE") or None,
        batch_max=number("PRODUCER_BATCH_MAX", 128, minimum=1),
        batch_ms=number("PRODUCER_BATCH_MS", 10, minimum=1),
        target_depth=number("TARGET_DEPTH", 1000),
        worker_count=number("WORKER_COUNT", 32, minimum=1),
        payload_bytes=number("JOB_PAYLOAD_BYTES", 256),
        work_ms=number("JOB_WORK_MS", 1),
        sample_every_s=number("SAMPLE_EVERY_S", 5, minimum=1),
        instance_id=number("BENCH_INSTANCE_ID", 0),
    )


def postgresql_url(url: str) -> str:
    """The harness speaks libpq URLs (postgres://); Backburner's setting wants postgresql://."""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme in {"postgres", "postgresql"} else url


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Telemetry:
    """The JSON lines on stdout, each stamped with this replica's index."""

    def __init__(self, options: Options, write: Callable[[str], None]) -> None:
        self.options = options
        self.write = write

    def emit(self, record: dict[str, Any]) -> None:
        record.setdefault("instance_id", self.options.instance_id)
        self.write(json.dumps(record) + "\n")

    def descriptor(self) -> None:
        self.emit(
            {
                "kind": "descriptor",
                "system": SYSTEM,
                "event_tables": EVENT_TABLES,
                "extensions": [],
                "version": version("backburner"),
                "schema_version": migrate.head_revision(),
                "db_name": urlsplit(self.options.database_url).path.lstrip("/") or SYSTEM,
                "started_at": now_iso(),
            }
        )

    def sample(self, metric: str, value: float, window_s: float, at: str) -> None:
        if metric in OBSERVER_METRICS and not self.options.observer:
            return
        self.emit(
            {
                "t": at,
                "system": SYSTEM,
                "kind": "adapter",
                "subject_kind": "adapter",
                "subject": "",
                "metric": metric,
                "value": value,
                "window_s": window_s,
            }
        )


class RollingLatency:
    """Pickup latencies of the last 30 s in bounded memory: one HDR histogram (3
    significant figures, microseconds up to an hour) per second, merged when sampled."""

    def __init__(self, window_s: int = LATENCY_WINDOW_S) -> None:
        self.window_s = window_s
        self.seconds: dict[int, HdrHistogram] = {}

    def record(self, latency_s: float, at: float) -> None:
        second = int(at)
        histogram = self.seconds.get(second)
        if histogram is None:
            histogram = self.seconds[second] = HdrHistogram(1, 3_600_000_000, 3)
        histogram.record_value(min(3_600_000_000, max(1, round(latency_s * 1e6))))

    def percentiles_ms(self, now: float) -> tuple[float, float, float]:
        oldest = int(now) - self.window_s
        for second in [s for s in self.seconds if s < oldest]:
            del self.seconds[second]
        merged = HdrHistogram(1, 3_600_000_000, 3)
        for histogram in self.seconds.values():
            merged.add(histogram)
        if merged.get_total_count() == 0:
            return 0.0, 0.0, 0.0
        p50, p95, p99 = (merged.get_value_at_percentile(q) / 1000 for q in (50, 95, 99))
        return p50, p95, p99


@dataclass
class Counters:
    enqueued: int = 0
    completed: int = 0
    depth: int = 0
    running: int = 0
    scheduled: int = 0
    target_rate: float = 0.0
    latency: RollingLatency = field(default_factory=RollingLatency)


class BenchIn(BaseModel):
    seq: int
    enqueued_at: float  # time.time() when the producer made it
    padding: str = ""


class BenchOut(BaseModel):
    seq: int


def bench_registry(options: Options, counters: Counters) -> JobRegistry:
    registry = JobRegistry()

    @registry.job_type(
        JOB_TYPE,
        description="The harness's synthetic job: sleep JOB_WORK_MS.",
        expected_duration=max(0.001, options.work_ms / 1000),
        timeout=60,
        retry=RetryPolicy(max_attempts=3),
    )
    async def bench_job(ctx: JobContext, payload: BenchIn) -> BenchOut:
        now = time.time()
        if ctx.attempt == 1:  # pickup latency: enqueue to the first start
            counters.latency.record(max(0.0, now - payload.enqueued_at), time.monotonic())
        if options.work_ms:
            await asyncio.sleep(options.work_ms / 1000)
        counters.completed += 1
        return BenchOut(seq=payload.seq)

    return registry


class Producer:
    """Enqueues in batches of up to PRODUCER_BATCH_MAX, one bulk insert at a time."""

    def __init__(self, db: Database, options: Options, counters: Counters) -> None:
        self.db = db
        self.options = options
        self.counters = counters
        self.padding = "x" * options.payload_bytes
        self.seq = 0

    async def enqueue(self, count: int) -> None:
        while count > 0:
            size = min(count, self.options.batch_max)
            stamp = time.time()
            batch = [
                NewJob(
                    owner=OWNER,
                    type=JOB_TYPE,
                    payload={"seq": self.seq + i, "enqueued_at": stamp, "padding": self.padding},
                    max_attempts=3,
                    timeout_seconds=60,
                )
                for i in range(size)
            ]
            try:
                await jobs_store.insert_jobs(self.db, batch, now=datetime.now(UTC))
            except Exception as error:  # the database restarting, say: say so, go on
                log.warning("bulk insert of %d failed: %s", size, error)
                await asyncio.sleep(0.1)
                continue
            self.seq += size
            self.counters.enqueued += size
            count -= size

    def rate(self) -> float:
        """PRODUCER_RATE, or what the harness's control file says now."""
        if self.options.rate_control_file:
            with (
                contextlib.suppress(OSError, ValueError),
                open(self.options.rate_control_file) as control,
            ):
                return float(control.read().strip())
        return float(self.options.producer_rate)

    async def run_by_tokens(self, tokens: asyncio.Queue[int]) -> None:
        """PRODUCER_PACING=harness: the harness paces; we enqueue what each token says.
        The rate it paces to is still reported as the target, as the other adapters do."""
        while True:
            self.counters.target_rate = self.rate()
            await self.enqueue(await tokens.get())

    async def run_at_rate(self) -> None:
        """Our own clock: credit the rate on real elapsed time (never per loop turn, which
        under-meters whenever a turn runs long), dispatched every PRODUCER_BATCH_MS."""
        loop = asyncio.get_running_loop()
        period = self.options.batch_ms / 1000
        credit = 0.0
        last = loop.time()
        while True:
            await asyncio.sleep(max(0.0, period - (loop.time() - last)))
            now = loop.time()
            rate = self.rate()
            self.counters.target_rate = rate
            credit = min(credit + rate * (now - last), max(rate, 1.0))  # at most 1 s owed
            last = now
            if credit >= 1:
                whole = int(credit)
                credit -= whole
                await self.enqueue(whole)

    async def run_to_depth(self) -> None:
        """PRODUCER_MODE=depth-target: keep TARGET_DEPTH jobs waiting."""
        self.counters.target_rate = 0.0
        while True:
            missing = self.options.target_depth - self.counters.depth
            if missing <= 0:
                await asyncio.sleep(0.05)
                continue
            await self.enqueue(missing)
            self.counters.depth += missing  # until the next reading


async def read_tokens(tokens: asyncio.Queue[int]) -> None:
    """The harness's pacing tokens: lines `ENQUEUE <n>` on stdin (other lines ignored)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        word, _, count = line.decode(errors="replace").strip().partition(" ")
        if word == "ENQUEUE" and count.isdigit() and int(count) > 0:
            await tokens.put(int(count))


async def watch_depth(db: Database, counters: Counters) -> None:
    while True:
        with contextlib.suppress(Exception):  # an outage: keep the last reading
            queue = (await stats_store.queue_by_type(db, datetime.now(UTC))).get(JOB_TYPE)
            counters.depth = queue.ready if queue else 0
            counters.running = queue.running if queue else 0
            counters.scheduled = queue.scheduled if queue else 0
        await asyncio.sleep(0.2)


async def sample_every(options: Options, counters: Counters, telemetry: Telemetry) -> None:
    """One record per metric every SAMPLE_EVERY_S, aligned to the wall clock's multiples of
    it so the samples of every system line up."""
    every = options.sample_every_s
    loop = asyncio.get_running_loop()
    # The first tick's rates count from here: nothing done before it goes unreported.
    last_at, last_enqueued, last_completed = loop.time(), counters.enqueued, counters.completed
    while True:
        await asyncio.sleep(max(0.0, every - time.time() % every))
        now = loop.time()
        elapsed = max(0.001, now - last_at)
        p50, p95, p99 = counters.latency.percentiles_ms(time.monotonic())
        at = now_iso()
        for metric, value, window in (
            ("claim_p50_ms", p50, LATENCY_WINDOW_S),
            ("claim_p95_ms", p95, LATENCY_WINDOW_S),
            ("claim_p99_ms", p99, LATENCY_WINDOW_S),
            ("enqueue_rate", (counters.enqueued - last_enqueued) / elapsed, every),
            ("completion_rate", (counters.completed - last_completed) / elapsed, every),
            ("queue_depth", counters.depth, 0),
            ("running_depth", counters.running, 0),
            ("scheduled_depth", counters.scheduled, 0),
            ("total_backlog", counters.depth + counters.running + counters.scheduled, 0),
            ("producer_target_rate", counters.target_rate, 0),
        ):
            telemetry.sample(metric, float(value), float(window), at)
        last_at, last_enqueued, last_completed = now, counters.enqueued, counters.completed


async def long_horizon(options: Options, telemetry: Telemetry) -> None:
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
    telemetry.descriptor()
    counters = Counters()
    worker = Worker(db, bench_registry(options, counters), OfflineProvider(), settings)
    producer = Producer(db, options, counters)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    tasks = [
        asyncio.create_task(watch_depth(db, counters)),
        asyncio.create_task(sample_every(options, counters, telemetry)),
    ]
    if options.producer_mode == "depth-target":
        tasks.append(asyncio.create_task(producer.run_to_depth()))
    elif options.producer_pacing == "harness":
        tokens: asyncio.Queue[int] = asyncio.Queue(maxsize=1024)
        tasks.append(asyncio.create_task(read_tokens(tokens)))
        tasks.append(asyncio.create_task(producer.run_by_tokens(tokens)))
    else:
        tasks.append(asyncio.create_task(producer.run_at_rate()))
    working = asyncio.create_task(worker.run())
    try:
        await stopping.wait()
    finally:
        for task in tasks:
            task.cancel()
        worker.stop()  # finishes what it holds, hands back the rest, within its grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(working), timeout=4)
        working.cancel()  # past its grace: leases left expire and are reclaimed
        await asyncio.gather(working, *tasks, return_exceptions=True)
        await db.close()
        log.info("stopped: %d enqueued, %d completed", counters.enqueued, counters.completed)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    options = options_from(dict(os.environ))
    if options.scenario != "long_horizon":
        print(
            f"backburner-bench: SCENARIO={options.scenario} is not implemented (long_horizon is)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    telemetry = Telemetry(options, lambda line: (sys.stdout.write(line), sys.stdout.flush()))
    asyncio.run(long_horizon(options, telemetry))


if __name__ == "__main__":
    main()
