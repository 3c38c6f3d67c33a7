"""How fast do jobs go in? POST /api/jobs one job a request (driven by wrk, at several
numbers of connections), the store's insert one at a time and in batches, and the HTTP
API's bulk endpoint (driven by wrk too), on SQLite and PostgreSQL. Prints two tables.

    python bench/intake.py                      # 2,000 single, 20,000 in batches
    python bench/intake.py --single 500 --bulk 5000 --dialects postgresql
    python bench/intake.py --only-http --processes 2   # POST /api/jobs through wrk only

Loopback only; every loop is bounded by its count, every wrk run by its seconds.
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
import json
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import uvloop
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

from backburner.store import Database, NewJob, Role, postgres
from backburner.store import jobs as jobs_store
from backburner.store import keys as keys_store
from backburner.store.database import plain_postgres_dsn
from backburner.store.models import new_id

BATCH = 1000
WARM_UP = 100  # creates before a one-at-a-time measurement starts


def noop(index: int) -> NewJob:
    return NewJob(
        owner="bench",
        type="noop",
        payload={"echo": index},
        max_attempts=3,
        timeout_seconds=60,
    )


async def one_at_a_time(url: str, count: int, in_flight: int) -> float:
    """Jobs/s of `in_flight` clients each calling insert_job in a loop, after WARM_UP
    creates (connections opened, the statement prepared), as the statement's floor is
    measured. Not a task per job behind a semaphore: 5,000 tasks waiting, each keeping its
    job until all were done, cost ~50 µs of CPU a job themselves (1,950 against 2,450 jobs/s
    one at a time on a Xeon, measured side by side)."""
    db = Database(url, sealer=KEYRING)
    now = datetime.now(UTC)
    for index in range(WARM_UP):
        await jobs_store.insert_job(db, noop(index), now=now)
    numbers = iter(range(count))

    async def client() -> None:
        for index in numbers:  # shared: each number is taken by one client
            await jobs_store.insert_job(db, noop(index), now=now)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    await db.close()
    return count / elapsed


async def statement_floor(url: str, count: int) -> float:
    """Jobs/s of the very statement insert_job sends (postgres.INSERT_JOB), one at a time on
    one connection with the queue's settings, every argument built and sealed beforehand:
    what asyncpg and the server take for a create, without the store's own work."""
    now = datetime.now(UTC)
    made = [
        postgres.insert_job_args(KEYRING, new_id(), noop(index), now, None)
        for index in range(count)
    ]
    settings = {"plan_cache_mode": "force_generic_plan"}
    conn = await asyncpg.connect(plain_postgres_dsn(url), server_settings=settings)
    try:
        for args in made[:WARM_UP]:  # prepared and warmed
            await conn.fetchval(postgres.INSERT_JOB, *args)
        started = time.perf_counter()
        for args in made[WARM_UP:]:
            await conn.fetchval(postgres.INSERT_JOB, *args)
        return (count - WARM_UP) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def alone_and_its_floor(
    url: str, floor_url: str, count: int, rounds: int, dialect: str
) -> tuple[float, float | None]:
    """Medians of insert_job alone and (PostgreSQL) of its statement alone, measured in
    turns (each round in the other order than the one before), so that their ratio is taken
    at one speed of the machine."""
    alone: list[float] = []
    statement: list[float] = []
    for number in range(rounds):
        if dialect != "postgresql":
            alone.append(await one_at_a_time(url, count, 1))
            continue
        if number % 2:
            statement.append(await statement_floor(floor_url, count))
            alone.append(await one_at_a_time(url, count, 1))
        else:
            alone.append(await one_at_a_time(url, count, 1))
            statement.append(await statement_floor(floor_url, count))
    return statistics.median(alone), statistics.median(statement) if statement else None


def pgbench_program() -> str | None:
    """PostgreSQL's own pgbench (server packages keep it out of PATH)."""
    found = shutil.which("pgbench")
    if found:
        return found
    found_in = Path("/usr/lib/postgresql").glob("*/bin/pgbench")
    numbered = (p for p in found_in if p.parent.parent.name.isdigit())
    newest = max(numbered, key=lambda p: int(p.parent.parent.name), default=None)
    return str(newest) if newest else None


async def commit_floor(url: str, seconds: int) -> float | None:
    """Transactions/s of pgbench (C, prepared) inserting one integer row a transaction, one
    at a time, into the same server: what one client waiting on each commit can reach
    here at all (a round trip and a WAL flush each), beside which insert_job alone reads.
    None without pgbench."""
    program = pgbench_program()
    if program is None:
        return None
    dsn = plain_postgres_dsn(url)
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE commit_floor (x int)")
    await conn.close()
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write("INSERT INTO commit_floor VALUES (1);\n")
        script.flush()
        printed = await timed_run(
            [
                program,
                "-n",
                "-M",
                "prepared",
                "-c",
                "1",
                "-T",
                str(seconds),
                "-f",
                script.name,
                dsn,
            ],
            seconds,
        )
    line = next(x for x in printed.splitlines() if x.startswith("tps = "))
    return float(line.split()[2])


async def timed_run(command: list[str], seconds: int) -> str:
    """What a load program (pgbench, wrk) running for `seconds` printed; off the loop."""
    ran = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    return ran.stdout


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


async def through_the_api(
    url: str, clients: int, seconds: int, workdir: Path
) -> tuple[float, float, float]:
    """Jobs/s through POST /api/jobs/batch (1,000 new jobs a request, `clients` wrk
    connections for `seconds`), and the p50/p99 of one request in ms. Driven by wrk, as
    the single creates are: a Python client encoding 1,000 jobs and reading the answer
    took a third of a core beside the server on a 2-core machine."""
    body = json.dumps({"jobs": [{"type": "noop", "payload": {"echo": i}} for i in range(BATCH)]})
    env = {"BACKBURNER_MAX_REQUEST_BYTES": str(8 * 1024 * 1024)}
    async with api_server(url, env) as (base, key):
        script = workdir / f"batch-{secrets.token_hex(3)}.lua"
        script.write_text(WRK_SCRIPT % {"key": key, "body": body})
        requests, duration_us, p50_us, p99_us, non_2xx, failed = await run_wrk(
            script, f"{base}/api/jobs/batch", clients, seconds
        )
    if non_2xx or failed:
        raise SystemExit(f"POST /api/jobs/batch: {non_2xx + failed} requests failed")
    return requests * BATCH / (duration_us / 1e6), p50_us / 1000, p99_us / 1000


@contextlib.asynccontextmanager
async def api_server(
    url: str, env: dict[str, str], processes: int = 1
) -> AsyncIterator[tuple[str, str]]:
    """One `serve --no-worker` (with `processes` API processes) on a free port, and an API
    key of a member: the base URL and the key."""
    db = Database(url, sealer=KEYRING)
    _, key = await keys_store.create_key(db, owner="bench", role=Role.MEMBER, now=datetime.now(UTC))
    await db.close()
    port = free_port()
    env = clean_env() | {
        "BACKBURNER_DATABASE_URL": url,
        "BACKBURNER_LOG_LEVEL": "WARNING",
        "BACKBURNER_AUTH_CACHE_SECONDS": "30",
        **env,
    }
    serve = ["serve", "--no-worker", "--port", str(port)]
    if processes > 1:
        serve += ["--workers", str(processes)]
    base = f"http://127.0.0.1:{port}"
    with process(*serve, env=env):
        await wait_http(f"{base}/healthz")
        yield base, key


async def run_wrk(
    script: Path, url: str, connections: int, seconds: int
) -> tuple[int, int, int, int, int, int]:
    """One wrk run: requests, duration (µs), p50 and p99 (µs), non-2xx answers and failed
    requests (connect, read, write, timeout)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    printed = await timed_run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "-s",
            str(script),
            "--timeout",
            "10s",
            url,
        ],
        seconds,
    )
    line = next(x for x in printed.splitlines() if x.startswith("WRK "))
    requests, duration_us, p50_us, p99_us, non_2xx, failed = map(int, line.split()[1:])
    return requests, duration_us, p50_us, p99_us, non_2xx, failed


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%(body)s'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


async def single_creates(
    url: str, connections: list[int], seconds: int, processes: int, workdir: Path
) -> list[tuple[int, float, float, float, int]]:
    """POST /api/jobs one job a request, driven by `wrk` (not a Python client, which would
    be the bottleneck), at each number of open connections: jobs/s, p50 and p99 in ms, and
    failed requests. One `serve --no-worker` (with `processes` API processes)."""
    rows = []
    async with api_server(url, {}, processes) as (base, key):
        script = workdir / f"create-{secrets.token_hex(3)}.lua"
        body = json.dumps({"type": "noop", "payload": {"echo": 1}})
        script.write_text(WRK_SCRIPT % {"key": key, "body": body})
        for count in connections:
            requests, duration_us, p50_us, p99_us, non_2xx, failed = await run_wrk(
                script, f"{base}/api/jobs", count, seconds
            )
            rate = (requests - non_2xx - failed) / (duration_us / 1e6)
            rows.append((count, rate, p50_us / 1000, p99_us / 1000, non_2xx + failed))
    return rows


async def http_table(args: argparse.Namespace, connections: list[int]) -> None:
    """POST /api/jobs through wrk at each number of connections, for each database."""
    http_rows: list[tuple[str, int, int, float, float, float, int]] = []
    with tempfile.TemporaryDirectory() as workdir:
        for dialect in args.dialects.split(","):
            processes = args.processes if dialect == "postgresql" else 1
            url = await fresh_database(dialect, Path(workdir))
            try:
                for row in await single_creates(
                    url, connections, args.seconds, processes, Path(workdir)
                ):
                    http_rows.append((dialect, processes, *row))
            finally:
                await drop_database(url)
    print(f"\nbench/intake.py — {describe()}")
    print(
        f"POST /api/jobs, one job a request, driven by wrk ({args.seconds} s a run, one wrk "
        "thread on the same machine)\n"
    )
    print("database | API processes | connections | jobs/s | p50 (ms) | p99 (ms) | failed")
    print("--- | --- | --- | --- | --- | --- | ---")
    for dialect, processes, count, rate, p50, p99, failed in http_rows:
        print(f"{dialect} | {processes} | {count} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | {failed}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2_000, help="jobs inserted one by one")
    parser.add_argument(
        "--bulk", type=int, default=20_000, help="jobs inserted in batches by the store"
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="wrk's connections for POST /api/jobs/batch"
    )
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument(
        "--connections", default="1,8,32,64", help="wrk's open connections, one run each"
    )
    parser.add_argument(
        "--seconds", type=int, default=5, help="each wrk run's length (the batch endpoint's too)"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="API processes (serve --workers, PostgreSQL)"
    )
    parser.add_argument("--only-http", action="store_true", help="only the wrk runs")
    parser.add_argument("--only-store", action="store_true", help="no wrk runs")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="insert_job alone and its statement alone measured in turns this many times "
        "(the medians are printed, and their ratio: the machine's speed drifts within minutes)",
    )
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    if not args.only_store:
        await http_table(args, connections)
    if args.only_http:
        return
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for dialect in args.dialects.split(","):
            urls = [await fresh_database(dialect, Path(workdir)) for _ in range(4)]
            try:
                single, statement = await alone_and_its_floor(
                    urls[0], urls[1], args.single, args.rounds, dialect
                )
                floor = await commit_floor(urls[0], 5) if dialect == "postgresql" else None
                parallel = await one_at_a_time(urls[1], args.single, 16)
                bulk = await in_batches(urls[2], args.bulk)
                api, p50, p99 = await through_the_api(
                    urls[3], args.clients, args.seconds, Path(workdir)
                )
                rows.append((dialect, single, statement, floor, parallel, bulk, api, p50, p99))
            finally:
                for url in urls:
                    await drop_database(url)
    print(f"\nbench/intake.py — {describe()}")
    print(
        f"{args.single:,} jobs one by one (alone, then 16 in flight; alone and its statement "
        f"in turns, {args.rounds} rounds, medians); {args.bulk:,} in batches "
        f"of {BATCH:,} by the store, then POST /api/jobs/batch of {BATCH:,} new jobs driven by "
        f"wrk ({args.clients} connections, {args.seconds} s); the "
        "floors are insert_job's own statement sent alone by asyncpg (arguments built "
        "beforehand) and pgbench (C) committing a one-integer row at a time on the same server\n"
    )
    header = (
        "database",
        "insert_job alone (jobs/s)",
        "floor: its statement alone (jobs/s)",
        "alone ÷ its statement",
        "floor: pgbench one-row INSERT alone (tx/s)",
        "insert_job, 16 in flight (jobs/s)",
        "insert_jobs, batches (jobs/s)",
        "API batch (jobs/s)",
        "API batch request p50 / p99 (ms)",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for dialect, single, statement, floor, parallel, bulk, api, p50, p99 in rows:
        ratio = "—" if statement is None else f"{single / statement:.0%}"
        floors = " | ".join(
            [
                "—" if statement is None else f"{statement:,.0f}",
                ratio,
                "—" if floor is None else f"{floor:,.0f}",
            ]
        )
        print(
            f"{dialect} | {single:,.0f} | {floors} | {parallel:,.0f} | {bulk:,.0f} | "
            f"{api:,.0f} | {p50:,.0f} / {p99:,.0f}"
        )


if __name__ == "__main__":
    # On the event loop the service runs on (uvloop, with uvicorn[standard]), as the API
    # process and the worker do.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
