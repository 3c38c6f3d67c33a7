"""The public PostgreSQL job-queue benchmark's adapter contract, for Python adapters
(github.com/hardbyte/postgresql-job-queue-benchmarking, its CONTRIBUTING_ADAPTERS.md).

An adapter is one long-running process that produces and consumes jobs on the database in
DATABASE_URL, configured by environment variables, printing JSON lines on stdout — a
descriptor at start, then every SAMPLE_EVERY_S one record per metric (pickup latency
percentiles over 30 s, enqueue and completion rates, queue depth) — and exiting 0 within
5 s of SIGTERM. Logs go to stderr.

What every adapter here shares is in this module: the options, the telemetry, the pickup
latency histogram, the producer's pacing and the sampling loop. An adapter supplies how it
enqueues a batch and how it reads its queue's depth (`System`). It sits beside each
adapter's `main.py` in the harness checkout (native/run.py copies it there, the
Dockerfiles copy it into the image); in this repository, one folder up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

# Metrics that describe the whole queue, not this replica: only replica 0 reports them.
OBSERVER_METRICS = frozenset(
    {"queue_depth", "running_depth", "scheduled_depth", "total_backlog", "producer_target_rate"}
)
LATENCY_WINDOW_S = 30
DEPTH_EVERY_S = 0.2  # how often the queue's depth is read

log = logging.getLogger("peer-harness")


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
    """The harness speaks libpq URLs (postgres://); Backburner's setting wants postgresql://
    (asyncpg takes either)."""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme in {"postgres", "postgresql"} else url


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Telemetry:
    """The JSON lines on stdout, each stamped with this replica's index."""

    def __init__(self, system: str, options: Options, write: Callable[[str], None]) -> None:
        self.system = system
        self.options = options
        self.write = write

    def emit(self, record: dict[str, Any]) -> None:
        record.setdefault("instance_id", self.options.instance_id)
        self.write(json.dumps(record) + "\n")

    def descriptor(
        self, *, event_tables: list[str], version: str, schema_version: str, db_name: str
    ) -> None:
        self.emit(
            {
                "kind": "descriptor",
                "system": self.system,
                "event_tables": event_tables,
                "extensions": [],
                "version": version,
                "schema_version": schema_version,
                "db_name": db_name,
                "started_at": now_iso(),
            }
        )

    def sample(self, metric: str, value: float, window_s: float, at: str) -> None:
        if metric in OBSERVER_METRICS and not self.options.observer:
            return
        self.emit(
            {
                "t": at,
                "system": self.system,
                "kind": "adapter",
                "subject_kind": "adapter",
                "subject": "",
                "metric": metric,
                "value": value,
                "window_s": window_s,
            }
        )


def stdout_lines(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


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

    def started(self, enqueued_at: float) -> None:
        """A job's handler began, first time: its pickup latency (time.time() stamps)."""
        self.latency.record(max(0.0, time.time() - enqueued_at), time.monotonic())


@dataclass(frozen=True)
class Depth:
    ready: int
    running: int
    scheduled: int


class System(Protocol):
    """What an adapter supplies: its queue's side of the contract."""

    async def enqueue(self, count: int, enqueued_at: float) -> None:
        """Make `count` jobs (one bulk call, at most PRODUCER_BATCH_MAX), each carrying
        `enqueued_at` for its pickup latency; raise if nothing was made."""

    async def depth(self) -> Depth: ...


class Producer:
    """Enqueues in batches of up to PRODUCER_BATCH_MAX, one bulk call at a time, paced as
    the options say."""

    def __init__(self, system: System, options: Options, counters: Counters) -> None:
        self.system = system
        self.options = options
        self.counters = counters

    async def enqueue(self, count: int) -> None:
        while count > 0:
            size = min(count, self.options.batch_max)
            try:
                await self.system.enqueue(size, time.time())
            except Exception as error:  # the database restarting, say: say so, go on
                log.warning("bulk insert of %d failed: %s", size, error)
                await asyncio.sleep(0.1)
                continue
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

    def tasks(self) -> list[asyncio.Task[None]]:
        """The producer's tasks for the options' mode and pacing."""
        if self.options.producer_mode == "depth-target":
            return [asyncio.create_task(self.run_to_depth())]
        if self.options.producer_pacing == "harness":
            tokens: asyncio.Queue[int] = asyncio.Queue(maxsize=1024)
            return [
                asyncio.create_task(read_tokens(tokens)),
                asyncio.create_task(self.run_by_tokens(tokens)),
            ]
        return [asyncio.create_task(self.run_at_rate())]


async def read_tokens(tokens: asyncio.Queue[int]) -> None:
    """The harness's pacing tokens: lines `ENQUEUE <n>` on stdin (other lines ignored)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        word, _, count = line.decode(errors="replace").strip().partition(" ")
        if word == "ENQUEUE" and count.isdigit() and int(count) > 0:
            await tokens.put(int(count))


async def watch_depth(system: System, counters: Counters) -> None:
    while True:
        with contextlib.suppress(Exception):  # an outage: keep the last reading
            depth = await system.depth()
            counters.depth, counters.running = depth.ready, depth.running
            counters.scheduled = depth.scheduled
        await asyncio.sleep(DEPTH_EVERY_S)


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


async def run_until_stopped(
    system: System, options: Options, counters: Counters, telemetry: Telemetry
) -> None:
    """Produce, watch the depth and sample until SIGTERM or SIGINT; returns with those
    tasks cancelled and awaited (the adapter then stops its consumer, within the 5 s)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    tasks = [
        asyncio.create_task(watch_depth(system, counters)),
        asyncio.create_task(sample_every(options, counters, telemetry)),
        *Producer(system, options, counters).tasks(),
    ]
    try:
        await stopping.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def start(system: str) -> Options:
    """Logging to stderr, the options, and only the scenario implemented (exit 2 else)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    options = options_from(dict(os.environ))
    if options.scenario != "long_horizon":
        print(
            f"{system}-bench: SCENARIO={options.scenario} is not implemented (long_horizon is)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return options


async def stop_within(consumer: asyncio.Task[Any], stop: Callable[[], Any], seconds: float) -> None:
    """Ask the consumer to stop, wait up to `seconds` for it, then cancel it."""
    stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(consumer), timeout=seconds)
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)


def main(system: str, long_horizon: Callable[[Options, Telemetry], Awaitable[None]]) -> None:
    """An adapter's entry point: its options, then its long_horizon scenario until SIGTERM."""
    options = start(system)
    telemetry = Telemetry(system, options, stdout_lines)
    asyncio.run(long_horizon(options, telemetry))
