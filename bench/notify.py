"""How fast are finished jobs announced? N jobs finish (through the worker's own finish
statement, so each writes its outbox row), each owed one webhook; one `backburner dispatcher`
process delivers them to a local receiver. Prints deliveries per second and p50/p99 from
the job's completion to the receiver's receipt, for jobs finishing all at once (a backlog:
latency is mostly waiting in line) and at steady rates.

    python bench/notify.py                 # 10,000 jobs on PostgreSQL
    python bench/notify.py --jobs 2000 --dialect sqlite

Everything runs on loopback: a database made for the run, the dispatcher, and a minimal
asyncio HTTP receiver in this process (so the receiver is not what is measured).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`: this folder goes last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import UTC, datetime

from bench_support import (
    KEYRING,
    clean_env,
    describe,
    drop_database,
    free_port,
    fresh_database,
    percentile,
    process,
)

from backburner.store import Database, Event, NewJob, Outcome
from backburner.store import jobs as jobs_store
from backburner.store import queue as queue_store

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class Receipts:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.copies = 0
        self.all_in = asyncio.Event()
        self.expected = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                now = time.time()
                job_id = json.loads(body)["job_id"]
                self.copies += 1
                self.at.setdefault(job_id, now)
                writer.write(OK)
                if len(self.at) >= self.expected:
                    self.all_in.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def finish_all(
    db: Database, jobs: int, callback: str, rate: float | None
) -> dict[str, float]:
    """Enqueue and claim `jobs` jobs, then finish them: all at once (`rate` None) or at
    `rate` jobs per second. Returns each job's completion time."""
    now = datetime.now(UTC)
    limit = asyncio.Semaphore(16)

    async def one() -> None:
        async with limit:
            await jobs_store.insert_job(
                db,
                NewJob(
                    owner="bench",
                    type="noop",
                    payload={},
                    max_attempts=1,
                    timeout_seconds=600,
                    callback_url=callback,
                ),
                now=now,
            )

    await asyncio.gather(*(one() for _ in range(jobs)))
    running = []
    while len(running) < jobs:
        claimed = await queue_store.claim_jobs(
            db, worker_id="bench", limit=1000, lease_seconds=600, now=datetime.now(UTC)
        )
        if not claimed:
            break
        running += claimed
    batch = 500 if rate is None else max(1, int(rate / 20))
    done: dict[str, float] = {}
    started = time.monotonic()
    for first in range(0, len(running), batch):
        chunk = running[first : first + batch]
        if rate is not None:
            await asyncio.sleep(max(0.0, started + first / rate - time.monotonic()))
        finished_at = datetime.now(UTC)
        await queue_store.finish_jobs(
            db,
            worker_id="bench",
            outcomes=[Outcome(j.id, j.attempts, Event.SUCCEEDED, result={"n": 1}) for j in chunk],
            now=finished_at,
        )
        done.update((j.id, finished_at.timestamp()) for j in chunk)
    return done


async def run(dialect: str, jobs: int, rate: float | None) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    url = await fresh_database(dialect, workdir)
    db = Database(url, sealer=KEYRING)
    receipts = Receipts()
    receipts.expected = jobs
    port = free_port()
    server = await asyncio.start_server(receipts.serve, "127.0.0.1", port)
    env = {
        **clean_env(),
        "BACKBURNER_DATABASE_URL": url,
        "BACKBURNER_LOG_LEVEL": "WARNING",
        "BACKBURNER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "BACKBURNER_WEBHOOK_ALLOW_HTTP": "1",
        "BACKBURNER_NOTIFY_CONCURRENCY": os.environ.get("NOTIFY_CONCURRENCY", "64"),
    }
    try:
        with process("dispatcher", env=env):
            await asyncio.sleep(3)  # the dispatcher is up and idle
            completed = await finish_all(db, jobs, f"http://127.0.0.1:{port}/hook", rate)
            await asyncio.wait_for(receipts.all_in.wait(), timeout=600)
    finally:
        server.close()
        await db.close()
        await drop_database(url)
    lags = [(receipts.at[job_id] - at) * 1000 for job_id, at in completed.items()]
    span = max(receipts.at.values()) - min(completed.values())
    return {
        "per_second": jobs / span,
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "copies": receipts.copies,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--dialect", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--rates",
        default="burst,500,1000",
        help="how fast jobs finish: 'burst' (all at once) and/or jobs per second",
    )
    args = parser.parse_args()
    rows = []
    for rate in args.rates.split(","):
        per_second = None if rate == "burst" else float(rate)
        rows.append((rate, await run(args.dialect, args.jobs, per_second)))
    print(f"\nbench/notify.py — {describe()}")
    print(
        f"{args.jobs:,} finished jobs each owed one signed webhook, one `backburner dispatcher` "
        f"process, {args.dialect}, receiver on loopback\n"
    )
    print("jobs finish | deliveries/s | completion → receipt p50 (ms) | p99 (ms) | copies received")
    print("--- | --- | --- | --- | ---")
    for rate, result in rows:
        shown = "all at once" if rate == "burst" else f"{float(rate):,.0f}/s"
        print(
            f"{shown} | {result['per_second']:,.0f} | {result['p50']:,.0f} | "
            f"{result['p99']:,.0f} | {result['copies']:,.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
