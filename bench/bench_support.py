"""What the benchmarks share: the machine they ran on, percentiles, and running
Backburner's processes and databases on loopback."""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import httpx

from backburner.privacy.sealing import Keyring


def describe() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# --- Running Backburner's processes and databases on loopback ----------------------------------

BACKBURNER = str(Path(sys.executable).parent / "backburner")
# The run's encryption key, for the children (clean_env) and the script's own connections.
KEYRING = Keyring.generate("bench")
POSTGRES = os.environ.get(
    "BACKBURNER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def process_cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """User and system CPU of a process (Linux /proc), with `reaped_children` that of the
    children it has waited for too; None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """CPU of every PostgreSQL process on this machine (the server is on loopback), the
    backends that have exited included (they count in the postmaster's children)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0.0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += process_cpu_seconds(int(entry.name), reaped_children=True) or 0.0
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without any Backburner or OpenAI settings of the caller's, and
    without the per-key request limit (benchmarks measure throughput, not throttling)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKBURNER_", "OPENAI_"))}
    return env | {
        "BACKBURNER_API_REQUESTS_PER_MINUTE": "0",
        "BACKBURNER_ENCRYPTION_KEYS": KEYRING.spec(),
    }


@contextmanager
def process(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`backburner ARGS` as a child; SIGTERM (then SIGKILL) when the block ends."""
    child = subprocess.Popen(
        [BACKBURNER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()


async def wait_http(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def fresh_database(dialect: str, workdir: Path) -> str:
    """A new, migrated database of that dialect, for one measurement."""
    from backburner.store import Database, migrate
    from backburner.store.database import plain_postgres_dsn

    if dialect == "sqlite":
        url = f"sqlite:///{workdir}/bench-{secrets.token_hex(3)}.db"
    else:
        name = f"backburner_bench_{secrets.token_hex(3)}"
        conn = await asyncpg.connect(plain_postgres_dsn(POSTGRES))
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        url = POSTGRES.rpartition("/")[0] + "/" + name
    db = Database(url, sealer=None)  # a schema upgrade seals nothing
    await migrate.upgrade(db)
    await db.close()
    return url


async def drop_database(url: str) -> None:
    from backburner.store.database import plain_postgres_dsn

    if url.startswith("postgresql"):
        conn = await asyncpg.connect(plain_postgres_dsn(POSTGRES))
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
        await conn.close()


@asynccontextmanager
async def service_in_process(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """The whole service (API, embedded worker, offline engine) on a fresh SQLite file in
    this process, and a client holding a member's key: benchmarks that measure what a
    user's job gets, not the network."""
    from datetime import UTC, datetime

    from backburner.config import Settings
    from backburner.runtime import create_app
    from backburner.store import Database, Role, migrate
    from backburner.store import keys as keys_store

    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite:///{workdir}/bench.db"
        config = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            encryption_keys=KEYRING.spec(),
            api_requests_per_minute=0,
            **settings,  # type: ignore[arg-type]
        )
        db = Database(url, sealer=KEYRING)
        await migrate.upgrade(db)
        _, key = await keys_store.create_key(
            db, owner="bench", role=Role.MEMBER, now=datetime.now(UTC)
        )
        await db.close()
        app = create_app(config, embed_worker=True, migrate_on_start=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"authorization": f"Bearer {key}"},
                timeout=120,
            ) as api,
        ):
            yield api
