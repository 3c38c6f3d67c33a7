"""The adapters we publish for the public PostgreSQL job-queue benchmark
(bench/peer-harness/backburner-bench, and pgqueuer-bench for PgQueuer, which the harness
lacks), run as the harness runs them: a process on a database of its own, paced by
`ENQUEUE n` lines on stdin, read by its JSON lines on stdout, stopped with SIGTERM. Their
contract (the harness's CONTRIBUTING_ADAPTERS.md) is what is checked: the descriptor, every
required metric every tick, exit 0 within 5 s; and ours besides: each job enqueued ran
exactly once, and the manifest names tables and indexes that exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import asyncpg
import pytest

from backburner.store.database import plain_postgres_dsn
from tests.conftest import REPO, create_database, drop_database

pytestmark = pytest.mark.slow

ADAPTERS = REPO / "bench" / "peer-harness"
# Per system: jobs that ran to success, and jobs started more than once, in its own tables.
DONE_AND_TWICE = {
    "backburner": (
        "SELECT count(*) FROM jobs WHERE status = 'succeeded'",
        "SELECT count(*) FROM (SELECT job_id FROM job_events WHERE kind = 'started'"
        " GROUP BY job_id HAVING count(*) > 1) AS t",
    ),
    # PgQueuer deletes a finished job and logs each of its transitions.
    "pgqueuer": (
        "SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE status = 'successful'",
        "SELECT count(*) FROM (SELECT job_id FROM pgqueuer_log WHERE status = 'picked'"
        " GROUP BY job_id HAVING count(*) > 1) AS t",
    ),
}
REQUIRED = {
    "claim_p50_ms",
    "claim_p95_ms",
    "claim_p99_ms",
    "enqueue_rate",
    "completion_rate",
    "queue_depth",
}


@pytest.fixture
def bench_database() -> Iterator[str]:
    """A database of the adapter's own, as the harness creates one per system."""
    url = asyncio.run(create_database("backburner_bench", migrated=False))
    # The harness hands out libpq URLs; the adapter takes them as they are.
    yield url.replace("postgresql://", "postgres://", 1)
    asyncio.run(drop_database(url))


def read_lines(stream: object, until: float) -> Iterator[dict[str, object]]:
    assert hasattr(stream, "readline")
    while time.monotonic() < until:
        line = stream.readline()
        if not line:
            return
        yield json.loads(line)


async def database_facts(system: str, url: str) -> tuple[int, int, set[str]]:
    conn = await asyncpg.connect(plain_postgres_dsn(url.replace("postgres://", "postgresql://")))
    try:
        done, twice = DONE_AND_TWICE[system]
        names = {
            f"{r['schemaname']}.{r['indexname']}"
            for r in await conn.fetch("SELECT schemaname, indexname FROM pg_indexes")
        } | {
            f"{r['schemaname']}.{r['tablename']}"
            for r in await conn.fetch("SELECT schemaname, tablename FROM pg_tables")
        }
        if not {"public.jobs", "public.pgqueuer_log"} & names:
            return 0, 0, names  # its schema is not installed yet
        return int(await conn.fetchval(done)), int(await conn.fetchval(twice)), names
    finally:
        await conn.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("system", sorted(DONE_AND_TWICE))
def test_the_published_adapter_keeps_the_harness_contract(system: str, bench_database: str) -> None:
    adapter_dir = ADAPTERS / f"{system}-bench"
    manifest = json.loads((adapter_dir / "adapter.json").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBURNER_")}
    env.update(
        DATABASE_URL=bench_database,
        SCENARIO="long_horizon",
        PRODUCER_MODE="fixed",
        PRODUCER_PACING="harness",
        PRODUCER_RATE="150",
        PRODUCER_BATCH_MAX="64",
        WORKER_COUNT="16",
        JOB_WORK_MS="1",
        SAMPLE_EVERY_S="1",
        PYTHONPATH=str(REPO / "src"),
    )
    adapter = subprocess.Popen(
        [sys.executable, str(adapter_dir / "main.py")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert adapter.stdin is not None
        assert adapter.stdout is not None
        lines = read_lines(adapter.stdout, until=time.monotonic() + 60)
        descriptor = next(lines)
        assert descriptor["kind"] == "descriptor"
        assert descriptor["system"] == manifest["system"] == system
        assert set(manifest["event_tables"]) <= set(descriptor["event_tables"])  # type: ignore[arg-type]
        assert descriptor["db_name"] == bench_database.rsplit("/", 1)[1]
        # The harness's tokens, and lines it might send that are not tokens.
        for line in ("ENQUEUE 200", "hello", "ENQUEUE -5", "ENQUEUE lots", "ENQUEUE 100"):
            adapter.stdin.write(line + "\n")
        adapter.stdin.flush()

        ticks: dict[str, dict[str, float]] = {}
        completed = 0.0
        for record in lines:
            assert record["kind"] == "adapter"
            assert {"t", "system", "subject_kind", "subject", "metric", "value", "window_s"} <= set(
                record
            )
            metric, value = str(record["metric"]), float(record["value"])  # type: ignore[arg-type]
            ticks.setdefault(str(record["t"]), {})[metric] = value
            if metric == "completion_rate":
                completed += value
            done = [t for t in ticks.values() if set(t) >= REQUIRED]
            if len(done) >= 2 and done[-1]["queue_depth"] == 0 and completed > 0:
                break
        complete = [t for t in ticks.values() if set(t) >= REQUIRED]
        assert len(complete) >= 2, ticks  # every tick carries every required metric
        assert max(t["enqueue_rate"] for t in complete) > 0
        assert max(t["claim_p99_ms"] for t in complete) > 0
        # The rate the harness paces to is reported as the target, as other adapters do.
        targets = {t["producer_target_rate"] for t in complete if "producer_target_rate" in t}
        assert targets == {150.0}  # (the tick read last may end before this metric)

        # Enqueued 300 exactly (only the two good tokens), each run once, to success.
        async def all_done() -> tuple[int, int, set[str]]:
            deadline = time.monotonic() + 30
            while True:
                facts = await database_facts(system, bench_database)
                if facts[0] >= 300 or time.monotonic() > deadline:
                    return facts
                await asyncio.sleep(0.1)

        succeeded, started_twice, names = asyncio.run(all_done())
        assert succeeded == 300
        assert started_twice == 0
        assert set(manifest["event_tables"]) | set(manifest["event_indexes"]) <= names

        stopped_at = time.monotonic()
        adapter.send_signal(signal.SIGTERM)
        assert adapter.wait(timeout=10) == 0, adapter.stderr.read() if adapter.stderr else ""
        assert time.monotonic() - stopped_at < 5
    finally:
        if adapter.poll() is None:
            adapter.kill()
            adapter.wait()


@pytest.mark.parametrize("system", sorted(DONE_AND_TWICE))
def test_a_scenario_it_does_not_implement_is_refused_by_name(
    system: str, bench_database: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBURNER_")}
    env.update(DATABASE_URL=bench_database, SCENARIO="chaos_crash", PYTHONPATH=str(REPO / "src"))
    run = subprocess.run(
        [sys.executable, str(ADAPTERS / f"{system}-bench" / "main.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "SCENARIO=chaos_crash is not implemented" in run.stderr
    assert run.stdout == ""
