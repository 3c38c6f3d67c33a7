"""Migrations create exactly the schema the code queries, and report being current."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from backburner.store import Database, migrate
from backburner.store import jobs as jobs_store
from backburner.store.schema import jobs, metadata
from tests.running import new_job

# Alembic cannot reflect expression indexes (`priority DESC`); checked by name below.
EXPRESSION_INDEXES = {"ix_jobs_pending_queue"}


def _compared(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


async def test_migrated_schema_matches_the_code(db: Database) -> None:
    def diff(sync_conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"include_object": _compared})
        return list(compare_metadata(context, metadata))

    def index_names(sync_conn: sa.Connection) -> set[str]:
        return {ix["name"] for ix in sa.inspect(sync_conn).get_indexes("jobs")}

    async with db.read() as conn:
        differences = await conn.run_sync(diff)
        indexes = await conn.run_sync(index_names)
    assert differences == []
    assert indexes >= EXPRESSION_INDEXES


async def test_upgrade_is_idempotent_and_current(db: Database) -> None:
    await migrate.upgrade(db)
    assert await migrate.is_current(db)
    assert await migrate.current_revision(db) == migrate.head_revision()


_COLLATIONS = sa.text(
    """
    SELECT c.relname || '.' || a.attname, coalesce(co.collname, '')
    FROM pg_attribute AS a
    JOIN pg_class AS c ON c.oid = a.attrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    LEFT JOIN pg_collation AS co ON co.oid = a.attcollation
    WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0
      AND NOT a.attisdropped AND a.atttypid IN ('text'::regtype, 'varchar'::regtype)
      AND c.relname <> 'alembic_version'
    """
)


async def _to(db: Database, revision: str, *, down: bool = False) -> None:
    def run(sync_conn: sa.Connection) -> None:
        config = migrate._alembic_config(sync_conn)
        (command.downgrade if down else command.upgrade)(config, revision)

    async with db.write() as tx:
        await tx.conn.run_sync(run)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_older_database_compares_its_text_bytewise_after_upgrading(
    db: Database,
) -> None:
    # Back to before 0016, a job made there; up again: every text column is "C", the
    # job found by its id and owner through the rebuilt indexes; and down once more.
    await _to(db, "0015", down=True)
    async with db.read() as conn:
        before = dict((await conn.execute(_COLLATIONS)).all())
    assert before
    assert set(before.values()) == {"default"}
    job, _ = await jobs_store.insert_job(db, new_job(owner="Zoë"), now=datetime.now(UTC))
    await migrate.upgrade(db)
    async with db.read() as conn:
        after = dict((await conn.execute(_COLLATIONS)).all())
        found = (
            await conn.execute(
                sa.select(jobs.c.id).where(jobs.c.owner == "Zoë", jobs.c.id == job.id)
            )
        ).all()
    assert after.keys() == before.keys()
    assert set(after.values()) == {"C"}
    assert [row.id for row in found] == [job.id]
    assert (await jobs_store.get_job(db, job.id, owner="Zoë")) is not None
    await _to(db, "0015", down=True)
    async with db.read() as conn:
        assert set(dict((await conn.execute(_COLLATIONS)).all()).values()) == {"default"}
    await migrate.upgrade(db)
