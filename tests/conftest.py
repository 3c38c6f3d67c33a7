"""Fixtures shared by every test: real databases (SQLite and PostgreSQL), settings tuned
for fast lifecycles, the app over real ASGI, and API keys for three principals."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from backburner.config import Settings
from backburner.privacy.sealing import Keyring
from backburner.store import Database, Role, migrate
from backburner.store import keys as keys_store
from backburner.store.database import plain_postgres_dsn
from backburner.store.schema import metadata

POSTGRES_URL = os.environ.get(
    "BACKBURNER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REPO = Path(__file__).resolve().parent.parent
# One encryption key for the whole suite, so the tests' own connections read what the
# service sealed (tests/e2e/test_encryption.py tries other keys).
TEST_KEYS = (
    "test:" + base64.urlsafe_b64encode(hashlib.sha256(b"backburner tests").digest()).decode()
)
KEYRING = Keyring.parse(TEST_KEYS)
DIALECTS = ["sqlite", "postgresql"]


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(plain_postgres_dsn(POSTGRES_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as error:  # any failure to connect means the suite cannot run
        pytest.exit(
            f"\nPostgreSQL is not reachable at {POSTGRES_URL} ({type(error).__name__}: {error}).\n"
            "The suite runs every test on SQLite and on a real PostgreSQL. Start one, or set\n"
            "BACKBURNER_TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/DB to a server where USER\n"
            "may create databases (a throw-away database is created per run and dropped).\n",
            returncode=3,
        )


async def create_database(prefix: str, *, migrated: bool = True) -> str:
    """A new PostgreSQL database on the test server (migrated unless asked not): its URL.
    Drop it with `drop_database`."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = _with_database(POSTGRES_URL, name)
    if migrated:
        await _migrate(url)
    return url


async def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test run, migrated once."""
    url = asyncio.run(create_database("backburner_test"))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite:///{path}"))
    return path


async def _migrate(url: str) -> None:
    db = Database(url, sealer=KEYRING)
    try:
        await migrate.upgrade(db)
    finally:
        await db.close()


async def truncate_all(url: str) -> None:
    """Every table of the database emptied (workers and keys included)."""
    db = Database(url, sealer=KEYRING)
    try:
        async with db.write() as tx:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await tx.conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))
    finally:
        await db.close()


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database of each dialect."""
    if request.param == "sqlite":
        path = tmp_path / "backburner.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(truncate_all(url))
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url, sealer=KEYRING)
    await database.start_listening()
    yield database
    await database.close()


def fast_settings(db_url: str, **overrides: object) -> Settings:
    """Settings that make a job's whole lifecycle take milliseconds, not seconds."""
    values: dict[str, object] = {
        "database_url": db_url,
        "offline_latency_s": 0.05,
        "poll_initial_seconds": 0.02,
        "poll_max_seconds": 0.1,
        "heartbeat_seconds": 0.2,
        "lease_seconds": 2.0,
        "reap_interval_seconds": 0.2,
        "idle_poll_seconds": 0.5,
        "cancel_check_seconds": 0.1,
        "eval_check_seconds": 0.5,
        "schedule_check_seconds": 0.5,
        "shutdown_grace_seconds": 1.0,
        # Tests inject runs of provider faults: their waits stay short (the growth and the
        # 30 s default are unit-tested in tests/unit/test_retry.py).
        "provider_retry_max_seconds": 2.0,
        "auth_cache_seconds": 0.0,
        # Tests poll as fast as they like; tests/e2e/test_request_limits.py sets limits.
        "api_requests_per_minute": 0,
        "auth_failures_per_minute": 0,
        "plugins": ["tests.jobtypes"],
        "summarize_chunk_chars": 2000,
        "classify_batch_size": 10,
        # Never the ambient OpenAI account: tests use the offline engine or the emulator.
        "openai_api_key": None,
        "openai_base_url": None,
        "encryption_keys": TEST_KEYS,
    }
    if not db_url.startswith("sqlite"):
        # Objects of their own per test (with SQLite they sit beside the database file).
        values["storage_url"] = tempfile.mkdtemp(prefix="bb-objects-")
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(db_url: str) -> Settings:
    return fast_settings(db_url)


@dataclass(frozen=True)
class Keys:
    admin: str
    alice: str
    bob: str


@pytest.fixture
async def keys(db: Database) -> Keys:
    now = datetime.now(UTC)
    _, admin = await keys_store.create_key(db, owner="admin", role=Role.ADMIN, now=now)
    _, alice = await keys_store.create_key(db, owner="alice", role=Role.MEMBER, now=now)
    _, bob = await keys_store.create_key(db, owner="bob", role=Role.MEMBER, now=now)
    return Keys(admin, alice, bob)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def wait_for(condition, *, within: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Await `condition()` (sync or async) until it returns something truthy, or fail."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, key: str, *, embed_worker: bool
) -> AsyncIterator[httpx.AsyncClient]:
    """The service over real ASGI (lifespan included), calling as the owner of `key`."""
    from backburner.runtime import create_app

    app = create_app(settings, embed_worker=embed_worker, migrate_on_start=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=auth(key)
        ) as client:
            yield client


@pytest.fixture
async def api(settings: Settings, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """The whole service (API + embedded worker), as alice by default."""
    async with serving(settings, keys.alice, embed_worker=True) as client:
        yield client


@pytest.fixture
async def api_only(settings: Settings, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """The API with no worker (jobs stay queued), as alice."""
    async with serving(settings, keys.alice, embed_worker=False) as client:
        yield client
