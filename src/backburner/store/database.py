"""Connections, transactions and cross-process wake-ups, per dialect.

PostgreSQL: a pool for write transactions, one for autocommit reads and one of the queue's
own (`asyncpg_connection(queue=True)`); wake-ups travel by `LISTEN/NOTIFY` on a dedicated
connection, so an idle worker on another machine hears of a new job at once.
SQLite: WAL mode and a single writer per process (every write transaction takes an
in-process lock and starts with `BEGIN IMMEDIATE`, so writers queue instead of failing with
"database is locked"); wake-ups are in-process callbacks fired after commit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import socket
import sqlite3
import time
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.util import await_, greenlet_spawn

from backburner.store import sealed
from backburner.store.sealed import Sealer

log = logging.getLogger(__name__)

Dialect = Literal["sqlite", "postgresql"]
SignalCallback = Callable[[str], None]

# Channel names are part of the wire between processes; keep them stable.
CHANNEL_JOBS = "backburner_jobs"
CHANNEL_CANCEL = "backburner_cancel"
CHANNEL_RESPONSES = "backburner_responses"
CHANNEL_OUTBOX = "backburner_outbox"


# The least time between two new-job NOTIFY statements of one process (Database.wake): the
# delay a wake-up may take in a stream of creates, none after a quiet spell.
WAKE_SPACING_SECONDS = 0.005


def application_name() -> str:
    """The name this process's direct connections give PostgreSQL (`application_name`, at
    most 63 bytes): "backburner", the process's id and its host, one name per process."""
    return f"backburner {os.getpid()}@{socket.gethostname()}"[:63]


# SQLSTATE classes that say the server is out of reach: 08 connection exceptions, 57P
# operator intervention (shutting down, restarting, not yet accepting connections).
_OUTAGE_SQLSTATES = ("08", "57P")


def is_outage(error: BaseException) -> bool:
    """Whether an error says the database is out of reach (down, restarting, a connection
    lost mid-statement) rather than that a statement was wrong: a 503 and a retry, not a
    bug. Looks through the chain of causes, where the driver's own error sits."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeoutError | QueueBusy):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    cause: BaseException | None = error
    while cause is not None:
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
        # The driver's own errors of a connection that broke under it.
        if isinstance(cause, asyncpg.InterfaceError | asyncpg.InternalClientError):
            return True
        if isinstance(cause, OSError) and _through_the_driver(cause):
            return True
        cause = cause.__cause__
    return False


def _through_the_driver(error: BaseException) -> bool:
    """Whether asyncpg was on the way of `error` (one of its frames in the traceback). Its
    connections' OSErrors come to us raw (refused, reset, timed out, a socket file gone),
    before SQLAlchemy wraps anything; an OSError from a file, another service's socket or
    a host name of a user's URL is not the database's and must not read as its outage."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__", "").startswith("asyncpg"):
            return True
        frame = frame.tb_next
    return False


class OutageLog:
    """Says once that the database is out of reach, and once that it is back: the worker's
    loops, the dispatcher and the live feed all fail while it is down, each retrying with
    its own backoff, and an outage is one story in the log, not one traceback per try.
    A failure soon after a reconnect (a server still shutting down or starting up lets a
    connection through, then drops it) belongs to the outage already told."""

    FLAP_SECONDS = 5.0

    def __init__(self) -> None:
        self._since: float | None = None
        self._told = False
        self._back_at = -math.inf

    @property
    def down(self) -> bool:
        return self._since is not None

    def absorbed(self, error: BaseException, where: str) -> bool:
        """Whether `error` is the outage (logged if it is the first word of it); any other
        error is the caller's to log."""
        if not is_outage(error):
            return False
        if self._since is None:
            self._since = time.monotonic()
            self._told = self._since - self._back_at > self.FLAP_SECONDS
            if self._told:
                log.warning(
                    "database unreachable; retrying until it is back",
                    extra={"where": where, "error": f"{type(error).__name__}: {error}"[:300]},
                )
        return True

    def connected(self) -> None:
        """A new connection was made: if the database was out of reach, it is back."""
        if self._since is None:
            return
        outage, self._since = time.monotonic() - self._since, None
        self._back_at = time.monotonic()
        if self._told:
            log.warning("database reachable again", extra={"outage_seconds": round(outage, 1)})


def dialect_of(url: str) -> Dialect:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


def async_url(url: str) -> str:
    """The SQLAlchemy URL with the async driver chosen for the user."""
    _, rest = url.split(":", 1)
    if dialect_of(url) == "sqlite":
        return "sqlite+aiosqlite:" + rest
    return "postgresql+asyncpg:" + rest


def plain_postgres_dsn(url: str) -> str:
    """A libpq-style DSN (what asyncpg.connect takes) from any of our PostgreSQL URLs."""
    _, rest = url.split(":", 1)
    return "postgresql:" + rest


class Signals:
    """Named wake-up channels. A signal is a hint ("look again"), never the data itself."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[SignalCallback]] = defaultdict(list)

    def subscribe(self, channel: str, callback: SignalCallback) -> Callable[[], None]:
        self._subscribers[channel].append(callback)
        return lambda: self._subscribers[channel].remove(callback)

    @property
    def channels(self) -> list[str]:
        return list(self._subscribers)

    def deliver(self, channel: str, payload: str) -> None:
        for callback in list(self._subscribers.get(channel, ())):
            try:
                callback(payload)
            except Exception:  # a subscriber's bug must not stop delivery to the rest
                log.exception("signal subscriber failed", extra={"channel": channel})

    def deliver_everywhere(self) -> None:
        for channel in self.channels:
            self.deliver(channel, "")


@dataclass(frozen=True)
class _DriverInsert:
    """An INSERT written for the SQLite driver as SQLAlchemy would send it: the columns'
    own conversions (times, sealed and JSON values) applied to each row's values."""

    sql: str
    keys: tuple[str, ...]
    convert: tuple[Callable[[Any], Any] | None, ...]

    # Per dialect (an engine's: its conversions may hold its keys), per table and keys.
    _made: ClassVar[
        weakref.WeakKeyDictionary[sa.Dialect, dict[tuple[str, tuple[str, ...]], _DriverInsert]]
    ] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, table: sa.Table, keys: tuple[str, ...], dialect: sa.Dialect) -> _DriverInsert:
        known = cls._made.setdefault(dialect, {})
        made = known.get((table.name, keys))
        if made is None:
            unset = [c.key for c in table.c if c.key not in keys and c.default is not None]
            if unset:  # SQLAlchemy would fill these in; a row sent as it is would not
                raise ValueError(f"{table.name}: rows lack {unset}, which have defaults")
            names = ", ".join(table.c[key].name for key in keys)
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(keys))})"
            convert = tuple(
                table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys
            )
            made = known[(table.name, keys)] = cls(sql, keys, convert)
        return made

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        if len(row) != len(self.keys):  # a key more or less than the first row's
            raise ValueError(f"rows with different keys: {sorted(row)} and {list(self.keys)}")
        return tuple(
            row[key] if convert is None else convert(row[key])
            for key, convert in zip(self.keys, self.convert, strict=True)
        )


@dataclass
class Tx:
    """A write transaction and the signals it will send once committed."""

    conn: AsyncConnection
    dialect: Dialect
    pending_signals: list[tuple[str, str]] = field(default_factory=list)

    async def serialize_on(self, name: str) -> None:
        """Make transactions that name the same thing take turns until this one ends: a
        check-then-insert (a count, a duplicate) stays exact under concurrency. SQLite's
        single writer does this already; PostgreSQL takes a transaction advisory lock."""
        if self.dialect == "postgresql":
            await self.conn.execute(
                sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(name, 0)))
            )

    async def insert_many(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """`rows` (each with the same keys) into `table`. SQLite: one trip to the driver's
        thread, where SQLAlchemy's executemany takes three (a cursor, the statement, closing
        the cursor), each a turn of the event loop: a group of creates made four such
        statements, and under load each turn waited behind every request in the loop."""
        if not rows:
            return
        if self.dialect != "sqlite":
            await self.conn.execute(sa.insert(table), rows)
            return
        insert = _DriverInsert.of(table, tuple(rows[0]), self.conn.dialect)
        driver = (await self.conn.get_raw_connection()).driver_connection
        assert driver is not None  # a connection checked out is open
        try:
            await driver.executemany(insert.sql, [insert.values(row) for row in rows])
        except sqlite3.Error as error:
            raise _as_sqlalchemy_error(error, insert.sql) from error

    async def signal(self, channel: str, payload: str = "") -> None:
        if self.dialect == "postgresql":
            # NOTIFY is transactional: delivered on commit, dropped on rollback.
            await self.conn.execute(sa.select(sa.func.pg_notify(channel, payload)))
        else:
            self.pending_signals.append((channel, payload))


def _connect_args(dialect: Dialect, *, pooled: bool, queue_lane: bool = False) -> dict[str, Any]:
    if dialect != "postgresql":
        return {}
    if pooled:
        # Behind a transaction-pooling proxy (PgBouncer) consecutive transactions may run
        # on different server connections: nothing prepared is kept (asyncpg then uses
        # unnamed statements, re-parsed where needed), SQLAlchemy's own prepares get
        # unique names, and no session settings are sent (the proxy refuses them; set
        # plan_cache_mode on the database instead, see docs/operations.md).
        return {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__backburner_{uuid.uuid4().hex}__",
        }
    # Every direct connection is named for this process, so that operators (and a process
    # starting: Database.connections_of_others) tell Backburner's connections apart.
    named = {"application_name": application_name()}
    if queue_lane:
        # The queue's own connections run only the statements that make, claim and finish
        # jobs, and the wake-ups that announce them (Database.asyncpg_connection(queue=
        # True)), each planned once per connection (a generic plan, whatever the statistics
        # say then) with sequential and bitmap scans off, so that a plan made while the
        # table looked empty or had no job running (a queue's statistics are nearly always
        # stale) still reads by index; each statement is written so that it does
        # (tests/integration/test_queue_store.py holds the plans). Planned anew each time,
        # as on the other connections, those statements spent a quarter of a single
        # create's time and most of the worker's statement time at the database in
        # planning (bench/intake.py, bench/queue.py).
        return {
            "server_settings": {
                **named,
                "plan_cache_mode": "force_generic_plan",
                "enable_seqscan": "off",
                "enable_bitmapscan": "off",
            }
        }
    # asyncpg prepares every statement; after five runs PostgreSQL may switch to a generic
    # plan, which for the claim query scans and sorts the whole pending queue. Custom
    # plans cost a little planning per query and keep queue queries on their index.
    return {"server_settings": {**named, "plan_cache_mode": "force_custom_plan"}}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: sa.Connection) -> None:
    # Straight to the driver: one trip to its thread, where SQLAlchemy's cursor takes
    # three (see Tx.insert_many).
    driver = conn.connection.driver_connection
    assert driver is not None  # a connection beginning a transaction is open
    try:
        await_(driver.execute("BEGIN IMMEDIATE"))
    except sqlite3.Error as error:
        raise _as_sqlalchemy_error(error, "BEGIN IMMEDIATE") from error


def _as_sqlalchemy_error(error: sqlite3.Error, statement: str) -> sa.exc.StatementError:
    """A driver's error on a statement sent past SQLAlchemy, wrapped as SQLAlchemy wraps
    it (OperationalError for a locked or full database, IntegrityError for a duplicate...),
    so that callers tell an outage (is_outage: a 503) from a bug as for any statement."""
    return DBAPIError.instance(statement, None, error, sqlite3.Error)


# Set on a write connection's pool record by Database.write() once its commit is back.
_COMMITTED = "backburner_committed"


def _sqlite_rollback_unless_committed(
    dbapi_connection: Any, record: Any, state: PoolResetState
) -> None:
    """The pool's reset of a returned write connection, skipped only after a commit that
    Database.write() saw come back: SQLAlchemy rolls back every returned connection, even
    one whose transaction just committed. Not judged by the driver's `in_transaction`: a
    write cancelled while its BEGIN waited for another process's lock is handed back before
    that BEGIN runs on the driver's thread; the rollback queued behind it ends it."""
    if record.info.pop(_COMMITTED, False) or not state.asyncio_safe:
        return
    dbapi_connection.rollback()


@dataclass
class _WakeLane:
    """Wake-ups owed on some channels, and the one task sending them (Database.wake)."""

    owed: set[tuple[str, str]] = field(default_factory=set)
    sending: asyncio.Task[None] | None = None
    sent_at: float = -math.inf  # when its last NOTIFY statement went (the loop's clock)


class Database:
    """The one door to the database for every other room."""

    def __init__(
        self,
        url: str,
        *,
        sealer: Sealer | None,
        pool_size: int = 10,
        native_statements: bool | None = None,
        transaction_pooler: bool = False,
        listen_url: str | None = None,
    ) -> None:
        """`sealer`: the keys for the columns encrypted at rest; without one (schema
        upgrades) those columns can be neither written nor read. `transaction_pooler`:
        `url` goes through PgBouncer in transaction mode; `listen_url` then reaches
        PostgreSQL directly, for LISTEN (a session the proxy cannot keep)."""
        self.url = url
        self.listen_url = listen_url or url
        self.transaction_pooler = transaction_pooler
        self.sealer = sealer
        self.dialect: Dialect = dialect_of(url)
        # The hottest statements have a PostgreSQL form of their own (`postgres.py`), one
        # round trip each through asyncpg; the portable form serves SQLite, and tests run
        # both forms on PostgreSQL to check they agree.
        self.native_statements = (
            self.dialect == "postgresql" if native_statements is None else native_statements
        )
        if self.native_statements and self.dialect != "postgresql":
            raise ValueError("native statements are PostgreSQL's")
        self.signals = Signals()
        self._listener: PostgresListener | None = None
        # Reads run in autocommit with no reset on return: one round trip per query
        # instead of BEGIN, query, ROLLBACK. Every multi-statement change goes
        # through write(), which is a real transaction. Behind a transaction pooler a
        # read is a transaction too: the proxy keeps a statement's prepare and its
        # execution on one server connection only within a transaction.
        connect_args = _connect_args(self.dialect, pooled=transaction_pooler)
        # Up to twice pool_size connections per pool, all kept once opened: an "overflow"
        # connection is closed when returned, so under a load above pool_size every few
        # statements paid for a new connection (a TLS negotiation and an authentication).
        kept = 2 * pool_size
        self._read_engine = create_async_engine(
            async_url(url),
            pool_size=kept,
            max_overflow=0,
            pool_reset_on_return=None,
            connect_args=connect_args,
            **({} if transaction_pooler else {"isolation_level": "AUTOCOMMIT"}),
        )
        if self.dialect == "sqlite":
            # No rollback on return after every write: that was one more trip to the
            # driver's thread (the eleventh of a group of creates), after a commit that left
            # nothing to roll back. A connection returned any other way is still rolled
            # back (_sqlite_rollback_unless_committed).
            self._write_engine = create_async_engine(
                async_url(url), pool_size=1, max_overflow=0, pool_reset_on_return=None
            )
            event.listen(self._write_engine.sync_engine, "reset", _sqlite_rollback_unless_committed)
            event.listen(self._write_engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self._write_engine.sync_engine, "connect", _sqlite_manual_transactions)
            event.listen(self._write_engine.sync_engine, "begin", _sqlite_begin_immediate)
            event.listen(self._read_engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self._write_engine = create_async_engine(
                async_url(url),
                pool_size=kept,
                max_overflow=0,
                pool_recycle=1800,
                connect_args=connect_args,
            )
        # Behind a transaction pooler no session settings can be kept: the queue's statements
        # share the read pool, and a claim sets its plan in a transaction of its own.
        self.queue_lane = self.dialect == "postgresql" and not transaction_pooler
        self._per_pool = kept  # each pool, the queue's own included
        self._queue_pool: _QueuePool | None = None
        self.outages = OutageLog()
        for engine in (self._read_engine, self._write_engine):
            sealed.attach(engine.sync_engine.dialect, sealer)
            event.listen(engine.sync_engine, "connect", lambda *_: self.outages.connected())
        self._write_lock = asyncio.Lock()
        # Wake-ups owed ((channel, payload) pairs: repeats coalesce), in two lanes: the
        # new-job broadcast, spaced; the rest (a webhook's response to look at again), as
        # soon as the statement before is back.
        self._lanes = {spaced: _WakeLane() for spaced in (True, False)}

    @property
    def engine(self) -> AsyncEngine:
        return self._write_engine

    @property
    def most_connections(self) -> int:
        """The most connections this process may open to PostgreSQL at once: each pool up
        to twice its size (the queue's own too where it has one), and the listener."""
        pools = 3 if self.queue_lane else 2
        return pools * self._per_pool + 1

    async def room_for_clients(self) -> int | None:
        """How many client connections the PostgreSQL server takes (max_connections less
        those kept for superusers); None on SQLite or behind a transaction pooler, whose
        own limits are what a process meets."""
        if self.dialect != "postgresql" or self.transaction_pooler:
            return None
        async with self.asyncpg_connection() as conn:
            room = await conn.fetchval(
                "SELECT current_setting('max_connections')::int"
                " - current_setting('superuser_reserved_connections')::int"
            )
        return int(room)

    async def connections_of_others(self) -> int:
        """How many client connections other than this process's own (by their name,
        `application_name()`) the PostgreSQL server holds now, in every database: they all
        come out of one max_connections."""
        async with self.asyncpg_connection() as conn:
            others = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND application_name IS DISTINCT FROM $1",
                application_name(),
            )
        return int(others)

    def insert_or_ignore(self, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
        """An INSERT that does nothing when the row's key exists (both dialects)."""
        if self.dialect == "postgresql":
            return pg_insert(table).values(**values).on_conflict_do_nothing()
        return sa.insert(table).values(**values).prefix_with("OR IGNORE")

    async def start_listening(self) -> None:
        """Start hearing other processes' signals (PostgreSQL); a no-op on SQLite."""
        if self.dialect == "postgresql" and self._listener is None:
            self._listener = PostgresListener(plain_postgres_dsn(self.listen_url), self.signals)
            await self._listener.start()

    async def close(self) -> None:
        for lane in self._lanes.values():
            if lane.sending is not None and not lane.sending.done():
                # The last wake-ups go out before the connections do.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lane.sending, timeout=5)
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._queue_pool is not None:
            await self._queue_pool.close()
            self._queue_pool = None
        await self._write_engine.dispose()
        await self._read_engine.dispose()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """A write transaction; its signals go out once it commits."""
        if self.dialect == "sqlite":
            async with self._write_lock:
                async with self._write_engine.connect() as conn:
                    async with conn.begin():
                        tx = Tx(conn, self.dialect)
                        yield tx
                    conn.info[_COMMITTED] = True  # no rollback on return
                for channel, payload in tx.pending_signals:
                    self.signals.deliver(channel, payload)
        else:
            async with self._write_engine.begin() as conn:
                yield Tx(conn, self.dialect)

    def wake(self, channel: str, payload: str = "") -> None:
        """Tell every process to look at `channel` (for `payload`) again, after a change
        that committed. PostgreSQL: one statement of NOTIFYs in flight per process and
        lane; what is asked for meanwhile is sent together by the next, repeats once. No
        commit waits on the notification queue's lock as a NOTIFY inside the transaction
        would. The new-job broadcast (CHANNEL_JOBS, sent after every create) has a lane of
        its own with at least WAKE_SPACING_SECONDS between two statements: the first after
        a quiet spell goes at once, in a stream each waits at most the spacing, and a
        thousand creates a second make at most a couple of hundred NOTIFYs (one per create
        was ~40% of a create's CPU, bench/intake.py). The rest (a webhook's response to
        look at again: its latency is what bench/inflight.py measures) is not spaced. A
        NOTIFY that fails is logged; workers poll as a safety net."""
        if self.dialect != "postgresql":
            self.signals.deliver(channel, payload)
            return
        spaced = channel == CHANNEL_JOBS
        lane = self._lanes[spaced]
        lane.owed.add((channel, payload))
        if lane.sending is None or lane.sending.done():
            lane.sending = asyncio.get_running_loop().create_task(
                self._send_wake_ups(lane, WAKE_SPACING_SECONDS if spaced else 0.0)
            )

    async def _send_wake_ups(self, lane: _WakeLane, spacing: float) -> None:
        loop = asyncio.get_running_loop()
        while lane.owed:
            since_last = loop.time() - lane.sent_at
            if since_last < spacing:
                await asyncio.sleep(spacing - since_last)
            lane.sent_at = loop.time()
            owed, lane.owed = sorted(lane.owed), set()
            channels, payloads = [c for c, _ in owed], [p for _, p in owed]
            try:
                # On the queue's own connections where there are some: the wake-up
                # announces what its statements did, and a checkout there costs a tenth
                # of one through SQLAlchemy's pool (a create's CPU, bench/intake.py).
                async with self.asyncpg_connection(queue=True) as conn:
                    await conn.execute(
                        "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS w(c, p)",
                        channels,
                        payloads,
                    )
            except Exception as error:
                if not self.outages.absorbed(error, "wake-up"):
                    log.exception(
                        "a wake-up could not be sent", extra={"channels": sorted(set(channels))}
                    )

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit: for reads, and for writes made of one statement
        (behind a transaction pooler, a transaction committed at the end)."""
        if self.transaction_pooler:
            async with self._read_engine.begin() as conn:
                yield conn
        else:
            async with self._read_engine.connect() as conn:
                yield conn

    def asyncpg_connection(
        self, *, queue: bool = False
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        """The driver's own connection (PostgreSQL, autocommit), for the statements that
        pass whole batches as arrays. `queue`: one of the queue's own connections, for the
        statements that make, claim and finish jobs and the wake-ups (NOTIFY) only (see
        `_connect_args`)."""
        if self.dialect != "postgresql":
            raise RuntimeError("asyncpg_connection is for PostgreSQL only")
        if queue and self.queue_lane:
            return _QueueLease(self._queue_pool_of_this_loop())
        return self._read_driver_connection()

    def _queue_pool_of_this_loop(self) -> _QueuePool:
        loop = asyncio.get_running_loop()
        pool = self._queue_pool
        if pool is None or pool.loop is not loop:
            if pool is not None:  # the database outlived an event loop: its connections too
                pool.abandon()
            pool = self._queue_pool = _QueuePool(
                loop, self.url, self._per_pool, self.outages.connected
            )
        return pool

    @contextlib.asynccontextmanager
    async def _read_driver_connection(self) -> AsyncIterator[Any]:
        # Taken from the pool as it is, without the SQLAlchemy Connection an
        # engine.connect() wraps it in, which nothing here uses: ~60 instead of ~165 us a
        # checkout, a tenth of a single create's time in the API (bench/intake.py).
        pooled = await self._read_engine.raw_connection()
        driver = pooled.driver_connection
        assert driver is not None  # a checked-out connection has its driver's
        try:
            yield driver
        except BaseException as error:
            # An error SQLAlchemy never saw: a connection it broke, or left inside a
            # transaction of ours, must not go back to the pool, where the next
            # statement would find it half-way.
            if is_outage(error) or driver.is_in_transaction():
                await greenlet_spawn(pooled.invalidate)
                raise
            await greenlet_spawn(pooled.close)
            raise
        # Back to the pool: no reset on return, so nothing awaits and a cancellation cannot
        # stop it half-way; the greenlet is for the rare close that has I/O to do.
        await greenlet_spawn(pooled.close)


# How long a statement of the queue waits for one of its connections when every one is
# busy (as SQLAlchemy's pools do by default), before the wait counts as an outage.
QUEUE_POOL_WAIT_SECONDS = 30.0
# How long closing one of those connections may take (a statement cancelled at the server
# first) before it is cut off.
CLOSE_SECONDS = 10.0


class QueueBusy(TimeoutError):
    """Every one of the queue's connections stayed busy for QUEUE_POOL_WAIT_SECONDS: an
    outage to the caller, as SQLAlchemy's pool timeout is (is_outage)."""


class _QueuePool:
    """The queue's own connections (`Database.asyncpg_connection(queue=True)`), bound to
    the event loop they were opened in: the idle ones, last returned first out; a new one
    opened while fewer than `size` are; beyond that a wait for one returned (at most
    QUEUE_POOL_WAIT_SECONDS). Each is kept until it breaks or the pool closes.

    Written here rather than taken from SQLAlchemy or asyncpg, as every other lane's is:
    the statements on these connections are single statements in autocommit that leave no
    session state, so a connection needs no reset between uses, only to be dropped when
    it broke, was left inside a transaction or was interrupted mid-statement. Measured on
    `insert_job` alone (bench/intake.py), SQLAlchemy's checkout (two greenlet switches)
    cost ~70 of a create's ~190 us of CPU, asyncpg's ~30 (its release runs in a task of
    its own, asyncio.shield), this one a few."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        size: int,
        on_connect: Callable[[], None],
    ) -> None:
        self.loop = loop
        self._dsn = plain_postgres_dsn(url)
        self._size = size
        self._on_connect = on_connect
        self._idle: list[Any] = []
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._open = 0  # connections open or being opened, idle or in use
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def acquire(self) -> Any:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._free_place()
        if self._closed:
            raise asyncpg.InterfaceError("the queue's connections are closed")
        if self._open < self._size:
            self._open += 1
            return await self._connect()
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(QUEUE_POOL_WAIT_SECONDS):
                handed: Any = await waiter
        except BaseException as error:
            # Given up (timed out, cancelled): what was handed over meanwhile goes on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                if waiter.result() is not None:
                    self.release(waiter.result(), clean=True)
                else:
                    self._free_place()
            if isinstance(error, TimeoutError):
                raise QueueBusy(
                    f"no queue connection free within {QUEUE_POOL_WAIT_SECONDS:g} s"
                ) from error
            raise
        # None: a connection was dropped meanwhile, and its place is this waiter's to open.
        return handed if handed is not None else await self._connect()

    async def _connect(self) -> Any:
        """A new connection in a place already counted in `_open`."""
        try:
            conn = await asyncpg.connect(
                self._dsn, **_connect_args("postgresql", pooled=False, queue_lane=True)
            )
        except BaseException:
            self._free_place()
            raise
        self._on_connect()
        return conn

    def release(self, conn: Any, *, clean: bool) -> None:
        """`clean`: the statement ended normally, or with an error of the server's that
        left the connection idle (a key's conflict). Otherwise (cancelled, broken, a
        protocol left half-way) it is closed: the next statement must not meet what is
        left of this one."""
        if self._closed or not clean or conn.is_closed() or conn.is_in_transaction():
            self._close_in_background(conn)
            self._free_place()
            return
        if not self._hand_on(conn):
            self._idle.append(conn)

    def _free_place(self) -> None:
        """A connection's place is free: the longest waiter's, to open one in (it stays
        counted, so no one else opens one meanwhile), else no longer counted."""
        if self._closed or not self._hand_on(None):
            self._open -= 1

    def _close_in_background(self, conn: Any) -> None:
        """Close `conn` politely: a statement still running on it (its caller cancelled)
        is cancelled at the server first, not left to run on to its end."""
        if conn.is_closed():
            return
        closing = self.loop.create_task(self._close(conn), name="queue-connection-close")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(conn: Any) -> None:
        try:
            await conn.close(timeout=CLOSE_SECONDS)
        except Exception:  # slow or already broken: cut off, nothing to tell
            conn.terminate()
        except BaseException:
            conn.terminate()
            raise

    def _hand_on(self, conn: Any) -> bool:
        """Give `conn` (or, None, the right to open one) to the longest waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    async def close(self) -> None:
        """Close the idle connections; those in use are closed as they come back."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the queue's connections are closed"))
        self._waiters.clear()
        if self.loop is not asyncio.get_running_loop():
            self.abandon()
            return
        idle, self._idle = self._idle, []
        for conn in idle:
            self._close_in_background(conn)
        if self._closing:
            await asyncio.wait(set(self._closing))

    def abandon(self) -> None:
        """Drop every idle connection at once (the pool's event loop is gone)."""
        self._closed = True
        for conn in self._idle:
            with contextlib.suppress(Exception):
                conn.terminate()
        self._idle = []


class _QueueLease:
    """One of the queue's connections for an `async with`."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: _QueuePool) -> None:
        self._pool = pool
        self._conn: Any = None

    async def __aenter__(self) -> Any:
        self._conn = await self._pool.acquire()
        return self._conn

    async def __aexit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        clean = kind is None or issubclass(kind, asyncpg.PostgresError)
        self._pool.release(self._conn, clean=clean)


class PostgresListener:
    """Holds one connection in LISTEN on every subscribed channel, reconnecting if it drops.

    After a reconnect it fires every channel once, because notifications sent while it was
    away are lost and subscribers must look again.
    """

    def __init__(self, dsn: str, signals: Signals, retry_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._signals = signals
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-listener")
        await asyncio.wait_for(self._connected.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        first = True
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": application_name()}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("listener cannot connect; retrying", extra={"error": str(exc)})
                await asyncio.sleep(self._retry_seconds)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                for channel in (CHANNEL_JOBS, CHANNEL_CANCEL, CHANNEL_RESPONSES, CHANNEL_OUTBOX):
                    await conn.add_listener(channel, self._on_notify)
                self._connected.set()
                if not first:
                    self._signals.deliver_everywhere()
                first = False
                await lost.wait()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self._retry_seconds)

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self._signals.deliver(channel, payload)
