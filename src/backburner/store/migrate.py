"""Bring a database's schema to the newest revision, and tell whether it is there."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from backburner.store.database import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 0x6B62_0001


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(db: Database) -> None:
    """Apply every migration not yet applied. Safe to run from many processes at once."""

    def run(sync_conn: sa.Connection) -> None:
        command.upgrade(_alembic_config(sync_conn), "head")

    async with db.write() as tx:
        if db.dialect == "postgresql":
            await tx.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
        await tx.conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    def read(sync_conn: sa.Connection) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    async with db.read() as conn:
        return await conn.run_sync(read)


async def is_current(db: Database) -> bool:
    return await current_revision(db) == head_revision()
